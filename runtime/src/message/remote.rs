//! Messages for services on other nodes (`service@node`, `service@group`): the bus hands
//! them to the internal service `fabric`, marked with what the sender waits for.

use super::Message;

/// The internal service that carries messages across gateways.
pub const FABRIC: &str = "fabric";
/// The action a service's task sends `fabric` to join (payload: the group) or leave (empty
/// payload) its group.
pub const FABRIC_SHARE: &str = "share";
/// The action the node sends `fabric` to open (payload `open`: its services are on the bus)
/// or close (`close`: they are about to stop) its inbox.
pub const FABRIC_INBOX: &str = "inbox";
/// The header the bus marks a message for another node with.
const HEADER: &str = "$remote";

/// What the sender of a message for another node waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// `submit-action`: that the fabric has it (the broker took it for a node or a group
    /// that is there); the fabric keeps it until the receiving node says it was processed.
    Send,
    /// `call`: the reply, for at most `timeout_ms`.
    Call {
        /// How long the caller waits.
        timeout_ms: u64,
    },
}

impl Remote {
    /// Marks `msg` (the last header).
    pub fn mark(self, msg: &mut Message) {
        let value = match self {
            Remote::Send => "send".to_owned(),
            Remote::Call { timeout_ms } => format!("call {timeout_ms}"),
        };
        msg.headers.push((HEADER.to_owned(), value));
    }

    /// Whether `msg` is marked.
    pub fn marked(msg: &Message) -> bool {
        msg.headers.last().is_some_and(|(k, _)| k == HEADER)
    }

    /// The mark on `msg`, taken off it.
    pub fn take(msg: &mut Message) -> Option<Self> {
        let (k, v) = msg.headers.last()?;
        if k != HEADER {
            return None;
        }
        let mark = match v.split_once(' ') {
            None if v == "send" => Remote::Send,
            Some(("call", ms)) => Remote::Call {
                timeout_ms: ms.parse().ok()?,
            },
            _ => return None,
        };
        msg.headers.pop();
        Some(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::new_message;

    #[test]
    fn marks_come_off_as_they_went_on() {
        for mark in [Remote::Send, Remote::Call { timeout_ms: 1500 }] {
            let mut msg = new_message("1".into(), "a", "b@gw2", "x", "", Vec::new());
            msg.headers.push(("k".into(), "v".into()));
            mark.mark(&mut msg);
            assert_eq!(Remote::take(&mut msg), Some(mark));
            assert_eq!(msg.headers, vec![("k".to_owned(), "v".to_owned())]);
            assert_eq!(Remote::take(&mut msg), None);
        }
    }
}
