//! `GET /events`: a server-sent event stream of log lines (`event: log`) and bus traffic
//! (`event: message`).
//!
//! Query: `kinds=log,message` (default both), `service=S` (the line's service, or the
//! message's source or destination), `level=warn` (lines at that level or more severe),
//! `action=PATTERN` (`*` and `?` wildcards; lines without an `action` field are left out),
//! `history=N` (first the last N kept lines), `follow=false` (end after the history).
//! A watcher that falls behind gets `event: lagged` with `{"skipped": n}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wildmatch::WildMatch;

use super::App;
use super::auth::{ApiError, Grant};
use crate::config::admin::ApiRoute;
use crate::observe::{LogLevel, LogLine, TapReceiver, Traffic, log_hub};

#[derive(Debug, Deserialize)]
pub(super) struct EventQuery {
    kinds: Option<String>,
    service: Option<String>,
    level: Option<String>,
    action: Option<String>,
    #[serde(default)]
    history: usize,
    follow: Option<bool>,
}

/// Which events one watcher wants.
#[derive(Debug)]
struct Filter {
    grant: Arc<Grant>,
    service: Option<String>,
    level: LogLevel,
    action: Option<WildMatch>,
}

impl Filter {
    fn service_ok(&self, names: &[Option<&str>]) -> bool {
        let wanted = |n: &str| self.service.as_deref().is_none_or(|s| s == n);
        let granted = |n: &str| self.grant.allows(n);
        let named = names.iter().flatten();
        (self.service.is_none() || named.clone().any(|n| wanted(n)))
            && (self.grant.sees_all() || named.clone().any(|n| granted(n)))
    }

    fn action_ok(&self, action: Option<&str>) -> bool {
        match (&self.action, action) {
            (None, _) => true,
            (Some(p), Some(a)) => p.matches(a),
            (Some(_), None) => false,
        }
    }

    fn log(&self, line: &LogLine) -> bool {
        line.level <= self.level
            && self.service_ok(&[line.service.as_deref()])
            && self.action_ok(line.fields.get("action").and_then(|a| a.as_str()))
    }

    fn message(&self, t: &Traffic) -> bool {
        self.service_ok(&[Some(&t.source), Some(&t.destination)]) && self.action_ok(Some(&t.action))
    }
}

fn event<T: serde::Serialize>(kind: &str, data: &T) -> Event {
    Event::default()
        .event(kind)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(kind))
}

async fn next<T: Clone>(rx: &mut Option<TapReceiver<T>>) -> Option<Result<T, u64>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `GET /events`.
pub(super) async fn handle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> Response {
    let grant = match app.grants.authorize(&headers, ApiRoute::Events) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let kinds = q.kinds.as_deref().unwrap_or("log,message");
    let (mut want_log, mut want_message) = (false, false);
    for kind in kinds.split(',').map(str::trim) {
        match kind {
            "log" => want_log = true,
            "message" => want_message = true,
            other => {
                return ApiError::bad_request(format!(
                    "unknown event kind `{other}` (kinds are log, message)"
                ))
                .into_response();
            }
        }
    }
    let level = match q.level.as_deref().map(str::parse::<LogLevel>) {
        None => LogLevel::Trace,
        Some(Ok(l)) => l,
        Some(Err(e)) => return ApiError::bad_request(e).into_response(),
    };
    let filter = Filter {
        grant,
        service: q.service,
        level,
        action: q.action.as_deref().map(WildMatch::new),
    };
    let follow = q.follow.unwrap_or(true);
    let (history, mut logs) = if want_log {
        let (history, feed) = log_hub().follow();
        let skip = history.len().saturating_sub(q.history);
        (history.into_iter().skip(skip).collect(), Some(feed))
    } else {
        (Vec::new(), None)
    };
    let mut traffic = (want_message && follow).then(|| app.bus.traffic().subscribe());
    if !follow {
        logs = None;
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let cancel = app.cancel.clone();
    tokio::spawn(async move {
        for line in history.iter().filter(|l| filter.log(l)) {
            if tx.send(Ok(event("log", &**line))).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let ev = tokio::select! {
                () = cancel.cancelled() => return,
                () = tx.closed() => return,
                l = next(&mut logs) => match l {
                    Some(Ok(line)) if filter.log(&line) => event("log", &*line),
                    Some(Ok(_)) => continue,
                    Some(Err(n)) => event("lagged", &serde_json::json!({ "kind": "log", "skipped": n })),
                    None => return,
                },
                t = next(&mut traffic) => match t {
                    Some(Ok(t)) if filter.message(&t) => event("message", &*t),
                    Some(Ok(_)) => continue,
                    Some(Err(n)) => event("lagged", &serde_json::json!({ "kind": "message", "skipped": n })),
                    None => return,
                },
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
