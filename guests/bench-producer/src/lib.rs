//! Drives the benchmarks of `just bench` from inside the sandbox, like a busy sensor would.
//!
//! Actions:
//! - `burst` (`{"destination", "count", "size"}`) → sends `count` messages of `size` bytes
//!   with action `reading` to `destination` as fast as the bus takes them, and answers
//!   `{"sent": n}`;
//! - `calls` (`{"destination", "count"}`) → makes `count` calls (action `ping`, 16 bytes) to
//!   `destination` one after another and answers `{"nanos": [..]}`, the round trip of each
//!   as the guest saw it;
//! - `ping` → an empty reply;
//! - anything else (e.g. `reading`) is counted; `count` answers `{"count": n}`.

use std::time::{Duration, Instant};

use busbar_guest::{Error, Message, Reply, Service, call_raw, submit_action_bytes};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Burst {
    destination: String,
    count: u64,
    size: usize,
}

#[derive(Deserialize)]
struct Calls {
    destination: String,
    count: u64,
}

struct BenchProducer {
    received: u64,
}

impl Service for BenchProducer {
    fn start() -> Result<Self, String> {
        Ok(BenchProducer { received: 0 })
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "burst" => {
                let b: Burst = msg.json()?;
                let payload = vec![b'x'; b.size];
                let mut sent = 0u64;
                for _ in 0..b.count {
                    submit_action_bytes(
                        &b.destination,
                        "reading",
                        "application/octet-stream",
                        &payload,
                    )?;
                    sent += 1;
                }
                Reply::json(&json!({ "sent": sent })).map(Some)
            }
            "calls" => {
                let c: Calls = msg.json()?;
                let payload = [0u8; 16];
                let mut nanos = Vec::with_capacity(c.count as usize);
                for _ in 0..c.count {
                    let t = Instant::now();
                    call_raw(
                        &c.destination,
                        "ping",
                        "application/octet-stream",
                        &payload,
                        Duration::from_secs(5),
                    )?;
                    nanos.push(t.elapsed().as_nanos() as u64);
                }
                Reply::json(&json!({ "nanos": nanos })).map(Some)
            }
            "ping" => Ok(None),
            "count" => Reply::json(&json!({ "count": self.received })).map(Some),
            _ => {
                self.received += 1;
                Ok(None)
            }
        }
    }
}

busbar_guest::export!(BenchProducer);
