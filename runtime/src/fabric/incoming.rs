//! Publishes arriving on the fabric: replies to this node's requests, and requests from
//! other nodes for local services, delivered once each (a request seen before is answered
//! again, not delivered again) and answered on their response topic.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::protocol::{
    ACTION, Arrival, FROM, KIND, NODE, RESEND_MS, STATUS, TIMEOUT_MS, WORKING, property,
    reply_properties,
};
use super::task::{Done, Fabric};
use crate::message::{BusError, ErrorCode, Message, PublishMode, Reply, TopicRequest};
use busbar_base::address::{Address, Place};
use busbar_base::topic::TopicName;

/// Requests from other nodes remembered, to know one sent again.
const SEEN: usize = 65_536;
/// Longest a send from another node may wait for its service.
const SEND_LIMIT: Duration = Duration::from_secs(600);
/// Longest call from another node served (an hour).
const MAX_CALL_MS: u64 = 3_600_000;

/// A request from another node: its sender (`service@node`) and message id.
pub(super) type Key = (String, String);

/// What happened to a request seen before.
#[derive(Debug, Clone)]
enum Outcome {
    /// Its service has it.
    Working,
    /// Handled: the send's outcome, answered again to a sender that did not hear it.
    Sent(Result<(), BusError>),
    /// A call, answered.
    Called,
}

/// The last [`SEEN`] requests from other nodes.
#[derive(Debug, Default)]
pub(super) struct Seen {
    order: VecDeque<Key>,
    by_key: HashMap<Key, Outcome>,
}

impl Seen {
    fn get(&self, key: &Key) -> Option<&Outcome> {
        self.by_key.get(key)
    }

    fn set(&mut self, key: Key, outcome: Outcome) {
        if self.by_key.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
            while self.order.len() > SEEN {
                if let Some(old) = self.order.pop_front() {
                    self.by_key.remove(&old);
                }
            }
        }
    }

    fn forget(&mut self, key: &Key) {
        self.by_key.remove(key);
    }
}

impl Fabric {
    /// A publish arrived on the fabric's subscriptions.
    pub(super) fn arrived(&mut self, msg: &Message) {
        let topic = msg.headers.first().map_or("", |(_, t)| t.as_str());
        match self.topics.arrival(topic) {
            Some(Arrival::Reply) => self.replied(msg),
            Some(Arrival::Request { service, sender }) => self.requested(msg, service, &sender),
            None => {
                tracing::warn!(%topic, "a publish on the fabric's subscriptions that is not of the fabric was dropped")
            }
        }
    }

    fn requested(&mut self, msg: &Message, service: String, sender: &Place) {
        let header = |name: &str| {
            msg.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let reply_to = header("response-topic").and_then(|t| TopicName::parse(t).ok());
        let from = property(msg, FROM).and_then(|f| Address::parse(f).ok());
        let (Some(id), Some(reply_to), Some(from), Some(action), Some(kind)) = (
            msg.correlation_id.clone(),
            reply_to,
            from,
            property(msg, ACTION),
            property(msg, KIND),
        ) else {
            tracing::warn!(
                from = property(msg, FROM).unwrap_or("?"),
                "a malformed request on the fabric was dropped"
            );
            return;
        };
        if &from.place != sender {
            tracing::warn!(%from, %sender,
                "a request on the fabric claiming to come from another node than its topic names was dropped");
            return;
        }
        let send = kind == "send";
        let key = (from.to_string(), id.clone());
        match self.seen.get(&key).cloned() {
            None => {}
            Some(Outcome::Working) => {
                self.stats.duplicates.fetch_add(1, Relaxed);
                return self.answer_working(&key, reply_to);
            }
            Some(Outcome::Sent(result)) => {
                self.stats.duplicates.fetch_add(1, Relaxed);
                return self.answer(&key, reply_to, result.map(|()| empty()));
            }
            Some(Outcome::Called) => {
                self.stats.duplicates.fetch_add(1, Relaxed);
                return;
            }
        }
        let Ok(permit) = self.inbound.clone().try_acquire_owned() else {
            self.stats.busy.fetch_add(1, Relaxed);
            let e = BusError::new(
                ErrorCode::QueueFull,
                format!(
                    "node `{}` is handling as many requests from other nodes as it may \
                     (fabric.max_inbound)",
                    self.topics.node()
                ),
            );
            return self.answer(&key, reply_to, Err(e));
        };
        self.seen.set(key.clone(), Outcome::Working);
        let timeout = if send {
            SEND_LIMIT
        } else {
            let ms = property(msg, TIMEOUT_MS).and_then(|t| t.parse().ok());
            Duration::from_millis(ms.unwrap_or(30_000).min(MAX_CALL_MS))
        };
        // A send's sender hears every half `resend_ms` that its service still has it.
        let lease = property(msg, RESEND_MS)
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|_| send)
            .map(|ms| Duration::from_millis((ms / 2).max(50)));
        let local = Message {
            id,
            source: from.to_string(),
            destination: service,
            action: action.to_owned(),
            content_type: msg.content_type.clone(),
            payload: msg.payload.clone(),
            correlation_id: None,
            headers: Vec::new(),
        };
        let (bus, done) = (self.bus.clone(), self.done.clone());
        tokio::spawn(async move {
            let work = bus.call(local, timeout);
            tokio::pin!(work);
            let result = loop {
                let Some(every) = lease else {
                    break work.await;
                };
                tokio::select! {
                    r = &mut work => break r,
                    () = tokio::time::sleep(every) => {
                        let working = Done::Working { key: key.clone(), reply_to: reply_to.clone() };
                        let _ = done.send(working).await;
                    }
                }
            };
            drop(permit);
            let processed = Done::Processed {
                key,
                reply_to,
                send,
                result,
            };
            let _ = done.send(processed).await;
        });
    }

    /// A local service handled a request from another node.
    pub(super) fn processed(
        &mut self,
        key: Key,
        reply_to: TopicName,
        send: bool,
        result: Result<Reply, BusError>,
    ) {
        self.stats.served.fetch_add(1, Relaxed);
        let worth_again = result
            .as_ref()
            .err()
            .is_some_and(super::protocol::worth_resending);
        if worth_again {
            // Its sender sends it again: deliver it then.
            self.seen.forget(&key);
        } else if send {
            let outcome = result.as_ref().map(drop).map_err(Clone::clone);
            self.seen.set(key.clone(), Outcome::Sent(outcome));
        } else {
            self.seen.set(key.clone(), Outcome::Called);
        }
        self.answer(&key, reply_to, result);
    }

    /// A send from another node is still with its service.
    pub(super) fn working(&mut self, key: &Key, reply_to: TopicName) {
        if matches!(self.seen.get(key), Some(Outcome::Working)) {
            self.answer_working(key, reply_to);
        }
    }

    /// Answers request `key` on `reply_to` with its outcome (at least once; a lost answer
    /// makes a send go again, which is answered again).
    fn answer(&self, key: &Key, reply_to: TopicName, result: Result<Reply, BusError>) {
        let properties = reply_properties(self.topics.node(), &result);
        let (content_type, payload) = match result {
            Ok(r) => (
                (!r.content_type.is_empty()).then_some(r.content_type),
                r.payload,
            ),
            Err(_) => (None, Vec::new()),
        };
        self.publish_reply(key, reply_to, properties, content_type, payload);
    }

    /// Tells the sender of `key` that its service still has it.
    fn answer_working(&self, key: &Key, reply_to: TopicName) {
        let properties = vec![
            (NODE.to_owned(), self.topics.node().to_string()),
            (STATUS.to_owned(), WORKING.to_owned()),
        ];
        self.publish_reply(key, reply_to, properties, None, Vec::new());
    }

    fn publish_reply(
        &self,
        key: &Key,
        reply_to: TopicName,
        properties: Vec<(String, String)>,
        content_type: Option<String>,
        payload: Vec<u8>,
    ) {
        let request = TopicRequest::Publish {
            broker: self.broker.clone(),
            topic: reply_to,
            mode: PublishMode::Confirmed,
            retain: false,
            content_type,
            response_topic: None,
            correlation: Some(key.1.clone()),
            properties,
            payload,
        };
        let to = key.0.clone();
        self.ask(request, move |r| {
            if let Err(e) = r {
                tracing::warn!(%to, error = %e, "a reply to another node was not sent");
            }
            None
        });
    }
}

fn empty() -> Reply {
    crate::bus::empty_reply()
}
