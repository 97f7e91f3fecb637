//! A busbar service written straight against `wit/service.wit` with `wit-bindgen`, without
//! `busbar-guest`: proof that the WIT file alone is enough to write a service.
//!
//! It counts every message it processes (`$timer` and `$error` included). Action `count`
//! answers `{"count": n, "service": "<its name>"}`; every other action is accepted silently.
//! On `stop` it submits `{"event": "stopped", "service": .., "count": n}` to Com.

use std::sync::atomic::{AtomicU64, Ordering};

use busbar::service::{bus, config, log};
use serde_json::json;

wit_bindgen::generate!({
    path: "../../wit",
    world: "service",
});

/// Messages processed since the instance was created.
static COUNT: AtomicU64 = AtomicU64::new(0);

struct RawCounter;

impl Guest for RawCounter {
    fn start() -> Result<(), String> {
        // Standard output is captured into the node's log, tagged with the service's name.
        println!("raw-counter says hello on stdout");
        log::log(
            log::Level::Info,
            &format!("raw-counter starting as `{}`", config::service_name()),
        );
        Ok(())
    }

    fn stop() {
        let event = json!({
            "event": "stopped",
            "service": config::service_name(),
            "count": COUNT.load(Ordering::Relaxed),
        });
        if let Err(e) = bus::submit_message("application/json", event.to_string().as_bytes(), &[]) {
            log::log(
                log::Level::Warn,
                &format!("submitting the stop event failed: {e}"),
            );
        }
    }

    fn process(message: Message) -> Result<Option<Reply>, Error> {
        let count = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        if message.action != "count" {
            return Ok(None);
        }
        let body = json!({ "count": count, "service": config::service_name() });
        Ok(Some(Reply {
            content_type: "application/json".to_owned(),
            payload: body.to_string().into_bytes(),
        }))
    }

    fn state_update(_state: String) {}
}

export!(RawCounter);
