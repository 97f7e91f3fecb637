//! The session side of a broker connection: links coming and going, subscriptions made on
//! each session, and the outbox published in order through the in-flight window.

use std::sync::atomic::Ordering::Relaxed;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Packet, PublishProperties, SubAck, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event};

use super::broker::{Broker, props};
use super::link::LinkEvent;
use crate::message::{BusError, ErrorCode};
use busbar_base::topic::TopicFilter;

impl Broker {
    pub(super) async fn on_link(&mut self, e: LinkEvent) {
        let e = match e {
            LinkEvent::Connected { client, ids } => return self.on_connected(client, ids),
            LinkEvent::Lost(why) => return self.on_lost(&why),
            LinkEvent::Mqtt(e) => *e,
        };
        match e {
            Event::Outgoing(Outgoing::Publish(pkid)) => self.window.numbered(pkid),
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(id) = self.subscribing.pop_front() {
                    self.suback.insert(pkid, id);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = self.window.acknowledged(ack.pkid) {
                    self.outbox.ack(seq);
                    self.stats.published.fetch_add(1, Relaxed);
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => self.on_suback(&ack),
            Event::Incoming(Packet::Publish(p)) => self.arrived(p).await,
            _ => {}
        }
    }

    fn on_lost(&mut self, why: &str) {
        if self.client.take().is_some() {
            tracing::warn!(broker = %self.name, reason = %why, in_flight = self.window.in_flight.len(),
                "broker session lost; publishes wait in the outbox, subscriptions are made again on the next");
        }
        self.stats.connected.store(false, Relaxed);
        self.window.restart();
        self.to_subscribe.clear();
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
        tracing::error!(broker = %self.name, %filter, reason = ?code, "the broker refused a subscription (check its ACL)");
        let e = BusError::new(
            ErrorCode::NotPermitted,
            format!(
                "broker `{}` refused the subscription to `{filter}` ({code:?}); check the \
                 broker's ACL",
                self.name
            ),
        );
        for d in waiting {
            let _ = self.subs.remove(&d.msg.source, &filter);
            self.answer(d, Err(e.clone()));
        }
    }

    /// A new session: every filter is subscribed again, the outbox resent from its first
    /// unacknowledged publish.
    fn on_connected(&mut self, client: AsyncClient, ids: bool) {
        self.stats.connected.store(true, Relaxed);
        self.stats.sessions.fetch_add(1, Relaxed);
        if !ids {
            tracing::warn!(broker = %self.name, "the broker does not take subscription identifiers: services with overlapping filters may get a publish more than once");
        }
        self.ids = ids;
        self.window.restart();
        self.to_subscribe = self.subs.ids().into();
        self.subscribing.clear();
        self.suback.clear();
        self.client = Some(client);
    }

    /// Publishes now; `seq` ties it to an outbox record. An error when it could not be queued.
    pub(super) fn publish_now(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        properties: PublishProperties,
        seq: Option<u64>,
    ) -> Result<(), BusError> {
        let Some(client) = &self.client else {
            return Err(BusError::new(
                ErrorCode::Unavailable,
                format!(
                    "broker `{}` is not connected: an at-most-once publish is not kept (publish \
                     at least once to have it sent when the broker is back)",
                    self.name
                ),
            ));
        };
        match client.try_publish_with_properties(topic, qos, retain, payload, properties) {
            Ok(()) => {
                self.window.sent.push_back(seq);
                if seq.is_none() {
                    self.stats.published.fetch_add(1, Relaxed);
                }
                Ok(())
            }
            Err(e) => Err(BusError::new(
                ErrorCode::QueueFull,
                format!("broker `{}`: the publish was not queued: {e}", self.name),
            )),
        }
    }

    /// Ends the broker subscription to `filter` on this session (the next one does not make it).
    pub(super) fn unsubscribe(&mut self, filter: &TopicFilter) {
        if let Some(client) = &self.client
            && let Err(e) = client.try_unsubscribe(filter.as_str())
        {
            tracing::warn!(broker = %self.name, %filter, error = %e, "unsubscribe not queued");
        }
    }

    /// Sends what is due on this session: subscriptions first, then the outbox through the
    /// window, in order.
    pub(super) fn pump(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        while let Some(id) = self.to_subscribe.front().copied() {
            let Some(filter) = self.subs.filter(id).cloned() else {
                self.to_subscribe.pop_front();
                continue;
            };
            let properties = SubscribeProperties {
                id: self.ids.then_some(id as usize),
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

    fn send_record(&mut self, seq: u64, record: crate::com::spool::Record) -> bool {
        let Some(topic) = record.topic else {
            // Not a publish (cannot happen in an outbox): retire it rather than stall.
            tracing::error!(broker = %self.name, seq, "an outbox record without a topic was dropped");
            self.window.in_flight.remove(&seq);
            self.outbox.ack(seq);
            return true;
        };
        let content_type = (!record.content_type.is_empty()).then_some(record.content_type);
        self.publish_now(
            topic,
            QoS::AtLeastOnce,
            record.retain,
            record.payload,
            props(content_type, record.headers),
            Some(seq),
        )
        .is_ok()
    }
}
