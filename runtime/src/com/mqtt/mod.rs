//! The MQTT Com: device-to-cloud messages through the durable spool at QoS 1, in order;
//! desired state, direct methods and cloud-to-device messages from the hub; the node's state
//! reported back. One task owns the spool and the session; the connection
//! ([`connection`]) and the slow answers ([`cloud`]) run beside it.

pub mod azure;
mod cloud;
pub mod config;
mod connection;
mod dialect;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, Outgoing, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::MqttConfig;
use connection::{Connector, LinkEvent};
pub use dialect::Dialect;
use dialect::{Inbound, merge};

use super::spool::{Record, Spool, SpoolError};
use super::{COM, ComLink, ComStats};
use crate::bus::{Bus, Delivery};
use crate::message::{BusError, ErrorCode, Message};
use crate::observe::LogLine;
use crate::observe::TapReceiver;
use crate::orchestrator::ServiceTable;

/// Deliveries taken from the inbox per spool write.
const BATCH: usize = 512;
/// How long a stopping Com waits for the broker to acknowledge what is in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A publish prepared off the main loop.
#[derive(Debug)]
struct Out {
    topic: String,
    payload: Vec<u8>,
}

/// Everything the MQTT Com needs to start.
#[derive(Debug)]
pub struct Setup {
    /// The dialect.
    pub dialect: Dialect,
    /// The settings.
    pub config: MqttConfig,
    /// The node's id (reported).
    pub node_id: String,
    /// The opened spool.
    pub spool: Spool,
    /// Where the metrics read the Com's state.
    pub stats: Arc<ComStats>,
    /// The services, for reports.
    pub services: Arc<ServiceTable>,
}

/// Checks the settings and opens the spool: errors here stop the node from starting.
pub fn prepare(
    kind_azure: bool,
    config: &MqttConfig,
    node_id: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Dialect, Connector, Spool)> {
    let dialect = if kind_azure {
        let cs = config.connection_string.as_deref().ok_or_else(|| {
            anyhow::anyhow!("com: kind = \"azure-iot-hub\" needs `connection_string`")
        })?;
        Dialect::Azure(azure::Device::parse(cs).map_err(|e| anyhow::anyhow!("com: {e}"))?)
    } else {
        Dialect::Plain(config.topics.for_node(node_id))
    };
    let connector = Connector::new(config, &dialect, node_id)?;
    anyhow::ensure!(config.in_flight > 0, "com: in_flight must be at least 1");
    let dir = config
        .spool
        .dir
        .clone()
        .unwrap_or_else(|| data_dir.join("spool"));
    let spool = Spool::open(&dir, config.spool.clone())?;
    Ok((dialect, connector, spool))
}

/// Runs the Com until the link is cancelled, then stores what is left and returns.
pub async fn run(link: ComLink, connector: Connector, setup: Setup) {
    let session_cancel = CancellationToken::new();
    let (events_tx, events) = mpsc::channel(1024);
    tracing::info!(broker = %connector.address(), "Com: MQTT bridge starting");
    let session = tokio::spawn(connector.run(events_tx, session_cancel.clone()));
    let (c2d_tx, c2d_rx) = mpsc::channel(1024);
    tokio::spawn(cloud::c2d_worker(link.bus.clone(), c2d_rx));
    let (desired_tx, desired_rx) = watch::channel(None);
    let (report_tx, report_rx) = mpsc::channel(16);
    tokio::spawn(cloud::desired_worker(
        link.bus.clone(),
        desired_rx,
        report_tx.clone(),
    ));
    let (out_tx, out_rx) = mpsc::channel(256);
    setup
        .stats
        .broker
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut com = Com {
        bus: link.bus.clone(),
        dialect: setup.dialect,
        window: usize::from(setup.config.in_flight),
        max_message: setup.config.max_message_bytes,
        sync_ms: if setup.config.spool.sync_ms == 0 {
            100
        } else {
            setup.config.spool.sync_ms
        },
        default_service: setup.config.default_service.clone(),
        report_every: Duration::from_secs(setup.config.report_interval_s.max(1)),
        node_id: setup.node_id,
        spool: setup.spool,
        stats: setup.stats,
        services: setup.services,
        client: None,
        sent: VecDeque::new(),
        pkids: HashMap::new(),
        in_flight: BTreeMap::new(),
        unsent: BTreeSet::new(),
        out_tx,
        c2d: c2d_tx,
        desired_tx,
        desired: Value::Null,
        desired_version: None,
        debug: None,
        rid: 0,
        twin_get: None,
        sync_failures: 0,
        connected_at: None,
        quick_losses: 0,
        report_when_settled: false,
    };
    com.update_stats();
    com.serve(link, events, out_rx, report_rx).await;
    session_cancel.cancel();
    let _ = session.await;
    com.stats
        .connected
        .store(false, std::sync::atomic::Ordering::Relaxed);
}

struct Com {
    bus: Bus,
    dialect: Dialect,
    window: usize,
    max_message: usize,
    sync_ms: u64,
    default_service: Option<String>,
    report_every: Duration,
    node_id: String,
    spool: Spool,
    stats: Arc<ComStats>,
    services: Arc<ServiceTable>,
    /// The current session, if any.
    client: Option<AsyncClient>,
    /// Publishes requested on this session, waiting for rumqttc to number them: the spool
    /// sequence number of each (None for publishes outside the spool).
    sent: VecDeque<Option<u64>>,
    /// Packet id → spool sequence number, until the broker acknowledges.
    pkids: HashMap<u16, u64>,
    /// Records taken from the spool and not yet acknowledged, by sequence number.
    in_flight: BTreeMap<u64, Record>,
    /// In flight but not published on the current session (sent again, in order).
    unsent: BTreeSet<u64>,
    out_tx: mpsc::Sender<Out>,
    c2d: mpsc::Sender<Message>,
    desired_tx: watch::Sender<Option<Value>>,
    /// The desired state as the hub last described it.
    desired: Value,
    desired_version: Option<i64>,
    /// Service log lines, while `debug` is on.
    debug: Option<TapReceiver<Arc<LogLine>>>,
    rid: u64,
    /// The request id of the twin GET in progress.
    twin_get: Option<String>,
    /// Spool syncs that failed in a row (logged at 1, 2, 4, 8, ... and when it recovers).
    sync_failures: u64,
    /// When the current session began.
    connected_at: Option<std::time::Instant>,
    /// Sessions in a row lost before they were stable (logged at 1, 2, 4, 8, ...).
    quick_losses: u64,
    /// The last report showed services still loading or starting: report again once they
    /// have settled.
    report_when_settled: bool,
}

async fn next_line(debug: &mut Option<TapReceiver<Arc<LogLine>>>) -> Option<Arc<LogLine>> {
    match debug {
        Some(rx) => loop {
            match rx.recv().await {
                Some(Ok(line)) if line.service.is_some() => return Some(line),
                Some(_) => {}
                None => return None,
            }
        },
        None => std::future::pending().await,
    }
}

impl Com {
    async fn serve(
        &mut self,
        mut link: ComLink,
        mut events: mpsc::Receiver<LinkEvent>,
        mut out: mpsc::Receiver<Out>,
        mut reports: mpsc::Receiver<()>,
    ) {
        // With sync_ms = 0 the spool syncs in `append`; the tick then only records acks.
        let sync_every = Duration::from_millis(self.sync_ms.clamp(1, 1000));
        let mut sync = tokio::time::interval(sync_every);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(self.report_every);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = link.cancel.cancelled() => break,
                Some(e) = events.recv() => self.on_link(e),
                Some(d) = link.inbox.recv() => {
                    let mut batch = vec![d];
                    while batch.len() < BATCH {
                        match link.inbox.try_recv() {
                            Ok(d) => batch.push(d),
                            Err(_) => break,
                        }
                    }
                    self.accept(batch);
                }
                Some(o) = out.recv() => { self.publish(o.topic, o.payload, false, None); }
                Some(()) = reports.recv() => self.report(),
                _ = sync.tick() => self.sync(),
                _ = report.tick() => self.report(),
                Some(line) = next_line(&mut self.debug) => self.forward_debug(&line),
            }
            self.pump();
            self.update_stats();
        }
        // Stopping: everything services submitted goes to the spool; what is in flight gets
        // a moment for its acknowledgement; the rest waits on disk for the next start.
        link.inbox.close();
        let mut rest = Vec::new();
        while let Some(d) = link.inbox.recv().await {
            rest.push(d);
        }
        if !rest.is_empty() {
            self.accept(rest);
        }
        let until = Instant::now() + STOP_GRACE;
        while self.client.is_some() && !self.in_flight.is_empty() && Instant::now() < until {
            match tokio::time::timeout_at(until.into(), events.recv()).await {
                Ok(Some(e)) => self.on_link(e),
                _ => break,
            }
        }
        self.sync();
        self.update_stats();
        let c = self.spool.counts();
        tracing::info!(
            waiting = c.pending,
            "Com stopped; messages not yet acknowledged wait in the spool"
        );
    }

    fn on_link(&mut self, e: LinkEvent) {
        match e {
            LinkEvent::Connected(client) => self.on_connected(client),
            LinkEvent::Lost(why) => {
                if self.client.take().is_some() {
                    let quick = self
                        .connected_at
                        .is_some_and(|at| at.elapsed() < connection::STABLE_SESSION);
                    self.quick_losses = if quick { self.quick_losses + 1 } else { 0 };
                    if self.quick_losses <= 1 || self.quick_losses.is_power_of_two() {
                        tracing::warn!(reason = %why, in_flight = self.in_flight.len(), lost_soon_after_connecting = self.quick_losses,
                            "Com: session lost; messages wait in the spool");
                    }
                }
                self.stats
                    .connected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.sent.clear();
                self.pkids.clear();
                self.unsent.extend(self.in_flight.keys().copied());
            }
            LinkEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(Some(seq)) = self.sent.pop_front() {
                    self.pkids.insert(pkid, seq);
                }
            }
            LinkEvent::Mqtt(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(seq) = self.pkids.remove(&ack.pkid) {
                    self.in_flight.remove(&seq);
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
    fn on_connected(&mut self, client: AsyncClient) {
        self.connected_at = Some(std::time::Instant::now());
        self.stats
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sent.clear();
        self.pkids.clear();
        self.unsent.extend(self.in_flight.keys().copied());
        let topics = self.dialect.subscriptions();
        let filters = topics
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        if let Err(e) = client.try_subscribe_many(filters) {
            tracing::error!(error = %e, "Com: cannot subscribe");
        }
        self.client = Some(client);
        self.rid += 1;
        if let Some(topic) = self.dialect.twin_get_topic(self.rid) {
            self.twin_get = Some(self.rid.to_string());
            self.publish(topic, Vec::new(), false, None);
        }
        self.report();
    }

    /// Publishes at QoS 1; `seq` ties it to a spool record. False when it could not be
    /// queued (no session, or rumqttc's queue is full).
    fn publish(&mut self, topic: String, payload: Vec<u8>, retain: bool, seq: Option<u64>) -> bool {
        let Some(client) = &self.client else {
            return false;
        };
        match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            Ok(()) => {
                self.sent.push_back(seq);
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
    fn pump(&mut self) {
        if self.client.is_none() {
            return;
        }
        while let Some(seq) = self.unsent.first().copied() {
            let (topic, payload) = self.dialect.d2c(&self.in_flight[&seq]);
            if !self.publish(topic, payload, false, Some(seq)) {
                return;
            }
            self.unsent.remove(&seq);
        }
        while self.in_flight.len() < self.window {
            match self.spool.next_record() {
                Ok(Some((seq, record))) => {
                    let (topic, payload) = self.dialect.d2c(&record);
                    self.in_flight.insert(seq, record);
                    if !self.publish(topic, payload, false, Some(seq)) {
                        self.unsent.insert(seq);
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

    /// Writes a batch of submitted messages to the spool and answers their senders.
    fn accept(&mut self, batch: Vec<Delivery>) {
        let mut records = Vec::with_capacity(batch.len());
        let mut takers = Vec::with_capacity(batch.len());
        let now = crate::observe::unix_ms();
        for d in batch {
            let refused = if let Err(e) = crate::com::check_action(&d.msg) {
                Some(e)
            } else {
                let size = d.msg.payload.len()
                    + d.msg
                        .headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>();
                (size > self.max_message).then(|| {
                    BusError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "message of {size} bytes (payload and properties) exceeds the hub's \
                             limit of {} bytes (com.max_message_bytes)",
                            self.max_message
                        ),
                    )
                })
            };
            if let Some(e) = refused {
                self.answer(d, Err(e));
                continue;
            }
            records.push(Record {
                id: d.msg.id.clone(),
                source: d.msg.source.clone(),
                content_type: d.msg.content_type.clone(),
                headers: d.msg.headers.clone(),
                payload: d.msg.payload.clone(),
                accepted_ms: now,
            });
            takers.push(d);
        }
        if records.is_empty() {
            return;
        }
        let results = self.spool.append(&records);
        // Counts first: a submitter that hears back may read them at once.
        self.update_stats();
        for (d, r) in takers.into_iter().zip(results) {
            let result = r.map(|_| ()).map_err(|e| match e {
                SpoolError::Full { .. } | SpoolError::DiskFull { .. } => {
                    BusError::new(ErrorCode::QueueFull, e.to_string())
                }
                SpoolError::Io(_) => BusError::new(ErrorCode::Other, e.to_string()),
            });
            self.answer(d, result);
        }
    }

    fn answer(&self, d: Delivery, result: Result<(), BusError>) {
        if let Err(e) = &result {
            tracing::warn!(from = %d.msg.source, id = %d.msg.id, error = %e, "Com refused a message");
        }
        self.bus
            .finish(COM, d, Duration::ZERO, result.map(|()| None));
    }

    fn inbound(&mut self, p: Publish) {
        match self.dialect.parse(&p.topic) {
            Inbound::C2d {
                service,
                action,
                props,
            } => self.c2d(service, action, props, p.payload.to_vec()),
            Inbound::Desired { full, version } => {
                if let (Some(v), Some(have)) = (version, self.desired_version)
                    && v <= have
                {
                    return;
                }
                match serde_json::from_slice::<Value>(&p.payload) {
                    Ok(doc) if full => self.set_desired(doc, version),
                    Ok(patch) => {
                        let mut doc = self.desired.clone();
                        merge(&mut doc, &patch);
                        self.set_desired(doc, version);
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, error = %e, "Com: desired state is not JSON; ignored")
                    }
                }
            }
            Inbound::TwinResponse { status, rid } => {
                if self.twin_get.as_deref() == Some(rid.as_str()) {
                    self.twin_get = None;
                    if status != 200 {
                        tracing::warn!(status, "Com: IoT Hub refused the twin request");
                        return;
                    }
                    match serde_json::from_slice::<Value>(&p.payload) {
                        Ok(twin) => {
                            let desired = twin.get("desired").cloned().unwrap_or(Value::Null);
                            let version = desired.get("$version").and_then(Value::as_i64);
                            // A patch newer than this snapshot may have arrived first.
                            if let (Some(v), Some(have)) = (version, self.desired_version)
                                && v < have
                            {
                                return;
                            }
                            self.set_desired(desired, version);
                        }
                        Err(e) => tracing::warn!(error = %e, "Com: the twin is not JSON"),
                    }
                } else if status >= 300 {
                    tracing::warn!(status, rid, "Com: IoT Hub refused a twin update");
                }
            }
            Inbound::Method { name, rid } => {
                let bus = self.bus.clone();
                let out = self.out_tx.clone();
                let dialect = self.dialect.clone();
                let payload = p.payload.to_vec();
                tokio::spawn(async move {
                    let (status, body) = cloud::method(&bus, &name, &payload).await;
                    tracing::info!(method = %name, status, "Com: direct method answered");
                    let _ = out
                        .send(Out {
                            topic: dialect.method_response_topic(&rid, status),
                            payload: body.to_string().into_bytes(),
                        })
                        .await;
                });
            }
            Inbound::Other => {
                tracing::debug!(topic = %p.topic, "Com: message on an unknown topic ignored")
            }
        }
    }

    fn c2d(
        &mut self,
        service: Option<String>,
        action: Option<String>,
        props: Vec<(String, String)>,
        payload: Vec<u8>,
    ) {
        let Some(to) = service.or_else(|| self.default_service.clone()) else {
            tracing::warn!(
                "Com: cloud-to-device message names no service and com.default_service is not set; dropped"
            );
            return;
        };
        let content_type = props
            .iter()
            .find(|(k, _)| k == "$.ct" || k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                if serde_json::from_slice::<Value>(&payload).is_ok() {
                    "application/json".into()
                } else {
                    "application/octet-stream".into()
                }
            });
        let mut msg = crate::message::new_message(
            self.bus.next_id(),
            COM,
            &to,
            action.as_deref().unwrap_or("c2d"),
            &content_type,
            payload,
        );
        msg.headers = props;
        if self.c2d.try_send(msg).is_err() {
            tracing::error!(service = %to, "Com: too many cloud-to-device messages waiting; one dropped");
        }
    }

    /// Takes a new desired state: debug forwarding follows `msb-state.debug`, the rest goes
    /// to the orchestrator (and so to every service's `state-update`).
    fn set_desired(&mut self, mut doc: Value, version: Option<i64>) {
        if let Some(o) = doc.as_object_mut() {
            o.retain(|k, _| !k.starts_with('$'));
        }
        if version.is_some() {
            self.desired_version = version;
        }
        if doc == self.desired {
            return;
        }
        self.desired = doc.clone();
        let forward = doc
            .pointer("/msb-state/debug")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if forward != self.debug.is_some() {
            tracing::info!(on = forward, "Com: debug forwarding");
            self.debug = forward.then(|| crate::observe::log_hub().follow().1);
        }
        self.desired_tx.send_replace(Some(doc));
    }

    fn forward_debug(&mut self, line: &LogLine) {
        let topic = self.dialect.debug_topic();
        let body = serde_json::to_vec(line).unwrap_or_default();
        self.publish(topic, body, false, None);
    }

    /// Publishes the node's state: services, versions, states, counters, spool.
    fn report(&mut self) {
        if self.client.is_none() {
            return;
        }
        let report = self.services.report();
        self.report_when_settled = report.iter().any(|s| unsettled(s.status.state));
        let services: serde_json::Map<String, Value> = report
            .into_iter()
            .map(|s| {
                let v = json!({
                    "state": s.status.state.as_str(),
                    "sha256": s.status.sha256,
                    "restarts": s.status.restarts,
                    "last_fault": s.status.last_fault,
                    "counters": s.counters,
                });
                (s.name, v)
            })
            .collect();
        let c = self.spool.counts();
        let body = json!({
            "msb-state": {
                "enabled": self.desired.pointer("/msb-state/enabled").and_then(Value::as_bool).unwrap_or(true),
                "debug": self.debug.is_some(),
            },
            "node": {
                "id": self.node_id,
                "version": env!("CARGO_PKG_VERSION"),
                "target": crate::precompiled::HOST_TARGET,
            },
            "services": services,
            "spool": {
                "pending": c.pending, "bytes": c.pending_bytes, "refused": c.refused,
                "dropped": c.dropped, "expired": c.expired,
            },
        });
        self.rid += 1;
        let topic = self.dialect.reported_topic(self.rid);
        let retain = self.dialect.retain_reports();
        self.publish(topic, body.to_string().into_bytes(), retain, None);
    }

    fn sync(&mut self) {
        match self.spool.sync() {
            Ok(()) if self.sync_failures > 0 => {
                tracing::info!(failures = self.sync_failures, "Com: spool sync works again");
                self.sync_failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.sync_failures += 1;
                if self.sync_failures.is_power_of_two() {
                    tracing::error!(error = %e, failures = self.sync_failures, "Com: spool sync failed");
                }
            }
        }
        self.update_stats();
        if self.report_when_settled
            && !self
                .services
                .report()
                .iter()
                .any(|s| unsettled(s.status.state))
        {
            self.report();
        }
    }

    fn update_stats(&self) {
        self.stats.set_spool(self.spool.counts());
    }
}

/// Whether a service is on its way to running (a report should follow once it is there).
fn unsettled(state: crate::service::State) -> bool {
    use crate::service::State;
    matches!(state, State::Loading | State::Starting | State::Restarting)
}
