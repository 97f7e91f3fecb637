//! A service whose `start` always traps; a test service, not an example to copy.
//!
//! Used as the "new version" of a hot swap that must fail: the node has to notice the trap in
//! `start` and keep (or roll back to) the old version. Were it ever to start, it would refuse
//! every action with `unknown-action`, like any service that does not handle them.

use busbar_guest::{Error, Message, Reply, Service};

/// What the trap says.
const PANIC_MESSAGE: &str = "bad-start: this version traps in start (test guest)";

struct BadStart;

impl Service for BadStart {
    fn start() -> Result<Self, String> {
        panic!("{PANIC_MESSAGE}")
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        Err(Error::unknown_action(msg))
    }
}

busbar_guest::export!(BadStart);
