//! Messages for services on other nodes: calls wait for their reply; sends are kept in the
//! outbox until the receiving node says they were processed, and sent again until then.

use std::time::{Duration, Instant};

use super::protocol::{
    ACTION, FROM, KIND, NODE, RESEND_MS, TIMEOUT_MS, property, reply_outcome, worth_resending,
};
use super::task::{Done, Fabric};
use crate::bus::{Delivery, ReplyTo};
use crate::com::spool::Record;
use crate::message::{BusError, ErrorCode, Message, PublishMode, Remote, TopicRequest};
use busbar_base::address::Address;

/// Longest call the fabric waits for (an hour).
const MAX_CALL_MS: u64 = 3_600_000;
/// Sends sent again per tick, at most.
const RESEND_BATCH: usize = 512;

/// A call waiting for its reply.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) d: Delivery,
    /// The node or group called.
    place: String,
    started: Instant,
    deadline: Instant,
    timeout_ms: u64,
}

/// A send not yet processed at the other end.
#[derive(Debug)]
pub(super) struct Send {
    seq: u64,
    record: Record,
    /// The node or group it is for.
    place: String,
    /// The sender, until the broker took the first publish.
    pub(super) waiting: Option<Delivery>,
    /// When it was last published (or last said to be worked on); none: not yet.
    sent_at: Option<Instant>,
}

impl Fabric {
    /// A message for `service@place` from a local service (or the admin API).
    pub(super) fn outgoing(&mut self, d: Delivery) {
        let mut msg = Message::clone(&d.msg);
        let mark = Remote::take(&mut msg);
        let address = match Address::parse(&msg.destination) {
            Ok(a) => a,
            Err(e) => {
                let e = BusError::new(ErrorCode::UnknownDestination, e);
                return self.finish(d, Duration::ZERO, Err(e));
            }
        };
        match mark {
            Some(Remote::Call { timeout_ms }) => self.call(d, msg, &address, timeout_ms),
            Some(Remote::Send) | None => self.send(d, msg, &address),
        }
    }

    fn call(&mut self, d: Delivery, msg: Message, address: &Address, timeout_ms: u64) {
        let timeout_ms = timeout_ms.min(MAX_CALL_MS);
        let mut props = self.request_properties(&msg, "call");
        props.push((TIMEOUT_MS.to_owned(), timeout_ms.to_string()));
        let place = address.place.to_string();
        self.stats.sent(&place);
        let now = Instant::now();
        let id = msg.id.clone();
        let topic = self.topics.request_topic(address);
        self.publish(&id, topic, props, msg.content_type, msg.payload);
        self.calls.insert(
            id,
            Call {
                d,
                place,
                started: now,
                deadline: now + Duration::from_millis(timeout_ms),
                timeout_ms,
            },
        );
    }

    fn send(&mut self, d: Delivery, msg: Message, address: &Address) {
        let mut headers = self.request_properties(&msg, "send");
        headers.push((RESEND_MS.to_owned(), self.resend.as_millis().to_string()));
        let record = Record {
            id: msg.id.clone(),
            source: msg.source.clone(),
            content_type: msg.content_type,
            headers,
            payload: msg.payload,
            accepted_ms: busbar_base::time::unix_ms(),
            topic: Some(self.topics.request_topic(address).to_string()),
            retain: false,
        };
        if let Some(Err(e)) = self.outbox.append(std::slice::from_ref(&record)).pop() {
            let e = BusError::new(
                ErrorCode::QueueFull,
                format!(
                    "the fabric's outbox did not take the message for `{}`: {e} (raise \
                     fabric.outbox.max_bytes)",
                    msg.destination
                ),
            );
            return self.finish(d, Duration::ZERO, Err(e));
        }
        self.take_outbox();
        let Some(s) = self.sends.get_mut(&record.id) else {
            // Expired at once (a TTL of zero): nothing was kept.
            let e = BusError::new(ErrorCode::Other, "the fabric's outbox TTL is zero");
            return self.finish(d, Duration::ZERO, Err(e));
        };
        s.waiting = Some(d);
        s.sent_at = Some(Instant::now());
        self.stats.sent(address.place.as_str());
        self.publish_record(&record);
    }

    /// The user properties of a request from `msg`.
    fn request_properties(&self, msg: &Message, kind: &str) -> Vec<(String, String)> {
        vec![
            (KIND.to_owned(), kind.to_owned()),
            (ACTION.to_owned(), msg.action.clone()),
            (
                FROM.to_owned(),
                format!("{}@{}", msg.source, self.topics.node()),
            ),
        ]
    }

    /// What the outbox holds and the fabric does not yet track (after an append, and at
    /// start: what an earlier run left).
    fn take_outbox(&mut self) {
        loop {
            match self.outbox.next_record() {
                Ok(Some((seq, record))) => {
                    let place = record
                        .topic
                        .as_deref()
                        .and_then(|t| self.topics.place_of(t))
                        .unwrap_or_default();
                    self.sends.entry(record.id.clone()).or_insert(Send {
                        seq,
                        record,
                        place,
                        waiting: None,
                        sent_at: None,
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the fabric's outbox");
                    return;
                }
            }
        }
    }

    /// At start: what an earlier run did not get processed goes again.
    pub(super) fn restore(&mut self) {
        self.take_outbox();
    }

    fn publish_record(&self, record: &Record) {
        let Some(topic) = record
            .topic
            .as_deref()
            .and_then(|t| busbar_base::topic::TopicName::parse(t).ok())
        else {
            return;
        };
        self.publish(
            &record.id,
            topic,
            record.headers.clone(),
            record.content_type.clone(),
            record.payload.clone(),
        );
    }

    /// Publishes request `id`; the broker's answer comes back as [`Done::Published`].
    fn publish(
        &self,
        id: &str,
        topic: busbar_base::topic::TopicName,
        properties: Vec<(String, String)>,
        content_type: String,
        payload: Vec<u8>,
    ) {
        let request = TopicRequest::Publish {
            broker: self.broker.clone(),
            topic,
            mode: PublishMode::Confirmed,
            retain: false,
            content_type: (!content_type.is_empty()).then_some(content_type),
            response_topic: Some(self.topics.reply_topic()),
            correlation: Some(id.to_owned()),
            properties,
            payload,
        };
        let id = id.to_owned();
        self.ask(request, move |result| Some(Done::Published { id, result }));
    }

    /// The broker took (or did not take) request `id`.
    pub(super) fn published(&mut self, id: &str, result: Result<(), BusError>) {
        if let Some(c) = self.calls.get(id) {
            if let Err(e) = result {
                let place = c.place.clone();
                let e = unreachable(&place, e);
                self.stats.failed(&place);
                if let Some(c) = self.calls.remove(id) {
                    self.finish(c.d, c.started.elapsed(), Err(e));
                }
            }
            return;
        }
        let Some(s) = self.sends.get_mut(id) else {
            return;
        };
        match (s.waiting.take(), result) {
            (Some(d), Ok(())) => {
                let took = s.sent_at.map_or(Duration::ZERO, |t| t.elapsed());
                self.finish(d, took, Ok(None));
            }
            (Some(d), Err(e)) => {
                let place = s.place.clone();
                self.stats.failed(&place);
                self.retire(id);
                self.finish(d, Duration::ZERO, Err(unreachable(&place, e)));
            }
            (None, Err(e)) => {
                tracing::debug!(%id, place = %s.place, error = %e, "a send went again and was not taken; it goes again later");
            }
            (None, Ok(())) => {}
        }
    }

    /// A reply to one of this node's requests arrived.
    pub(super) fn replied(&mut self, msg: &Message) {
        let Some(id) = msg.correlation_id.as_deref() else {
            tracing::warn!("a reply on the fabric without correlation data was dropped");
            return;
        };
        let Some(outcome) = reply_outcome(msg) else {
            tracing::warn!(%id, "a reply on the fabric without a status was dropped");
            return;
        };
        if property(msg, super::protocol::STATUS) == Some(super::protocol::WORKING) {
            if let Some(s) = self.sends.get_mut(id) {
                s.sent_at = Some(Instant::now());
            }
            return;
        }
        if let Some(c) = self.calls.remove(id) {
            let node = property(msg, NODE).unwrap_or(&c.place).to_owned();
            self.stats
                .answered(&node, c.started.elapsed().as_secs_f64());
            if outcome.is_err() {
                self.stats.failed(&c.place);
            }
            let took = c.started.elapsed();
            return self.finish(c.d, took, outcome.map(Some));
        }
        let Some(s) = self.sends.get_mut(id) else {
            // Late (the caller gave up) or a second answer to a send sent twice.
            return;
        };
        let node = property(msg, NODE).unwrap_or(&s.place).to_owned();
        if let Some(t) = s.sent_at {
            self.stats.answered(&node, t.elapsed().as_secs_f64());
        }
        match outcome {
            Ok(_) => self.retire(id),
            Err(e) if worth_resending(&e) => {
                // Busy or between versions there: it goes again after `resend_ms`.
                s.sent_at = Some(Instant::now());
            }
            Err(e) => {
                let failed = Message {
                    id: s.record.id.clone(),
                    source: s.record.source.clone(),
                    destination: String::new(),
                    action: property_of(&s.record, ACTION),
                    content_type: String::new(),
                    payload: Vec::new(),
                    correlation_id: None,
                    headers: Vec::new(),
                };
                let at = format!("{}@{node}", self.topics.service_of(&s.record));
                tracing::warn!(id = %failed.id, from = %failed.source, to = %at, error = %e,
                    "a message sent to another node failed there");
                self.stats.failed(&s.place.clone());
                self.retire(id);
                self.bus.report_failure(&failed, &at, &e);
            }
        }
    }

    /// Send `id` was processed (or will never be): it leaves the outbox.
    fn retire(&mut self, id: &str) {
        if let Some(mut s) = self.sends.remove(id) {
            self.outbox.ack(s.seq);
            if let Some(d) = s.waiting.take() {
                // Processed before the broker's acknowledgement came back.
                self.finish(d, Duration::ZERO, Ok(None));
            }
        }
    }

    /// Calls past their deadline are answered `timeout`; calls whose caller gave up are
    /// forgotten.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let over: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now || caller_gone(&c.d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in over {
            let Some(c) = self.calls.remove(&id) else {
                continue;
            };
            self.stats.failed(&c.place);
            let e = BusError::new(
                ErrorCode::Timeout,
                format!(
                    "no reply from `{}` within {} ms (is `{}` up? the call may still be \
                     processed there)",
                    c.d.msg.destination, c.timeout_ms, c.place
                ),
            );
            self.finish(c.d, c.started.elapsed(), Err(e));
        }
    }

    /// Sends with no word for `resend_ms` go again (to whichever member, for a group);
    /// sends older than the outbox's TTL are given up, their senders told.
    pub(super) fn resend_due(&mut self, now: Instant) {
        let ttl_ms = self.outbox_ttl_ms();
        let now_ms = busbar_base::time::unix_ms();
        let expired: Vec<String> = self
            .sends
            .iter()
            .filter(|(_, s)| s.waiting.is_none())
            .filter(|(_, s)| s.record.accepted_ms.saturating_add(ttl_ms) <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(s) = self.sends.get(&id) {
                let e = BusError::new(
                    ErrorCode::Timeout,
                    format!(
                        "not processed at `{}` within the fabric outbox's TTL; dropped",
                        s.place
                    ),
                );
                let failed = Message {
                    id: id.clone(),
                    source: s.record.source.clone(),
                    destination: String::new(),
                    action: property_of(&s.record, ACTION),
                    content_type: String::new(),
                    payload: Vec::new(),
                    correlation_id: None,
                    headers: Vec::new(),
                };
                tracing::error!(%id, place = %s.place, "a message for another node outlived the fabric outbox's TTL and was dropped");
                let at = s.place.clone();
                self.retire(&id);
                self.bus.report_failure(&failed, &at, &e);
            }
        }
        let due: Vec<String> = self
            .sends
            .iter()
            .filter(|(_, s)| s.waiting.is_none())
            .filter(|(_, s)| {
                s.sent_at
                    .is_none_or(|t| now.duration_since(t) >= self.resend)
            })
            .map(|(id, _)| id.clone())
            .take(RESEND_BATCH)
            .collect();
        for id in due {
            let Some(s) = self.sends.get_mut(&id) else {
                continue;
            };
            if s.sent_at.is_some() {
                self.stats.resent(&s.place);
            }
            s.sent_at = Some(now);
            let record = s.record.clone();
            self.publish_record(&record);
        }
    }

    fn outbox_ttl_ms(&self) -> u64 {
        u64::try_from(self.outbox.ttl().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A user property kept in an outbox record.
fn property_of(record: &Record, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Whether the caller waiting on `d` has given up.
fn caller_gone(d: &Delivery) -> bool {
    matches!(&d.reply, ReplyTo::Caller(tx) if tx.is_closed())
}

/// The error a request the broker did not take gives its sender.
fn unreachable(place: &str, e: BusError) -> BusError {
    if e.code == ErrorCode::Unavailable && e.message.contains("no one is subscribed") {
        return BusError::new(
            ErrorCode::Unavailable,
            format!(
                "no node or group `{place}` is on the fabric (nothing is subscribed to its \
                 inbox): is it running, and is the name right?"
            ),
        );
    }
    BusError::new(
        e.code,
        format!("the fabric could not reach `{place}`: {}", e.message),
    )
}
