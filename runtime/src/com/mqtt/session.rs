//! The session side of the MQTT Com: links coming and going, and the in-flight window of
//! spooled records published and acknowledged in order.

use rumqttc::{AsyncClient, Event, Incoming, Outgoing, QoS};

use super::connection::LinkEvent;

use super::{Com, connection};

impl Com {
    pub(super) fn on_link(&mut self, e: LinkEvent) {
        match e {
            LinkEvent::Connected(client) => self.on_connected(client),
            LinkEvent::Lost(why) => {
                if self.client.take().is_some() {
                    let quick = self
                        .connected_at
                        .is_some_and(|at| at.elapsed() < connection::STABLE_SESSION);
                    self.quick_losses = if quick { self.quick_losses + 1 } else { 0 };
                    if self.quick_losses <= 1 || self.quick_losses.is_power_of_two() {
                        tracing::warn!(reason = %why, in_flight = self.window.in_flight.len(), lost_soon_after_connecting = self.quick_losses,
                            "Com: session lost; messages wait in the spool");
                    }
                }
                self.stats
                    .connected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.window.restart();
            }
            LinkEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid))) => self.window.numbered(pkid),
            LinkEvent::Mqtt(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(seq) = self.window.acknowledged(ack.pkid) {
                    self.spool.ack(seq);
                    self.stats
                        .delivered
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            LinkEvent::Mqtt(Event::Incoming(Incoming::Publish(p))) => self.inbound(p),
            LinkEvent::Mqtt(Event::Incoming(Incoming::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if refused {
                    tracing::error!("Com: the broker refused a subscription (check its ACL)");
                }
            }
            LinkEvent::Mqtt(_) => {}
        }
    }

    /// A new session: subscribe, ask for the twin, send again what was not acknowledged.
    pub(super) fn on_connected(&mut self, client: AsyncClient) {
        self.connected_at = Some(std::time::Instant::now());
        self.stats
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.window.restart();
        let topics = self.dialect.subscriptions();
        let filters = topics
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        if let Err(e) = client.try_subscribe_many(filters) {
            tracing::error!(error = %e, "Com: cannot subscribe");
        }
        self.client = Some(client);
        self.twin.rid += 1;
        if let Some(topic) = self.dialect.twin_get_topic(self.twin.rid) {
            self.twin.get = Some(self.twin.rid.to_string());
            self.publish(topic, Vec::new(), false, None);
        }
        self.report();
    }

    /// Publishes at QoS 1; `seq` ties it to a spool record. False when it could not be
    /// queued (no session, or rumqttc's queue is full).
    pub(super) fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        seq: Option<u64>,
    ) -> bool {
        let Some(client) = &self.client else {
            return false;
        };
        match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            Ok(()) => {
                self.window.sent.push_back(seq);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "Com: publish not queued");
                false
            }
        }
    }

    /// Sends what the window allows: first what the last session did not get acknowledged,
    /// then the spool, in order.
    pub(super) fn pump(&mut self) {
        if self.client.is_none() {
            return;
        }
        while let Some(seq) = self.window.unsent.first().copied() {
            let (topic, payload) = self.dialect.d2c(&self.window.in_flight[&seq]);
            if !self.publish(topic, payload, false, Some(seq)) {
                return;
            }
            self.window.unsent.remove(&seq);
        }
        while self.window.in_flight.len() < self.window.limit {
            match self.spool.next_record() {
                Ok(Some((seq, record))) => {
                    let (topic, payload) = self.dialect.d2c(&record);
                    self.window.in_flight.insert(seq, record);
                    if !self.publish(topic, payload, false, Some(seq)) {
                        self.window.unsent.insert(seq);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "Com: cannot read the spool");
                    return;
                }
            }
        }
    }
}
