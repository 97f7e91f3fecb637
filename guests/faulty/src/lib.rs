//! A deliberately misbehaving service, for testing how the node copes. Not an example to copy.
//!
//! Actions:
//! - `panic` → panics (the instance traps);
//! - `spin` → loops forever (until the node's fuel or time limit stops it);
//! - `count` → `{"processed": n}`, the messages processed since start, this one included;
//! - `sleep` (`{"ms": n}`) → sleeps, then answers `{"slept_ms": n}`.
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
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(Faulty);
