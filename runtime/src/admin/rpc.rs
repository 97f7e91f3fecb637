//! `POST /rpc`: JSON-RPC 2.0 over HTTP. The method is `SERVICE/ACTION`, the params (an object
//! or array) are the JSON payload, the result is the service's reply.
//!
//! A request with an `id` is a call and waits for the reply (up to `?timeout_ms=`, default
//! `admin.call_timeout_ms`); one without is a notification, sent without waiting. With
//! `Prefer: respond-async` the node answers `202 Accepted` with a job at once and keeps the
//! response for `GET /jobs/{id}`. Batches run their requests concurrently.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;
use super::auth::{ApiError, Grant};
use super::jsonrpc::ResponseObject;
use crate::config::admin::ApiRoute;
use crate::manifest::RESERVED_NAMES;
use crate::message::{BusError, ErrorCode, code_name, new_message};

/// The source name of messages sent through the admin API.
pub const ADMIN_SOURCE: &str = "admin";
/// Longest wait a request may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC 2.0 request object.
pub const INVALID_REQUEST: i64 = -32600;
/// Unknown service or action, or a method that is not `SERVICE/ACTION`.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Params that are not an object or array, or a payload the service refused.
pub const INVALID_PARAMS: i64 = -32602;

/// The JSON-RPC code of a bus error: the standard ones where they fit, else -32000..-32006.
pub fn error_code(code: ErrorCode) -> i64 {
    match code {
        ErrorCode::UnknownDestination | ErrorCode::UnknownAction => METHOD_NOT_FOUND,
        ErrorCode::BadPayload => INVALID_PARAMS,
        ErrorCode::Other => -32000,
        ErrorCode::Timeout => -32001,
        ErrorCode::ServiceFault => -32002,
        ErrorCode::Unavailable => -32003,
        ErrorCode::QueueFull => -32004,
        ErrorCode::TooLarge => -32005,
        ErrorCode::NotPermitted => -32006,
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct RpcQuery {
    timeout_ms: Option<u64>,
}

/// One well-formed request.
#[derive(Debug)]
pub struct Request {
    /// `None` for a notification.
    pub id: Option<Value>,
    /// The service of `SERVICE/ACTION`.
    pub service: String,
    /// The action of `SERVICE/ACTION`.
    pub action: String,
    /// The payload.
    pub params: Option<Value>,
}

/// A batch element: a request to run, or the error response it already earned.
#[derive(Debug)]
pub enum Item {
    /// Well formed: run it.
    Run(Request),
    /// Malformed: this is its response.
    Answered(ResponseObject),
}

/// A decoded `POST /rpc` body.
#[derive(Debug)]
pub enum Body {
    /// One request.
    Single(Item),
    /// A batch (never empty).
    Batch(Vec<Item>),
    /// Not JSON, or an empty batch: this is the response.
    Refused(ResponseObject),
}

/// Decodes a request body; a batch of more than `max_batch` requests is refused whole
/// (before any of it is looked at). Never panics, whatever the bytes (fuzzed: `just fuzz`).
pub fn decode(body: &[u8], max_batch: usize) -> Body {
    match serde_json::from_slice::<Value>(body) {
        Err(e) => Body::Refused(failure(
            Value::Null,
            PARSE_ERROR,
            format!("parse error: {e}"),
            None,
        )),
        Ok(Value::Array(list)) if list.is_empty() => Body::Refused(failure(
            Value::Null,
            INVALID_REQUEST,
            "invalid request: empty batch",
            None,
        )),
        Ok(Value::Array(list)) if list.len() > max_batch => Body::Refused(failure(
            Value::Null,
            INVALID_REQUEST,
            format!(
                "invalid request: a batch of {} requests; at most {max_batch} \
                 (admin.max_batch in the node config)",
                list.len()
            ),
            None,
        )),
        Ok(Value::Array(list)) => Body::Batch(list.into_iter().map(parse_item).collect()),
        Ok(one) => Body::Single(parse_item(one)),
    }
}

fn failure(
    id: Value,
    code: i64,
    message: impl Into<String>,
    data: Option<Value>,
) -> ResponseObject {
    ResponseObject::error(id, code, message, data)
}

fn parse_item(v: Value) -> Item {
    let Value::Object(mut obj) = v else {
        return Item::Answered(failure(
            Value::Null,
            INVALID_REQUEST,
            "invalid request: expected a JSON-RPC 2.0 request object",
            None,
        ));
    };
    let id = obj.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    if !matches!(
        id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        return Item::Answered(failure(
            Value::Null,
            INVALID_REQUEST,
            "invalid request: `id` must be a string, a number or null",
            None,
        ));
    }
    let bad = |code, message: &str| Item::Answered(failure(reply_id.clone(), code, message, None));
    if obj.get("jsonrpc") != Some(&Value::from("2.0")) {
        return bad(
            INVALID_REQUEST,
            "invalid request: `jsonrpc` must be \"2.0\"",
        );
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return bad(
            INVALID_REQUEST,
            "invalid request: `method` must be a string",
        );
    };
    let params = obj.remove("params");
    if matches!(&params, Some(p) if !p.is_object() && !p.is_array()) {
        return bad(
            INVALID_PARAMS,
            "invalid params: `params` must be an object or an array",
        );
    }
    let Some((service, action)) = method
        .split_once('/')
        .filter(|(s, a)| !s.is_empty() && !a.is_empty())
    else {
        return bad(
            METHOD_NOT_FOUND,
            &format!(
                "method `{method}` not found: methods are SERVICE/ACTION, e.g. `orchestrator/status`"
            ),
        );
    };
    Item::Run(Request {
        id,
        service: service.to_owned(),
        action: action.to_owned(),
        params,
    })
}

impl App {
    async fn execute(&self, mut req: Request, timeout: Duration) -> Option<ResponseObject> {
        let (content_type, payload) = match &req.params {
            None => ("", Vec::new()),
            Some(p) => ("application/json", p.to_string().into_bytes()),
        };
        let msg = new_message(
            self.bus.next_id(),
            ADMIN_SOURCE,
            &req.service,
            &req.action,
            content_type,
            payload,
        );
        let Some(id) = req.id.take() else {
            if let Err(e) = self.bus.send(msg).await {
                tracing::warn!(service = %req.service, action = %req.action, error = %e, "admin notification not delivered");
            }
            return None;
        };
        Some(match self.bus.call(msg, timeout).await {
            Ok(reply) => ResponseObject::result(id, crate::message::reply_json(&reply)),
            Err(e) => bus_failure(id, &req, &e),
        })
    }

    async fn run_all(self: Arc<Self>, items: Vec<Item>, timeout: Duration) -> Vec<ResponseObject> {
        let runs = items.into_iter().map(|item| {
            let app = self.clone();
            async move {
                match item {
                    Item::Answered(v) => Some(v),
                    Item::Run(req) => app.execute(req, timeout).await,
                }
            }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Keeps the responses within `max` bytes of JSON: in order, each answer that would go past
/// it is replaced by a `-32005` error naming the setting.
fn bound_responses(responses: &mut [ResponseObject], max: usize) {
    let mut total = 0usize;
    for r in responses.iter_mut() {
        let size = serde_json::to_vec(r).map_or(usize::MAX, |v| v.len());
        if total.saturating_add(size) <= max {
            total += size;
            continue;
        }
        *r = failure(
            r.id.clone(),
            error_code(ErrorCode::TooLarge),
            format!(
                "too large: the response would exceed {max} bytes (admin.max_response_bytes in \
                 the node config); send fewer requests per batch"
            ),
            Some(json!({ "code": code_name(ErrorCode::TooLarge) })),
        );
        total = total.saturating_add(serde_json::to_vec(r).map_or(0, |v| v.len()));
    }
}

fn bus_failure(id: Value, req: &Request, e: &BusError) -> ResponseObject {
    failure(
        id,
        error_code(e.code),
        e.message.clone(),
        Some(json!({ "code": code_name(e.code), "service": req.service, "action": req.action })),
    )
}

/// A request naming a service the token may not call: internal services (which see every
/// service) need a token for all services.
fn forbidden(grant: &Grant, items: &[Item]) -> Option<ApiError> {
    items.iter().find_map(|item| match item {
        Item::Run(req)
            if !grant.allows(&req.service)
                || (RESERVED_NAMES.contains(&req.service.as_str()) && !grant.sees_all()) =>
        {
            Some(ApiError::forbidden(format!(
                "token `{}` may not call service `{}`; nothing was executed",
                grant.name, req.service
            )))
        }
        _ => None,
    })
}

fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// `POST /rpc`.
pub(super) async fn handle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<RpcQuery>,
    body: Bytes,
) -> Response {
    let grant = match app.grants.authorize(&headers, ApiRoute::Rpc) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let timeout = query
        .timeout_ms
        .map_or(app.call_timeout, Duration::from_millis)
        .min(MAX_TIMEOUT);
    let (batch, items) = match decode(&body, app.max_batch) {
        Body::Refused(r) => return axum::Json(r).into_response(),
        Body::Batch(items) => (true, items),
        Body::Single(item) => (false, vec![item]),
    };
    if let Some(e) = forbidden(&grant, &items) {
        return e.into_response();
    }
    if wants_async(&headers) {
        if let [Item::Run(req)] = items.as_slice()
            && !app.bus.knows(&req.service)
            && !busbar_base::address::is_remote(&req.service)
        {
            let e = BusError::new(
                ErrorCode::UnknownDestination,
                format!("no service named `{}` on this node", req.service),
            );
            let r = bus_failure(req.id.clone().unwrap_or(Value::Null), req, &e);
            return axum::Json(r).into_response();
        }
        let Some(job) = app.jobs.create(&grant.name) else {
            return ApiError::busy(format!(
                "{} asynchronous jobs are still running; try again later",
                app.jobs.capacity()
            ))
            .into_response();
        };
        let (app, id) = (app.clone(), job.clone());
        tokio::spawn(async move {
            let mut responses = app.clone().run_all(items, timeout).await;
            bound_responses(&mut responses, app.max_response_bytes);
            let response = match (batch, responses.len()) {
                (_, 0) => None,
                (true, _) => serde_json::to_value(responses).ok(),
                (false, _) => responses
                    .into_iter()
                    .next()
                    .and_then(|r| serde_json::to_value(r).ok()),
            };
            app.jobs.finish(&id, response);
        });
        let href = format!("/jobs/{job}");
        let body = json!({ "job": job, "status": "running", "href": href });
        return (
            StatusCode::ACCEPTED,
            [(header::LOCATION, href)],
            axum::Json(body),
        )
            .into_response();
    }
    let max_response_bytes = app.max_response_bytes;
    let mut responses = app.run_all(items, timeout).await;
    bound_responses(&mut responses, max_response_bytes);
    match (batch, responses.len()) {
        (_, 0) => StatusCode::NO_CONTENT.into_response(),
        (true, _) => axum::Json(responses).into_response(),
        (false, _) => axum::Json(responses.swap_remove(0)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_over_the_bound_are_refused_before_they_are_looked_at() {
        let body = format!("[{}]", vec!["{}"; 101].join(","));
        let Body::Refused(r) = decode(body.as_bytes(), 100) else {
            panic!("a batch of 101 passed a bound of 100");
        };
        assert_eq!(r.error_object().unwrap().code, INVALID_REQUEST);
        assert!(matches!(decode(b"[{}]", 100), Body::Batch(items) if items.len() == 1));
    }

    #[test]
    fn responses_past_the_byte_bound_become_too_large_errors() {
        let mut responses: Vec<ResponseObject> = (0..5)
            .map(|i| ResponseObject::result(json!(i), json!("x".repeat(1000))))
            .collect();
        bound_responses(&mut responses, 2500);
        assert!(responses[0].error_object().is_none() && responses[1].error_object().is_none());
        for r in &responses[2..] {
            let e = r.error_object().unwrap();
            assert_eq!(e.code, -32005, "{r:?}");
            assert!(e.message.contains("admin.max_response_bytes"));
        }
        assert_eq!(responses[4].id, 4);
    }
}
