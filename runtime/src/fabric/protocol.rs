//! The node-to-node protocol on the fabric's broker (MQTT 5), all of it in one place; the
//! README's "Across gateways" describes the same.
//!
//! - Node `gw2` subscribes to its inbox `{prefix}/gw2/#`. A request from node `gw1` for
//!   service `svc` there is published (QoS 1) to `{prefix}/gw2/to/svc/gw1`; one for `svc`
//!   shared in group `workers` to `{prefix}/workers/to/svc/gw1`, which the group's members take
//!   in turn through the shared subscription `$share/workers/{prefix}/workers/to/svc/+`. Node
//!   ids and group names share one namespace. The sending node is the last level, so a
//!   broker ACL (`pattern write {prefix}/+/to/+/%u`) keeps a node from sending in another's
//!   name; the receiver takes the sender from the topic.
//! - A request carries the message id as correlation data, the sender's reply topic
//!   `{prefix}/{sender node}/reply` as response topic, the payload and content type as they
//!   are, and user properties `busbar-kind` (`call` or `send`), `busbar-action`,
//!   `busbar-from` (`service@node`, what the receiver sees as `source`), for a call
//!   `busbar-timeout-ms`, for a send `busbar-resend-ms`.
//! - Every request is answered on the sending node's reply topic (its response topic; the
//!   receiver derives it from the topic's sender, never takes it from the request), with
//!   the same correlation data:
//!   `busbar-status` is `ok` or a WIT `error-code` name (`unknown-destination`, `timeout`,
//!   ...), `busbar-error` the error's text, `busbar-node` the node that handled it; a call's
//!   reply carries the reply's payload and content type. A send is answered once the service
//!   processed it, and every half `busbar-resend-ms` before that with status `working`:
//!   until then the sender keeps it and sends it again after `resend_ms` without word; the
//!   receiver knows a message id it has seen and does not deliver it twice.
//! - The broker's PUBACK says whether anyone took a request: reason 0x10 (no matching
//!   subscribers) means no node or group of that name is on the fabric (`unavailable`).

use busbar_base::address::{Address, Place};
use busbar_base::topic::{TopicFilter, TopicName};

use crate::message::{BusError, ErrorCode, Message, Reply, code_from_name, code_name};

/// User property: `call` or `send`.
pub const KIND: &str = "busbar-kind";
/// User property: the action.
pub const ACTION: &str = "busbar-action";
/// User property: `service@node` of the sender.
pub const FROM: &str = "busbar-from";
/// User property: how long the caller waits, in ms.
pub const TIMEOUT_MS: &str = "busbar-timeout-ms";
/// User property of a reply: `ok` or an error code.
pub const STATUS: &str = "busbar-status";
/// User property of a reply: the error's text.
pub const ERROR: &str = "busbar-error";
/// User property of a reply: the node that handled the request.
pub const NODE: &str = "busbar-node";
/// User property of a send: how long its sender waits for word before sending it again.
pub const RESEND_MS: &str = "busbar-resend-ms";
/// The status of a reply to a send its service has not finished yet: its sender waits
/// another `resend_ms`.
pub const WORKING: &str = "working";

/// The fabric's topics for one node.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    node: Place,
}

/// What an incoming publish on the fabric is.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A request for local service `service` from node `sender`.
    Request {
        /// This node or one of its groups, as the topic names it.
        place: String,
        /// The service.
        service: String,
        /// The sending node, as the topic names it.
        sender: Place,
    },
    /// A reply to one of this node's requests.
    Reply,
}

impl Topics {
    /// The topics of `node` under `prefix`.
    pub fn new(prefix: &str, node: Place) -> Self {
        Self {
            prefix: prefix.to_owned(),
            node,
        }
    }

    /// This node's id.
    pub fn node(&self) -> &Place {
        &self.node
    }

    /// This node's inbox: requests for it and replies to it.
    pub fn inbox(&self) -> TopicFilter {
        filter(&format!("{}/{}/#", self.prefix, self.node))
    }

    /// Where this node's replies arrive.
    pub fn reply_topic(&self) -> TopicName {
        self.reply_topic_of(&self.node)
    }

    /// Where node `node`'s replies arrive.
    pub fn reply_topic_of(&self, node: &Place) -> TopicName {
        topic(&format!("{}/{node}/reply", self.prefix))
    }

    /// Where a request from this node for `address` goes.
    pub fn request_topic(&self, address: &Address) -> TopicName {
        topic(&format!(
            "{}/{}/to/{}/{}",
            self.prefix, address.place, address.service, self.node
        ))
    }

    /// The shared subscription through which `service`, shared in `group`, takes its turn.
    pub fn group_filter(&self, group: &Place, service: &str) -> TopicFilter {
        filter(&format!(
            "$share/{group}/{}/{group}/to/{service}/+",
            self.prefix
        ))
    }

    /// The node or group, the service and the sending node of request topic `topic`.
    fn request_parts<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut levels = rest.split('/');
        match (
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next(),
        ) {
            (Some(place), Some("to"), Some(service), Some(sender), None) => {
                Some((place, service, sender))
            }
            _ => None,
        }
    }

    /// The node or group a request topic is for.
    pub fn place_of(&self, topic: &str) -> Option<String> {
        self.request_parts(topic).map(|(p, _, _)| p.to_owned())
    }

    /// The service an outbox record is for.
    pub fn service_of(&self, record: &crate::com::spool::Record) -> String {
        record
            .topic
            .as_deref()
            .and_then(|t| self.request_parts(t))
            .map(|(_, s, _)| s.to_owned())
            .unwrap_or_default()
    }

    /// What a publish on `topic` is, if it is one of the fabric's for this node.
    pub fn arrival(&self, topic: &str) -> Option<Arrival> {
        if let Some((place, service, sender)) = self.request_parts(topic) {
            return Some(Arrival::Request {
                place: place.to_owned(),
                service: service.to_owned(),
                sender: Place::parse(sender).ok()?,
            });
        }
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        (rest.split_once('/') == Some((self.node.as_str(), "reply"))).then_some(Arrival::Reply)
    }
}

/// Topics built from checked parts are valid.
fn topic(text: &str) -> TopicName {
    TopicName::parse(text).unwrap_or_else(|e| unreachable!("fabric topic `{text}`: {e}"))
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap_or_else(|e| unreachable!("fabric filter `{text}`: {e}"))
}

/// A user property of a `$topic` message (its headers after the fixed ones).
pub fn property<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The user properties of a reply carrying `result`, handled by `node`.
pub fn reply_properties(node: &Place, result: &Result<Reply, BusError>) -> Vec<(String, String)> {
    let mut props = vec![(NODE.to_owned(), node.to_string())];
    match result {
        Ok(_) => props.push((STATUS.to_owned(), "ok".to_owned())),
        Err(e) => {
            props.push((STATUS.to_owned(), code_name(e.code).to_owned()));
            props.push((ERROR.to_owned(), e.message.clone()));
        }
    }
    props
}

/// The outcome a reply carries; `None` when it is malformed.
pub fn reply_outcome(msg: &Message) -> Option<Result<Reply, BusError>> {
    let status = property(msg, STATUS)?;
    if status == "ok" || status == WORKING {
        return Some(Ok(Reply {
            content_type: msg.content_type.clone(),
            payload: msg.payload.clone(),
        }));
    }
    let code = code_from_name(status).unwrap_or(ErrorCode::Other);
    let text = property(msg, ERROR).unwrap_or("no reason given");
    Some(Err(BusError::new(code, text.to_owned())))
}

/// Whether a send answered with `e` should be sent again later: the service was busy or
/// between versions, not wrong.
pub fn worth_resending(e: &BusError) -> bool {
    matches!(e.code, ErrorCode::QueueFull | ErrorCode::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::new_message;

    fn topics() -> Topics {
        Topics::new("busbar/fabric", Place::parse("gw1").unwrap())
    }

    #[test]
    fn topics_name_inboxes_groups_and_replies() {
        let t = topics();
        let to_gw2 = t.request_topic(&Address::parse("echo@gw2").unwrap());
        assert_eq!(to_gw2.as_str(), "busbar/fabric/gw2/to/echo/gw1");
        assert_eq!(t.inbox().as_str(), "busbar/fabric/gw1/#");
        assert!(t.inbox().matches(&t.reply_topic()));
        let g = t.group_filter(&Place::parse("workers").unwrap(), "resize");
        assert_eq!(
            g.as_str(),
            "$share/workers/busbar/fabric/workers/to/resize/+"
        );
        assert!(g.matches(&t.request_topic(&Address::parse("resize@workers").unwrap())));
    }

    #[test]
    fn arrivals_are_told_apart_and_strangers_ignored() {
        let t = topics();
        let gw3 = Place::parse("gw3").unwrap();
        assert_eq!(
            t.arrival("busbar/fabric/gw1/to/echo/gw3"),
            Some(Arrival::Request {
                place: "gw1".into(),
                service: "echo".into(),
                sender: gw3.clone(),
            })
        );
        assert_eq!(
            t.arrival("busbar/fabric/workers/to/resize/gw3"),
            Some(Arrival::Request {
                place: "workers".into(),
                service: "resize".into(),
                sender: gw3,
            })
        );
        assert_eq!(t.arrival("busbar/fabric/gw1/reply"), Some(Arrival::Reply));
        for other in [
            "busbar/fabric/gw2/reply",
            "busbar/fabric/gw1/to/echo/bad/gw3",
            "busbar/fabric/gw1/to/echo",
            "busbar/fabric/gw1/to/a/b/c",
            "busbar/fabric/gw1/reply/x",
            "busbar/fabricx/gw1/reply",
            "busbar/fabric",
            "elsewhere/gw1/reply",
        ] {
            assert_eq!(t.arrival(other), None, "{other}");
        }
    }

    #[test]
    fn replies_carry_the_outcome_both_ways() {
        let node = Place::parse("gw2").unwrap();
        let outcomes = [
            Ok(Reply {
                content_type: "text/plain".into(),
                payload: b"hi".to_vec(),
            }),
            Err(BusError::new(ErrorCode::UnknownAction, "no `x`")),
        ];
        for outcome in outcomes {
            let mut msg = new_message("1".into(), "topics", "fabric", "$topic", "", Vec::new());
            if let Ok(r) = &outcome {
                msg.content_type = r.content_type.clone();
                msg.payload = r.payload.clone();
            }
            msg.headers = reply_properties(&node, &outcome);
            assert_eq!(property(&msg, NODE), Some("gw2"));
            let back = reply_outcome(&msg).unwrap();
            match (back, outcome) {
                (Ok(a), Ok(b)) => {
                    assert_eq!((a.content_type, a.payload), (b.content_type, b.payload))
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("outcome changed"),
            }
        }
        let bare = new_message("1".into(), "topics", "fabric", "$topic", "", Vec::new());
        assert!(reply_outcome(&bare).is_none());
        assert!(worth_resending(&BusError::new(ErrorCode::QueueFull, "")));
        assert!(!worth_resending(&BusError::new(
            ErrorCode::UnknownAction,
            ""
        )));
    }
}
