//! The MQTT Com: device-to-cloud messages through the durable spool at QoS 1, in order;
//! desired state, direct methods and cloud-to-device messages from the hub; the node's state
//! reported back. One task owns the spool and the session (this file: its state and its
//! loop); its work is split by concept: `session` (the link and the in-flight window),
//! `intake` (what services submit, into the spool), `inbound` (C2D, direct methods, the
//! desired state) and `report` (the reported state, debug log lines). The connection
//! (`connection`) and the slow answers (`cloud`) run beside it.

pub mod azure;
mod cloud;
pub mod config;
mod connection;
mod dialect;
mod inbound;
mod intake;
mod report;
mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::MqttConfig;
use connection::{Connector, LinkEvent};
pub use connection::{STABLE_SESSION, transport};
pub use dialect::Dialect;

use super::spool::Spool;
use super::{COM, ComLink, ComStats};
use crate::bus::Bus;
use crate::message::Message;
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
        window: super::spool::Window::new(usize::from(setup.config.in_flight)),
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
        out_tx,
        c2d: c2d_tx,
        twin: inbound::Twin::new(desired_tx),
        debug: None,
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
    /// The in-flight window of spooled records on the current session.
    window: super::spool::Window,
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
    out_tx: mpsc::Sender<Out>,
    c2d: mpsc::Sender<Message>,
    /// The desired state as the hub describes it, and the requests about it.
    twin: inbound::Twin,
    /// Service log lines, while `debug` is on.
    debug: Option<TapReceiver<Arc<LogLine>>>,
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
        while self.client.is_some() && !self.window.in_flight.is_empty() && Instant::now() < until {
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
}
