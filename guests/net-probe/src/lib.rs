//! A service that tries the network (it imports `wasi:sockets` through Rust's std). Without
//! `grants.network` every connect fails with "access denied"; with it, only the granted
//! addresses can be reached.
//!
//! Action `connect` (`{"addr": "127.0.0.1:502"}`) → `{"ok": true}` or
//! `{"ok": false, "error": ".."}`.

use busbar_guest::{Error, Message, Reply, Service};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Connect {
    addr: String,
}

struct NetProbe;

impl Service for NetProbe {
    fn start() -> Result<Self, String> {
        Ok(NetProbe)
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        if msg.action() != "connect" {
            return Err(Error::unknown_action(msg));
        }
        let Connect { addr } = msg.json()?;
        let outcome = match std::net::TcpStream::connect(&addr) {
            Ok(_) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        };
        Reply::json(&outcome).map(Some)
    }
}

busbar_guest::export!(NetProbe);
