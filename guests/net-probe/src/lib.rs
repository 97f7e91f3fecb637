//! A service that wants the network (it imports `wasi:sockets`). busbar grants no network to
//! services, so a node must refuse to load it, naming the import.

use busbar_guest::{Error, Message, Reply, Service};

struct NetProbe;

impl Service for NetProbe {
    fn start() -> Result<Self, String> {
        Ok(NetProbe)
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        let addr = msg.text()?;
        let outcome = std::net::TcpStream::connect(addr)
            .map_or_else(|e| e.to_string(), |_| "connected".to_owned());
        Ok(Some(Reply::text(outcome)))
    }
}

busbar_guest::export!(NetProbe);
