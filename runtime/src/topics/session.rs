//! The session side of a broker connection: links coming and going, subscriptions made on
//! each session, and the outbox published in order through the in-flight window.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Packet, PubAckReason, PublishProperties, SubAck, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event};

use super::broker::{Broker, SUBSCRIBING, props};
use super::link::{LinkEvent, Takes};
use crate::bus::Delivery;
use crate::message::{BusError, ErrorCode, TOPICS};

impl Broker {
    pub(super) fn on_link(&mut self, e: LinkEvent) {
        let e = match e {
            LinkEvent::Connected { client, takes } => return self.on_connected(client, takes),
            LinkEvent::Lost(why) => return self.on_lost(&why),
            LinkEvent::Mqtt(e) => *e,
        };
        match e {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                self.window.numbered(pkid);
                self.confirms.numbered(pkid);
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(id) = self.subscribing.pop_front() {
                    self.suback.insert(pkid, id);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(d) = self.confirms.acknowledged(ack.pkid) {
                    let topic = d.msg.headers.get(1).map_or("", |(_, t)| t.as_str());
                    let result = super::confirm::outcome(&self.name, topic, ack.reason);
                    if result.is_ok() {
                        self.stats.published.fetch_add(1, Relaxed);
                    }
                    return self
                        .bus
                        .finish(TOPICS, d, Duration::ZERO, result.map(|()| None));
                }
                let Some(seq) = self.window.acknowledged(ack.pkid) else {
                    return;
                };
                self.outbox.ack(seq);
                if matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) {
                    self.stats.published.fetch_add(1, Relaxed);
                } else {
                    // The broker will not take it (its ACL, a quota): sending it again would
                    // be refused again. It leaves the outbox, logged and counted.
                    self.stats.refused.fetch_add(1, Relaxed);
                    tracing::error!(broker = %self.name, seq, reason = ?ack.reason,
                        "the broker refused a publish from the outbox (check its ACL); it is dropped");
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => self.on_suback(&ack),
            Event::Incoming(Packet::Publish(p)) => self.arrived(p),
            _ => {}
        }
    }

    fn on_lost(&mut self, why: &str) {
        if self.client.take().is_some() {
            tracing::warn!(broker = %self.name, reason = %why, in_flight = self.window.in_flight.len(),
                "broker session lost; publishes wait in the outbox, subscriptions are made again on the next session");
        }
        self.stats.connected.store(false, Relaxed);
        self.window.restart();
        self.unconfirmed("the broker session was lost before the broker acknowledged it");
        self.to_subscribe.clear();
        self.to_unsubscribe.clear();
        self.subscribing.clear();
        self.suback.clear();
        // Registered: made again on the next session.
        for (_, waiting) in std::mem::take(&mut self.waiting) {
            for d in waiting {
                self.answer(d, Ok(()));
            }
        }
    }

    /// The broker answered a SUBSCRIBE: its waiting requests are answered; a refusal ends
    /// the subscription of the services that asked.
    fn on_suback(&mut self, ack: &SubAck) {
        let Some(id) = self.suback.remove(&ack.pkid) else {
            return;
        };
        let refused = ack
            .return_codes
            .iter()
            .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
            .cloned();
        let waiting = self.waiting.remove(&id).unwrap_or_default();
        let (Some(code), Some(filter)) = (refused, self.subs.filter(id).cloned()) else {
            for d in waiting {
                self.answer(d, Ok(()));
            }
            return;
        };
        // A refused filter delivers nothing: it ends for every service that held it.
        let holders = self.subs.drop_filter(&filter);
        tracing::error!(broker = %self.name, %filter, reason = ?code, services = ?holders,
            "the broker refused a subscription (check its ACL); it ends");
        let e = BusError::new(
            ErrorCode::NotPermitted,
            format!(
                "broker `{}` refused the subscription to `{filter}` ({code:?}); check the \
                 broker's ACL",
                self.name
            ),
        );
        for d in waiting {
            self.answer(d, Err(e.clone()));
        }
        for s in holders {
            self.settle(&s);
        }
    }

    /// A new session: every filter is subscribed again, the outbox resent from its first
    /// unacknowledged publish.
    fn on_connected(&mut self, client: AsyncClient, takes: Takes) {
        self.stats.connected.store(true, Relaxed);
        self.stats.sessions.fetch_add(1, Relaxed);
        if !takes.ids {
            tracing::warn!(broker = %self.name, "the broker does not take subscription identifiers: services with overlapping filters may get a publish more than once");
        }
        self.takes = takes;
        self.window.restart();
        self.unconfirmed("a new broker session began before the broker acknowledged it");
        self.to_subscribe = self.subs.ids().into();
        self.to_unsubscribe.clear();
        self.subscribing.clear();
        self.suback.clear();
        self.client = Some(client);
    }

    /// Confirmed publishes of the session that ended are answered `unavailable`.
    fn unconfirmed(&mut self, why: &str) {
        for d in self.confirms.restart() {
            let e = BusError::new(
                ErrorCode::Unavailable,
                format!("broker `{}`: {why}", self.name),
            );
            self.bus.finish(TOPICS, d, Duration::ZERO, Err(e));
        }
    }

    /// Publishes now; `seq` ties it to an outbox record, `confirm` is a request answered at
    /// the broker's acknowledgement (or now, with the error, when it could not be queued).
    /// An error when it could not be queued.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish_now(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        properties: PublishProperties,
        seq: Option<u64>,
        confirm: Option<Delivery>,
    ) -> Result<(), BusError> {
        let result = match &self.client {
            None => Err(BusError::new(
                ErrorCode::Unavailable,
                format!(
                    "broker `{}` is not connected: an at-most-once publish is not kept (publish \
                     at least once to have it sent when the broker is back)",
                    self.name
                ),
            )),
            Some(client) => client
                .try_publish_with_properties(topic, qos, retain, payload, properties)
                .map_err(|e| {
                    BusError::new(
                        ErrorCode::QueueFull,
                        format!("broker `{}`: the publish was not queued: {e}", self.name),
                    )
                }),
        };
        match result {
            Ok(()) => {
                self.window.sent.push_back(seq);
                if seq.is_none() && confirm.is_none() {
                    self.stats.published.fetch_add(1, Relaxed);
                }
                self.confirms.requested(confirm);
                Ok(())
            }
            Err(e) => {
                if let Some(d) = confirm {
                    self.bus.finish(TOPICS, d, Duration::ZERO, Err(e.clone()));
                }
                Err(e)
            }
        }
    }

    /// Sends what is due on this session: subscriptions first, then the outbox through the
    /// window, in order.
    pub(super) fn pump(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        while let Some(filter) = self.to_unsubscribe.front() {
            if client.try_unsubscribe(filter.as_str()).is_err() {
                return;
            }
            self.to_unsubscribe.pop_front();
        }
        while let Some(id) = self.to_subscribe.front().copied() {
            if self.subscribing.len() + self.suback.len() >= SUBSCRIBING {
                break;
            }
            let Some(filter) = self.subs.filter(id).cloned() else {
                self.to_subscribe.pop_front();
                continue;
            };
            let properties = SubscribeProperties {
                id: self.takes.ids.then_some(id as usize),
                user_properties: Vec::new(),
            };
            match client.try_subscribe_with_properties(
                filter.as_str(),
                QoS::AtLeastOnce,
                properties,
            ) {
                Ok(()) => {
                    self.to_subscribe.pop_front();
                    self.subscribing.push_back(id);
                }
                Err(_) => return,
            }
        }
        self.pump_outbox();
    }

    /// Sends the outbox through the window: first what the last session did not get
    /// acknowledged, then the rest, in order.
    fn pump_outbox(&mut self) {
        while let Some(seq) = self.window.unsent.first().copied() {
            let Some(record) = self.window.in_flight.get(&seq).cloned() else {
                self.window.unsent.remove(&seq);
                continue;
            };
            if !self.send_record(seq, record) {
                return;
            }
            self.window.unsent.remove(&seq);
        }
        while self.window.in_flight.len() < self.window.limit {
            match self.outbox.next_record() {
                Ok(Some((seq, record))) => {
                    self.window.in_flight.insert(seq, record.clone());
                    if !self.send_record(seq, record) {
                        self.window.unsent.insert(seq);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(broker = %self.name, error = %e, "cannot read the outbox");
                    return;
                }
            }
        }
    }

    /// Publishes outbox record `seq`; false when it could not be queued now. A record this
    /// broker can never take (no topic, larger than its packet limit) is retired, logged and
    /// counted, rather than block the outbox or end every session.
    fn send_record(&mut self, seq: u64, record: crate::com::spool::Record) -> bool {
        let size = record.payload.len()
            + record.topic.as_ref().map_or(0, String::len)
            + record.content_type.len()
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + 64;
        let too_large = self.takes.max_packet.is_some_and(|max| size > max as usize);
        let Some(topic) = record.topic.filter(|_| !too_large) else {
            tracing::error!(broker = %self.name, seq, bytes = size, max_packet = ?self.takes.max_packet,
                "an outbox publish this broker cannot take (larger than its packet limit, or no topic) was dropped");
            self.stats.refused.fetch_add(1, Relaxed);
            self.window.in_flight.remove(&seq);
            self.outbox.ack(seq);
            return true;
        };
        let retain = record.retain && self.takes.retain;
        let content_type = (!record.content_type.is_empty()).then_some(record.content_type);
        self.publish_now(
            topic,
            QoS::AtLeastOnce,
            retain,
            record.payload,
            props(content_type, record.headers),
            Some(seq),
            None,
        )
        .is_ok()
    }
}
