//! Publishes arriving on the fabric: replies to this node's requests, and requests from
//! other nodes for local services, delivered once each (a request seen before is answered
//! again, not delivered again) and answered on the sending node's reply topic.

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
/// Longest message id (correlation data) taken from another node.
const MAX_ID_BYTES: usize = 256;
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
    /// Keys in the order they were first seen, with the generation they were seen in.
    order: VecDeque<(Key, u64)>,
    by_key: HashMap<Key, (u64, Outcome)>,
    generation: u64,
}

impl Seen {
    fn get(&self, key: &Key) -> Option<&Outcome> {
        self.by_key.get(key).map(|(_, o)| o)
    }

    fn set(&mut self, key: Key, outcome: Outcome) {
        if let Some(entry) = self.by_key.get_mut(&key) {
            entry.1 = outcome;
            return;
        }
        self.generation += 1;
        self.by_key.insert(key.clone(), (self.generation, outcome));
        self.order.push_back((key, self.generation));
        while self.by_key.len() > SEEN {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            // A key forgotten and seen again is in `order` twice: only its last counts.
            if self.by_key.get(&old).is_some_and(|(g, _)| *g == generation) {
                self.by_key.remove(&old);
            }
        }
        // Stale entries of forgotten keys do not pile up past twice the bound.
        if self.order.len() > 2 * SEEN {
            let by_key = &self.by_key;
            self.order
                .retain(|(k, g)| by_key.get(k).is_some_and(|(kg, _)| kg == g));
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
            Some(Arrival::Request {
                place,
                service,
                sender,
            }) => self.requested(msg, &place, service, &sender),
            None => {
                tracing::warn!(%topic, "a publish on the fabric's subscriptions that is not of the fabric was dropped")
            }
        }
    }

    fn requested(&mut self, msg: &Message, place: &str, service: String, sender: &Place) {
        let from = property(msg, FROM).and_then(|f| Address::parse_sender(f).ok());
        let id = msg
            .correlation_id
            .clone()
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES);
        let (Some(id), Some(from), Some(action), Some(kind)) =
            (id, from, property(msg, ACTION), property(msg, KIND))
        else {
            tracing::warn!(%sender, "a malformed request on the fabric was dropped");
            return;
        };
        if &from.place != sender {
            tracing::warn!(%from, %sender,
                "a request on the fabric claiming to come from another node than its topic names was dropped");
            return;
        }
        // Answered on the sender's own reply topic, whatever the request says.
        let reply_to = self.topics.reply_topic_of(sender);
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
                return self.answer(&key, reply_to, result.map(|()| crate::bus::empty_reply()));
            }
            Some(Outcome::Called) => {
                self.stats.duplicates.fetch_add(1, Relaxed);
                return;
            }
        }
        if let Err(e) = self.reachable(place, &service) {
            if !super::protocol::worth_resending(&e) {
                self.seen.set(key.clone(), Outcome::Sent(Err(e.clone())));
            }
            return self.answer(&key, reply_to, Err(e));
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
            .map(|ms| Duration::from_millis(ms.clamp(100, 3_600_000) / 2));
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
        self.tasks.spawn(async move {
            let work = async {
                if send {
                    let r = bus.send_for_outcome(local, timeout).await;
                    r.map(|()| crate::bus::empty_reply())
                } else {
                    bus.call(local, timeout).await
                }
            };
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

    /// Whether `service` (asked for at `place`: this node, or a group) can take a request
    /// from another node here.
    fn reachable(&self, place: &str, service: &str) -> Result<(), BusError> {
        let node = self.topics.node();
        if busbar_base::names::check_name(service).is_err() {
            return Err(BusError::new(
                ErrorCode::UnknownDestination,
                format!("`{service}` on node `{node}` is not a service other nodes can reach"),
            ));
        }
        if self.bus.knows(service) {
            return Ok(());
        }
        if place != node.as_str() {
            // A member of a group that stopped it a moment ago: another member can take it.
            return Err(BusError::new(
                ErrorCode::Unavailable,
                format!("`{service}` is no longer running on node `{node}`"),
            ));
        }
        Err(BusError::new(
            ErrorCode::UnknownDestination,
            format!(
                "no service named `{service}` on node `{node}` (running: {})",
                self.bus.custom_services().join(", ")
            ),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_forgets_and_remembers_within_its_bound() {
        let mut seen = Seen::default();
        let key = |i: usize| (format!("a@gw{}", i % 7), i.to_string());
        seen.set(key(0), Outcome::Working);
        seen.forget(&key(0));
        seen.set(key(0), Outcome::Called);
        for i in 1..SEEN {
            seen.set(key(i), Outcome::Working);
        }
        // The forgotten-and-seen-again key is the oldest, once; one more evicts only it.
        assert!(seen.get(&key(0)).is_some());
        seen.set(key(SEEN), Outcome::Working);
        assert!(seen.get(&key(0)).is_none());
        assert!(seen.get(&key(1)).is_some() && seen.get(&key(SEEN)).is_some());
        assert_eq!(seen.by_key.len(), SEEN);
        for i in 0..3 * SEEN {
            let k = key(SEEN + 1 + i);
            seen.set(k.clone(), Outcome::Working);
            seen.forget(&k);
        }
        assert!(seen.order.len() <= 2 * SEEN + 1, "{}", seen.order.len());
    }
}
