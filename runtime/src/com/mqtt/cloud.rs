//! What the hub asks of the node: direct methods (commands), desired state, cloud-to-device
//! messages. Each runs off Com's loop (a method may wait seconds for a service) and hands
//! its answer back to it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::bus::Bus;
use crate::com::COM;
use crate::message::{BusError, ErrorCode, Message};
use crate::orchestrator::ORCHESTRATOR;

/// How long a method waits for a service unless it says otherwise.
const METHOD_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP-like status of a method that failed with `code`.
fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::UnknownDestination | ErrorCode::UnknownAction => 404,
        ErrorCode::BadPayload | ErrorCode::TooLarge => 400,
        ErrorCode::NotPermitted => 403,
        ErrorCode::Timeout => 504,
        ErrorCode::Unavailable | ErrorCode::QueueFull => 503,
        ErrorCode::ServiceFault | ErrorCode::Other => 500,
    }
}

fn failure(e: &BusError) -> (u16, Value) {
    (status_of(e.code), json!({ "error": e.to_json() }))
}

fn message(bus: &Bus, destination: &str, action: &str, payload: Vec<u8>) -> Message {
    crate::message::new_message(
        bus.next_id(),
        COM,
        destination,
        action,
        "application/json",
        payload,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallMethod {
    service: String,
    action: String,
    #[serde(default)]
    payload: Value,
    timeout_ms: Option<u64>,
}

/// Runs direct method `name`: `start`, `stop`, `restart` (`{"service": "x"}`) or `call`
/// (`{"service", "action", "payload", "timeout_ms"}`, answering the service's reply).
pub async fn method(bus: &Bus, name: &str, payload: &[u8]) -> (u16, Value) {
    match name {
        "start" | "stop" | "restart" => {
            let msg = message(bus, ORCHESTRATOR, name, payload.to_vec());
            match bus.call(msg, METHOD_TIMEOUT).await {
                Ok(r) => (200, crate::message::reply_json(&r)),
                Err(e) => failure(&e),
            }
        }
        "call" => {
            let req: CallMethod = match serde_json::from_slice(payload) {
                Ok(r) => r,
                Err(e) => {
                    return failure(&BusError::new(
                        ErrorCode::BadPayload,
                        format!(
                            "method `call` takes {{\"service\", \"action\", \"payload\", \
                             \"timeout_ms\"}}: {e}"
                        ),
                    ));
                }
            };
            let body = serde_json::to_vec(&req.payload).unwrap_or_default();
            let msg = message(bus, &req.service, &req.action, body);
            let timeout = req.timeout_ms.map_or(METHOD_TIMEOUT, Duration::from_millis);
            match bus.call(msg, timeout).await {
                Ok(r) => (200, crate::message::reply_json(&r)),
                Err(e) => failure(&e),
            }
        }
        other => (
            404,
            json!({ "error": { "code": "unknown-method", "message": format!(
                "no method `{other}` (busbar knows start, stop, restart, call)"
            ) } }),
        ),
    }
}

/// Hands each new desired state to the orchestrator, in order, the latest winning; asks
/// Com for a fresh report after each.
pub async fn desired_worker(
    bus: Bus,
    mut desired: watch::Receiver<Option<Value>>,
    report: mpsc::Sender<()>,
) {
    while desired.changed().await.is_ok() {
        let Some(doc) = desired.borrow_and_update().clone() else {
            continue;
        };
        let msg = message(
            &bus,
            ORCHESTRATOR,
            "desired-state",
            doc.to_string().into_bytes(),
        );
        match bus.call(msg, METHOD_TIMEOUT * 6).await {
            Ok(r) => {
                tracing::info!(outcome = %crate::message::reply_json(&r), "Com: desired state applied")
            }
            Err(e) => tracing::warn!(error = %e, "Com: desired state not applied"),
        }
        let _ = report.send(()).await;
    }
}

/// Puts cloud-to-device messages on the bus, in order.
pub async fn c2d_worker(bus: Bus, mut inbox: mpsc::Receiver<Message>) {
    while let Some(msg) = inbox.recv().await {
        let (to, action) = (msg.destination.clone(), msg.action.clone());
        match bus.send(msg).await {
            Ok(id) => tracing::debug!(%to, %action, %id, "Com: cloud-to-device message delivered"),
            Err(e) => {
                tracing::warn!(%to, %action, error = %e, "Com: cloud-to-device message not delivered")
            }
        }
    }
}
