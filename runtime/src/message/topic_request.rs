//! What services ask of the node's broker connections, as messages to the internal service
//! `topics`: the host builds them from the `topics` imports (topics already absolute and
//! checked against the grants), the broker connections read them back.
//!
//! Wire form: the action names the request; headers `broker`, then `topic` or `filter`, then
//! for a publish `qos` (`0`, `1`, `confirm`), `retain` and `response-topic` (empty: none),
//! then the publish's MQTT 5 user properties; the correlation id is the publish's
//! correlation data; the content type is the publish's (empty: none); the payload is the
//! publish's.

use busbar_base::topic::{TopicFilter, TopicName};

use super::{BusError, ErrorCode, Message, new_message};

/// The internal service holding the node's broker connections.
pub const TOPICS: &str = "topics";
/// Reserved action of a publish arriving on a subscribed topic.
pub const ACTION_TOPIC: &str = "$topic";

const PUBLISH: &str = "publish";
const SUBSCRIBE: &str = "subscribe";
const UNSUBSCRIBE: &str = "unsubscribe";

const PRUNE: &str = "prune";
/// The `qos` header of a [`PublishMode::Confirmed`] publish.
const CONFIRM: &str = "confirm";

/// How a publish is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// QoS 0, straight to the session (or `unavailable`).
    AtMostOnce,
    /// QoS 1 through the connection's durable outbox: answered once it is stored.
    AtLeastOnce,
    /// QoS 1 straight to the session, answered when the broker acknowledges it: `unavailable`
    /// when no one is subscribed to the topic (MQTT 5 reason 0x10) or the session is lost
    /// first (the fabric's requests).
    Confirmed,
}

/// One request to `topics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRequest {
    /// Publish on `broker`.
    Publish {
        /// The connection.
        broker: String,
        /// Where.
        topic: TopicName,
        /// How it is sent.
        mode: PublishMode,
        /// Kept by the broker as the topic's last value.
        retain: bool,
        /// MQTT 5 content type.
        content_type: Option<String>,
        /// MQTT 5 response topic.
        response_topic: Option<TopicName>,
        /// MQTT 5 correlation data.
        correlation: Option<String>,
        /// MQTT 5 user properties.
        properties: Vec<(String, String)>,
        /// The body.
        payload: Vec<u8>,
    },
    /// Subscribe the sender to `filter` on `broker`.
    Subscribe {
        /// The connection.
        broker: String,
        /// The absolute filter.
        filter: TopicFilter,
    },
    /// End the sender's subscription to `filter` on `broker`.
    Unsubscribe {
        /// The connection.
        broker: String,
        /// The absolute filter.
        filter: TopicFilter,
    },

    /// The sender's grants on `broker` are now `keep`: its subscriptions there that no
    /// filter of `keep` covers end (a new version with narrower grants; with none, the
    /// service stopped).
    Prune {
        /// The connection.
        broker: String,
        /// The absolute filters it may subscribe to there.
        keep: Vec<TopicFilter>,
    },
}

impl TopicRequest {
    /// The message `source` sends to ask for it.
    pub fn into_message(self, id: String, source: &str) -> Message {
        let (action, broker, target) = match self {
            TopicRequest::Publish {
                broker,
                topic,
                mode,
                retain,
                content_type,
                response_topic,
                correlation,
                properties,
                payload,
            } => {
                let qos = match mode {
                    PublishMode::AtMostOnce => "0",
                    PublishMode::AtLeastOnce => "1",
                    PublishMode::Confirmed => CONFIRM,
                };
                let content_type = content_type.unwrap_or_default();
                let mut msg = new_message(id, source, TOPICS, PUBLISH, &content_type, payload);
                msg.headers = vec![
                    ("broker".to_owned(), broker),
                    ("topic".to_owned(), topic.to_string()),
                    ("qos".to_owned(), qos.to_owned()),
                    ("retain".to_owned(), retain.to_string()),
                    (
                        "response-topic".to_owned(),
                        response_topic.map(String::from).unwrap_or_default(),
                    ),
                ];
                msg.headers.extend(properties);
                msg.correlation_id = correlation;
                return msg;
            }
            TopicRequest::Subscribe { broker, filter } => (SUBSCRIBE, broker, filter),
            TopicRequest::Unsubscribe { broker, filter } => (UNSUBSCRIBE, broker, filter),
            TopicRequest::Prune { broker, keep } => {
                let mut msg = new_message(id, source, TOPICS, PRUNE, "", Vec::new());
                msg.headers = std::iter::once(("broker".to_owned(), broker))
                    .chain(keep.iter().map(|f| ("keep".to_owned(), f.to_string())))
                    .collect();
                return msg;
            }
        };
        let mut msg = new_message(id, source, TOPICS, action, "", Vec::new());
        msg.headers = vec![
            ("broker".to_owned(), broker),
            ("filter".to_owned(), target.to_string()),
        ];
        msg
    }

    /// The request in `msg`; an error names what is malformed.
    pub fn from_message(msg: &Message) -> Result<Self, BusError> {
        let bad = |what: &str| {
            BusError::new(
                ErrorCode::UnknownAction,
                format!("`{TOPICS}`: malformed `{}` request ({what})", msg.action),
            )
        };

        let mut headers = msg.headers.iter();
        let mut next = |name: &str| match headers.next() {
            Some((k, v)) if k == name => Ok(v.clone()),
            _ => Err(bad(&format!("no `{name}` header"))),
        };
        let broker = next("broker")?;
        match msg.action.as_str() {
            PRUNE => {
                let keep = headers
                    .map(|(k, v)| match k.as_str() {
                        "keep" => TopicFilter::parse(v).map_err(|e| bad(&e.to_string())),
                        other => Err(bad(&format!("unexpected header `{other}`"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TopicRequest::Prune { broker, keep })
            }
            PUBLISH => {
                let topic = TopicName::parse(&next("topic")?).map_err(|e| bad(&e.to_string()))?;
                let mode = match next("qos")?.as_str() {
                    "0" => PublishMode::AtMostOnce,
                    "1" => PublishMode::AtLeastOnce,
                    CONFIRM => PublishMode::Confirmed,
                    other => return Err(bad(&format!("qos `{other}`"))),
                };
                let retain = next("retain")? == "true";
                let response_topic = match next("response-topic")?.as_str() {
                    "" => None,
                    t => Some(TopicName::parse(t).map_err(|e| bad(&e.to_string()))?),
                };
                Ok(TopicRequest::Publish {
                    broker,
                    topic,
                    mode,
                    retain,
                    response_topic,
                    correlation: msg.correlation_id.clone(),
                    content_type: (!msg.content_type.is_empty()).then(|| msg.content_type.clone()),
                    properties: headers.cloned().collect(),
                    payload: msg.payload.clone(),
                })
            }
            SUBSCRIBE | UNSUBSCRIBE => {
                let filter =
                    TopicFilter::parse(&next("filter")?).map_err(|e| bad(&e.to_string()))?;
                Ok(if msg.action == SUBSCRIBE {
                    TopicRequest::Subscribe { broker, filter }
                } else {
                    TopicRequest::Unsubscribe { broker, filter }
                })
            }
            other => Err(BusError::new(
                ErrorCode::UnknownAction,
                format!(
                    "`{TOPICS}` has no action `{other}` (it takes {PUBLISH}, {SUBSCRIBE}, \
                     {UNSUBSCRIBE}, {PRUNE})"
                ),
            )),
        }
    }

    /// The connection it is for.
    pub fn broker(&self) -> &str {
        match self {
            TopicRequest::Publish { broker, .. }
            | TopicRequest::Subscribe { broker, .. }
            | TopicRequest::Unsubscribe { broker, .. }
            | TopicRequest::Prune { broker, .. } => broker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_the_message_form() {
        let requests = [
            TopicRequest::Publish {
                broker: "field".into(),
                topic: TopicName::parse("a/b").unwrap(),
                mode: PublishMode::AtLeastOnce,
                retain: true,
                content_type: Some("application/json".into()),
                response_topic: Some(TopicName::parse("r/x").unwrap()),
                correlation: Some("id-1".into()),
                properties: vec![("k".into(), "v".into())],
                payload: b"x".to_vec(),
            },
            TopicRequest::Publish {
                broker: "com".into(),
                topic: TopicName::parse("a").unwrap(),
                mode: PublishMode::Confirmed,
                retain: false,
                content_type: None,
                response_topic: None,
                correlation: None,
                properties: Vec::new(),
                payload: Vec::new(),
            },
            TopicRequest::Subscribe {
                broker: "field".into(),
                filter: TopicFilter::parse("$share/g/a/+").unwrap(),
            },
            TopicRequest::Unsubscribe {
                broker: "field".into(),
                filter: TopicFilter::parse("a/#").unwrap(),
            },
            TopicRequest::Prune {
                broker: "field".into(),
                keep: vec![
                    TopicFilter::parse("a/#").unwrap(),
                    TopicFilter::parse("b").unwrap(),
                ],
            },
            TopicRequest::Prune {
                broker: "field".into(),
                keep: Vec::new(),
            },
        ];
        for r in requests {
            let msg = r.clone().into_message("1".into(), "svc");
            assert_eq!(msg.destination, TOPICS);
            assert_eq!(TopicRequest::from_message(&msg).unwrap(), r);
        }
        let mut msg = TopicRequest::Prune {
            broker: "b".into(),
            keep: Vec::new(),
        }
        .into_message("1".into(), "svc");
        msg.action = "subscribe".into();
        msg.headers.clear();
        let e = TopicRequest::from_message(&msg).unwrap_err();
        assert!(e.message.contains("no `broker` header"), "{e}");
    }
}
