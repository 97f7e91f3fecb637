//! Messages for services on other nodes: calls wait for their reply; sends are kept in the
//! outbox until the receiving node says they were processed, and sent again until then
//! (`deadlines`).

use std::time::{Duration, Instant};

use super::protocol::{
    ACTION, FROM, KIND, NODE, RESEND_MS, STATUS, TIMEOUT_MS, WORKING, property, reply_outcome,
    worth_resending,
};
use super::task::{Done, Fabric};
use crate::bus::Delivery;
use crate::com::spool::{Record, SpoolError};
use crate::message::{BusError, ErrorCode, Message, PublishMode, Remote, TopicRequest};
use busbar_base::address::{Address, Place};

/// Longest call the fabric waits for (an hour).
const MAX_CALL_MS: u64 = 3_600_000;

/// A call waiting for its reply.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) d: Delivery,
    /// The node or group called.
    pub(super) place: String,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
    pub(super) timeout_ms: u64,
}

/// A send not yet processed at the other end.
#[derive(Debug)]
pub(super) struct Send {
    seq: u64,
    pub(super) record: Record,
    /// The node or group it is for.
    pub(super) place: String,
    /// The sender, until the broker took the first publish.
    pub(super) waiting: Option<Delivery>,
    /// When it was last published (or last said to be worked on); none: not yet.
    pub(super) sent_at: Option<Instant>,
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
            return self.finish(d, Duration::ZERO, Err(outbox_error(&msg.destination, &e)));
        }
        self.take_outbox();
        let Some(s) = self.sends.get_mut(&record.id) else {
            // Kept, but not read back: taken on the next tick and sent then.
            self.reread = true;
            return self.finish(d, Duration::ZERO, Ok(None));
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
    pub(super) fn take_outbox(&mut self) {
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
                    tracing::error!(error = %e, "cannot read the fabric's outbox; trying again");
                    self.reread = true;
                    return;
                }
            }
        }
    }

    /// At start: what an earlier run did not get processed goes again.
    pub(super) fn restore(&mut self) {
        self.take_outbox();
        let expired = self.outbox.counts().expired;
        if expired > 0 {
            tracing::error!(
                expired,
                "messages for other nodes outlived the fabric outbox's TTL while the node was down; dropped"
            );
        }
    }

    pub(super) fn publish_record(&self, record: &Record) {
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
                let e = unreachable(&place, &c.d.msg.destination, e);
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
        let Some(d) = s.waiting.take() else {
            if let Err(e) = result {
                tracing::debug!(%id, place = %s.place, error = %e, "a send went again and was not taken; it goes again later");
            }
            return;
        };
        match result {
            Err(e) if refused(&e) => {
                let place = s.place.clone();
                self.stats.failed(&place);
                self.retire(id);
                let e = unreachable(&place, &d.msg.destination, e);
                self.finish(d, Duration::ZERO, Err(e));
            }
            // Taken, or an outcome the broker did not say (the session was lost, no answer
            // in time): it is in the outbox, so it is accepted and goes again until a node
            // says it was processed.
            _ => {
                let took = s.sent_at.map_or(Duration::ZERO, |t| t.elapsed());
                self.finish(d, took, Ok(None));
            }
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
        if property(msg, STATUS) == Some(WORKING) {
            if let Some(s) = self.sends.get_mut(id) {
                s.sent_at = Some(Instant::now());
            }
            return;
        }
        // The node that answered labels the round trip (the one called if it names none).
        let answered_by = |place: &str| {
            property(msg, NODE)
                .and_then(|n| Place::parse(n).ok())
                .map_or_else(|| place.to_owned(), String::from)
        };
        if let Some(c) = self.calls.remove(id) {
            let node = answered_by(&c.place);
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
        let node = answered_by(&s.place);
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
                let at = format!("{}@{node}", self.topics.service_of(&s.record));
                let place = s.place.clone();
                let failed = failed_message(&s.record);
                tracing::warn!(id = %failed.id, from = %failed.source, to = %at, error = %e,
                    "a message sent to another node failed there");
                self.stats.failed(&place);
                self.retire(id);
                self.bus.report_failure(&failed, &at, &e);
            }
        }
    }

    /// Send `id` was processed (or will never be): it leaves the outbox.
    pub(super) fn retire(&mut self, id: &str) {
        if let Some(mut s) = self.sends.remove(id) {
            self.outbox.ack(s.seq);
            if let Some(d) = s.waiting.take() {
                // Processed before the broker's acknowledgement came back.
                self.finish(d, Duration::ZERO, Ok(None));
            }
        }
    }
}

/// The message a failed send stood for, to tell its sender (`$error`).
pub(super) fn failed_message(record: &Record) -> Message {
    let action = record
        .headers
        .iter()
        .find(|(k, _)| k == ACTION)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Message {
        id: record.id.clone(),
        source: record.source.clone(),
        destination: String::new(),
        action,
        content_type: String::new(),
        payload: Vec::new(),
        correlation_id: None,
        headers: Vec::new(),
    }
}

/// Whether the broker said no for certain: nobody is subscribed there, or its ACL refused.
fn refused(e: &BusError) -> bool {
    (e.code == ErrorCode::Unavailable && e.message.contains("no one is subscribed"))
        || e.code == ErrorCode::NotPermitted
}

/// The error a request the broker did not take gives its sender.
fn unreachable(place: &str, destination: &str, e: BusError) -> BusError {
    if e.code == ErrorCode::Unavailable && e.message.contains("no one is subscribed") {
        return BusError::new(
            ErrorCode::Unavailable,
            format!(
                "nothing on the fabric takes `{destination}`: no node `{place}` is up, and no \
                 group `{place}` has it as a member (is it running, and is the name right?)"
            ),
        );
    }
    if e.message.contains("is not connected") {
        return BusError::new(
            ErrorCode::Unavailable,
            format!("the fabric's broker is not connected: `{destination}` cannot be called now"),
        );
    }
    BusError::new(
        e.code,
        format!("the fabric could not reach `{place}`: {}", e.message),
    )
}

/// What the sender of a message the outbox did not take is told.
fn outbox_error(destination: &str, e: &SpoolError) -> BusError {
    e.to_bus(
        &format!("the fabric's outbox (`{destination}` was not sent)"),
        "fabric.outbox.max_bytes",
    )
}
