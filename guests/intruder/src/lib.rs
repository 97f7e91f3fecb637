//! An adversarial service, for testing that the node contains it. Not an example to copy.
//!
//! Actions (JSON payloads):
//! - `bomb` → allocates 1 MiB blocks until memory runs out;
//! - `recurse` (`{"depth": n}`) → recurses n levels deep (a large n overflows the stack);
//! - `huge` (`{"to": "svc", "mib": n}`) → submits an n MiB message to `svc`; answers the
//!   outcome (`{"ok": id}` or `{"error": code}`);
//! - `spam` (`{"to": "svc", "n": n}`) → submits n small messages as fast as it can; answers
//!   `{"accepted": a, "refused": r, "codes": [...distinct error codes]}`;
//! - `env` → `{"vars": {name: value}}`, the environment it sees;
//! - `read` (`{"path": p}`) → `{"text": ..}` or `{"error": ..}`;
//! - `write` (`{"path": p, "text": t}`) → `{"ok": true}` or `{"error": ..}`;
//! - `send` (`{"to": "svc", "action": a}`) → submits `{}`; answers `{"ok": id}` or
//!   `{"error": code}`.
//!
//! Property `start`: `spin` loops forever in `start`.

use std::collections::BTreeMap;

use busbar_guest::{Error, Message, Reply, Service, property, submit_action, submit_action_bytes};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Target {
    to: String,
    #[serde(default)]
    mib: usize,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    action: String,
}

#[derive(Deserialize)]
struct Path {
    path: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct Depth {
    depth: u32,
}

#[inline(never)]
fn recurse(depth: u32, pad: [u8; 256]) -> u64 {
    if depth == 0 {
        return u64::from(pad[0]);
    }
    let mut next = pad;
    next[(depth as usize) % 256] = next[0].wrapping_add(1);
    recurse(depth - 1, std::hint::black_box(next)) + u64::from(next[255])
}

fn outcome(r: Result<String, Error>) -> Value {
    match r {
        Ok(id) => json!({ "ok": id }),
        Err(e) => json!({ "error": e.code().as_str(), "message": e.message() }),
    }
}

struct Intruder;

impl Service for Intruder {
    fn start() -> Result<Self, String> {
        if property("start").as_deref() == Some("spin") {
            loop {
                std::hint::spin_loop();
            }
        }
        Ok(Intruder)
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        let answer = match msg.action() {
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                let Depth { depth } = msg.json()?;
                json!({ "sum": recurse(depth, [1; 256]) })
            }
            "huge" => {
                let t: Target = msg.json()?;
                let payload = vec![b'x'; t.mib << 20];
                outcome(submit_action_bytes(&t.to, "huge", "text/plain", &payload))
            }
            "spam" => {
                let t: Target = msg.json()?;
                let (mut accepted, mut refused) = (0u32, 0u32);
                let mut codes = Vec::new();
                for i in 0..t.n {
                    match submit_action(&t.to, "spam", &i) {
                        Ok(_) => accepted += 1,
                        Err(e) => {
                            refused += 1;
                            let code = e.code().as_str();
                            if !codes.contains(&code) {
                                codes.push(code);
                            }
                        }
                    }
                }
                json!({ "accepted": accepted, "refused": refused, "codes": codes })
            }
            "send" => {
                let t: Target = msg.json()?;
                outcome(submit_action(&t.to, &t.action, &json!({})))
            }
            "env" => {
                let vars: BTreeMap<String, String> = std::env::vars().collect();
                json!({ "vars": vars })
            }
            "read" => {
                let p: Path = msg.json()?;
                match std::fs::read_to_string(&p.path) {
                    Ok(text) => json!({ "text": text }),
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            "write" => {
                let p: Path = msg.json()?;
                match std::fs::write(&p.path, p.text) {
                    Ok(()) => json!({ "ok": true }),
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            _ => return Err(Error::unknown_action(msg)),
        };
        Reply::json(&answer).map(Some)
    }
}

busbar_guest::export!(Intruder);
