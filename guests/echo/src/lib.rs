//! Answers what it is asked; a test and example service.
//!
//! Actions:
//! - `echo` → the payload, with the same content type;
//! - `upper` → the text payload in upper case;
//! - `call` (`{"destination", "action", "payload": <json>, "timeout_ms"}`) → calls that
//!   service and answers `{"ok": <its JSON reply>}` or
//!   `{"error": {"code": "<error code>", "message": ".."}}`;
//! - `send` (`{"destination", "action", "payload": <json>}`) → sends it with `submit-action`
//!   and answers `{"id": "<message id>"}` or `{"error": {"code", "message"}}`;
//! - `whoami` → `{"source": "<who sent this>", "id": "<its message id>"}`;
//! - `sleep` (`{"ms": n}`) → sleeps, then answers `{"slept_ms": n}`.

use std::time::Duration;

use busbar_guest::{Error, Message, Reply, Service, call, submit_action};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct CallRequest {
    destination: String,
    action: String,
    #[serde(default)]
    payload: Value,
    timeout_ms: u32,
}

#[derive(Deserialize)]
struct SendRequest {
    destination: String,
    action: String,
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

struct Echo;

impl Service for Echo {
    fn start() -> Result<Self, String> {
        Ok(Echo)
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        let reply = match msg.action() {
            "echo" => Reply::bytes(msg.content_type(), msg.payload().to_vec()),
            "upper" => Reply::text(msg.text()?.to_uppercase()),
            "call" => {
                let req: CallRequest = msg.json()?;
                let timeout = Duration::from_millis(req.timeout_ms.into());
                let outcome = match call::<_, Value>(
                    &req.destination,
                    &req.action,
                    &req.payload,
                    timeout,
                ) {
                    Ok(reply) => json!({ "ok": reply }),
                    Err(e) => {
                        json!({ "error": { "code": e.code().as_str(), "message": e.message() } })
                    }
                };
                Reply::json(&outcome)?
            }
            "send" => {
                let req: SendRequest = msg.json()?;
                let outcome = match submit_action(&req.destination, &req.action, &req.payload) {
                    Ok(id) => json!({ "id": id }),
                    Err(e) => {
                        json!({ "error": { "code": e.code().as_str(), "message": e.message() } })
                    }
                };
                Reply::json(&outcome)?
            }
            "whoami" => Reply::json(&json!({ "source": msg.source(), "id": msg.id() }))?,
            "sleep" => {
                let Sleep { ms } = msg.json()?;
                std::thread::sleep(Duration::from_millis(ms));
                Reply::json(&json!({ "slept_ms": ms }))?
            }
            _ => return Err(Error::unknown_action(msg)),
        };
        Ok(Some(reply))
    }
}

busbar_guest::export!(Echo);
