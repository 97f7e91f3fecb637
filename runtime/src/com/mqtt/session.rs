//! The session side of the MQTT Com: links coming and going, and the in-flight window of
//! spooled records published and acknowledged in order.

use rumqttc::{AsyncClient, Event, Incoming, Outgoing, QoS};

use super::connection::LinkEvent;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::super::spool::Record;
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
                self.window.sent.clear();
                self.window.pkids.clear();
                self.window
                    .unsent
                    .extend(self.window.in_flight.keys().copied());
            }
            LinkEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(Some(seq)) = self.window.sent.pop_front() {
                    self.window.pkids.insert(pkid, seq);
                }
            }
            LinkEvent::Mqtt(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(seq) = self.window.pkids.remove(&ack.pkid) {
                    self.window.in_flight.remove(&seq);
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
        self.window.sent.clear();
        self.window.pkids.clear();
        self.window
            .unsent
            .extend(self.window.in_flight.keys().copied());
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

/// The in-flight window: spooled records published on the current session and not yet
/// acknowledged, at most `limit` of them, published and acknowledged in order.
#[derive(Debug)]
pub(super) struct Window {
    /// Records in flight at most (`com.in_flight`).
    pub(super) limit: usize,
    /// Publishes requested on this session, waiting for rumqttc to number them: the spool
    /// sequence number of each (None for publishes outside the spool).
    pub(super) sent: VecDeque<Option<u64>>,
    /// Packet id → spool sequence number, until the broker acknowledges.
    pub(super) pkids: HashMap<u16, u64>,
    /// Records taken from the spool and not yet acknowledged, by sequence number.
    pub(super) in_flight: BTreeMap<u64, Record>,
    /// In flight but not published on the current session (sent again, in order).
    pub(super) unsent: BTreeSet<u64>,
}

impl Window {
    /// An empty window of `limit` records.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            in_flight: BTreeMap::new(),
            unsent: BTreeSet::new(),
        }
    }
}
