//! A deliberately misbehaving service, for testing how the node copes. Not an example to copy.
//!
//! Actions:
//! - `panic` → panics (the instance traps);
//! - `spin` → loops forever (until the node's fuel or time limit stops it);
//! - `count` → `{"processed": n}`, the messages processed since start, this one included;
//! - `sleep` (`{"ms": n}`) → sleeps, then answers `{"slept_ms": n}`;
//! - `probe` → tries to look out of the sandbox and answers what it found:
//!   `{"env": [..], "args": [..], "fs": ".."}` (the error text, or `"ok"` if it got through).
//!   The network is out of reach by construction: see `net-probe`.
//!
//! Property `fail_start`: `"true"` makes `start` fail.

use std::time::Duration;

use busbar_guest::{Error, Message, Reply, Service, property};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Count {
    processed: u64,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[derive(Serialize)]
struct Slept {
    slept_ms: u64,
}

#[derive(Serialize)]
struct Found {
    env: Vec<String>,
    args: Vec<String>,
    fs: String,
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    r.map_or_else(|e| e.to_string(), |_| "ok".to_owned())
}

/// Everything a service should not be able to reach without a grant.
fn probe() -> Found {
    Found {
        env: std::env::vars().map(|(k, _)| k).collect(),
        args: std::env::args().collect(),
        fs: outcome(std::fs::read_dir("/").or_else(|_| std::fs::read_dir("."))),
    }
}

struct Faulty {
    processed: u64,
}

impl Service for Faulty {
    fn start() -> Result<Self, String> {
        if property("fail_start").as_deref() == Some("true") {
            return Err("faulty: asked to fail start".to_owned());
        }
        Ok(Faulty { processed: 0 })
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        self.processed += 1;
        match msg.action() {
            "panic" => panic!("faulty: asked to panic"),
            "spin" => loop {
                std::hint::spin_loop();
            },
            "count" => Reply::json(&Count {
                processed: self.processed,
            })
            .map(Some),
            "sleep" => {
                let Sleep { ms } = msg.json()?;
                std::thread::sleep(Duration::from_millis(ms));
                Reply::json(&Slept { slept_ms: ms }).map(Some)
            }
            "probe" => Reply::json(&probe()).map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(Faulty);
