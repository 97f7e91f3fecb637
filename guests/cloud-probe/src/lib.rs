//! Exercises the Com bridge; a test service.
//!
//! - `state-update` → submits `{"state": <desired state>}` with header `kind=state`;
//! - `burst` (`{"count": n, "every": k, "pause_ms": p}`) → submits `{"n": i}` for i in 0..n,
//!   pausing `p` ms after every `k`; logs `accepted i` after every 100th accepted; answers
//!   `{"accepted", "refused", "last_error"}`;
//! - `big` (`{"bytes": n}`) → submits n bytes; answers `{"ok": id}` or `{"error": ..}`;
//! - `c2d` → submits `{"c2d": <payload as text>, "headers": {..}}` with header `kind=c2d`;
//! - `ask` → answers `{"answer": <payload>}`;
//! - `say` → logs the payload as text at info.

use std::collections::BTreeMap;
use std::time::Duration;

use busbar_guest::{
    Error, Message, Reply, Service, State, info, submit_bytes, submit_with_headers,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Burst {
    count: u64,
    #[serde(default)]
    every: u64,
    #[serde(default)]
    pause_ms: u64,
}

#[derive(Deserialize)]
struct Big {
    bytes: usize,
}

struct CloudProbe;

fn outcome(r: Result<String, Error>) -> Value {
    match r {
        Ok(id) => json!({ "ok": id }),
        Err(e) => json!({ "error": { "code": e.code().as_str(), "message": e.message() } }),
    }
}

impl Service for CloudProbe {
    fn start() -> Result<Self, String> {
        Ok(CloudProbe)
    }

    fn state_update(&mut self, state: &State) {
        let _ = submit_with_headers(&json!({ "state": state.raw }), &[("kind", "state")]);
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        let reply = match msg.action() {
            "burst" => {
                let b: Burst = msg.json()?;
                let (mut accepted, mut refused, mut last_error) = (0u64, 0u64, Value::Null);
                for n in 0..b.count {
                    match submit_with_headers(&json!({ "n": n }), &[("kind", "burst")]) {
                        Ok(_) => {
                            accepted += 1;
                            if (n + 1) % 100 == 0 {
                                info!("accepted {n}");
                            }
                        }
                        Err(e) => {
                            refused += 1;
                            last_error =
                                json!({ "code": e.code().as_str(), "message": e.message() });
                        }
                    }
                    if b.every > 0 && (n + 1) % b.every == 0 && b.pause_ms > 0 {
                        std::thread::sleep(Duration::from_millis(b.pause_ms));
                    }
                }
                json!({ "accepted": accepted, "refused": refused, "last_error": last_error })
            }
            "big" => {
                let b: Big = msg.json()?;
                outcome(submit_bytes(
                    "application/octet-stream",
                    &vec![7u8; b.bytes],
                    &[],
                ))
            }
            "c2d" => {
                let headers: BTreeMap<&str, &str> = msg.headers().collect();
                let body =
                    json!({ "c2d": String::from_utf8_lossy(msg.payload()), "headers": headers });
                outcome(submit_with_headers(&body, &[("kind", "c2d")]))
            }
            "ask" => json!({ "answer": msg.json::<Value>()? }),
            "say" => {
                info!("{}", String::from_utf8_lossy(msg.payload()));
                Value::Null
            }
            _ => return Err(Error::unknown_action(msg)),
        };
        Ok(Some(Reply::json(&reply)?))
    }
}

busbar_guest::export!(CloudProbe);
