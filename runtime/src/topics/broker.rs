//! One broker connection's task: it owns the subscriptions, the outbox and the session, and
//! serves the requests of services in the order they come. Its work is split by concept:
//! this file (its state and its loop), `requests` (what services ask), `session` (links
//! coming and going, what is sent on them) and
//! `inbound` (publishes arriving for services).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{BrokerConfig, COM_BROKER};
use super::inbound::Forwarders;
use super::link::{Link, LinkEvent, Takes};
use super::stats::BrokerStats;
use super::subscriptions::Subscriptions;
use crate::bus::{Bus, Delivery};
use crate::com::spool::{Spool, Window};
use crate::message::{BusError, TOPICS};
use busbar_base::topic::TopicFilter;

/// Requests taken from the mailbox per outbox write.
const BATCH: usize = 256;
/// How long a stopping connection waits for the broker to acknowledge what is in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// SUBSCRIBEs sent and not yet acknowledged, at most (well under any broker's receive
/// maximum, so rumqttc never numbers two of them alike).
pub(super) const SUBSCRIBING: usize = 8;

/// A broker connection, ready to run.
#[derive(Debug)]
pub struct Prepared {
    link: Link,
    outbox: Spool,
    config: BrokerConfig,
    /// Connect only once a service uses the connection (the Com's, lent to services).
    lazy: bool,
}

/// Checks connection `name`'s settings and opens its outbox: errors here stop the node from
/// starting.
pub fn prepare(name: &str, config: &BrokerConfig) -> anyhow::Result<Prepared> {
    let link = Link::new(name, config)?;
    let dir = config
        .outbox
        .dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[brokers.{name}]: no outbox folder"))?;
    let outbox = Spool::open(&dir, config.outbox.clone())
        .map_err(|e| anyhow::anyhow!("[brokers.{name}]: the outbox in {}: {e:#}", dir.display()))?;
    Ok(Prepared {
        link,
        outbox,
        config: config.clone(),
        lazy: name == COM_BROKER,
    })
}

pub(super) struct Broker {
    pub(super) name: Arc<str>,
    pub(super) bus: Bus,
    pub(super) stats: Arc<BrokerStats>,
    pub(super) subs: Subscriptions,
    pub(super) outbox: Spool,
    pub(super) window: Window,
    /// The current session, if any.
    pub(super) client: Option<AsyncClient>,
    /// What the broker of this session takes.
    pub(super) takes: Takes,
    /// Filters (by identifier) to subscribe to on this session, in order.
    pub(super) to_subscribe: VecDeque<u32>,
    /// SUBSCRIBEs requested on this session, waiting for rumqttc to number them.
    pub(super) subscribing: VecDeque<u32>,
    /// Packet id → filter identifier, until the broker's SUBACK.
    pub(super) suback: HashMap<u16, u32>,
    /// Subscribe requests answered when the broker acknowledges their filter.
    pub(super) waiting: HashMap<u32, Vec<Delivery>>,
    /// Filters to unsubscribe from on this session, in order.
    pub(super) to_unsubscribe: VecDeque<TopicFilter>,
    pub(super) max_message: usize,
    /// The subscribers' forwarders.
    pub(super) forwarders: Forwarders,
    /// Opens the first session of a lazy connection (none once it has been asked).
    pub(super) wake: Option<Arc<tokio::sync::Notify>>,
    /// Confirmed publishes waiting for the broker.
    pub(super) confirms: super::confirm::Confirms,
}

/// Runs connection `name` until `cancel` fires, then stores what is left and returns.
pub async fn run(
    name: Arc<str>,
    prepared: Prepared,
    bus: Bus,
    requests: mpsc::Receiver<Delivery>,
    stats: Arc<BrokerStats>,
    cancel: CancellationToken,
) {
    let Prepared {
        link,
        outbox,
        config,
        lazy,
    } = prepared;
    let session_cancel = CancellationToken::new();
    let (events_tx, events) = mpsc::channel(256);
    let wake = lazy.then(|| Arc::new(tokio::sync::Notify::new()));
    if lazy {
        tracing::info!(broker = %name, address = %link.address(), "broker connection ready: it connects when a service first uses it");
    } else {
        tracing::info!(broker = %name, address = %link.address(), "broker connection starting");
    }
    let session = tokio::spawn(link.run(events_tx, session_cancel.clone(), wake.clone()));
    let mut broker = Broker {
        forwarders: Forwarders::new(name.clone(), bus.clone(), stats.clone()),
        name,
        bus,
        stats,
        subs: Subscriptions::new(config.max_filters),
        outbox,
        window: Window::new(usize::from(config.in_flight)),
        client: None,
        takes: Takes {
            ids: true,
            retain: true,
            max_packet: None,
        },
        to_subscribe: VecDeque::new(),
        subscribing: VecDeque::new(),
        suback: HashMap::new(),
        waiting: HashMap::new(),
        to_unsubscribe: VecDeque::new(),
        max_message: config.max_message_bytes,
        wake,
        confirms: Default::default(),
    };
    // What an earlier run left in the outbox is a reason to connect.
    if broker.outbox.counts().pending > 0 {
        broker.wake_up();
    }
    broker.update_stats();
    let sync_ms = if config.outbox.sync_ms == 0 {
        100
    } else {
        config.outbox.sync_ms
    };
    broker
        .serve(
            requests,
            events,
            Duration::from_millis(sync_ms.clamp(1, 1000)),
            cancel,
        )
        .await;
    session_cancel.cancel();
    let _ = session.await;
}

impl Broker {
    async fn serve(
        &mut self,
        mut requests: mpsc::Receiver<Delivery>,
        mut events: mpsc::Receiver<LinkEvent>,
        sync_every: Duration,
        cancel: CancellationToken,
    ) {
        let mut sync = tokio::time::interval(sync_every);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(e) = events.recv() => self.on_link(e),
                Some(d) = requests.recv() => {
                    let mut batch = vec![d];
                    while batch.len() < BATCH {
                        match requests.try_recv() {
                            Ok(d) => batch.push(d),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch);
                }
                _ = sync.tick() => self.sync(),
            }
            self.pump();
            self.update_stats();
        }
        // Stopping (services have stopped): what they asked goes to the outbox; what is in
        // flight gets a moment for its acknowledgement; the rest waits on disk.
        requests.close();
        let mut rest = Vec::new();
        while let Some(d) = requests.recv().await {
            rest.push(d);
        }
        if !rest.is_empty() {
            self.handle(rest);
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
        tracing::info!(broker = %self.name, waiting = self.outbox.counts().pending, "broker connection stopped; unacknowledged publishes wait in its outbox");
    }

    /// A lazy connection's first session opens now.
    pub(super) fn wake_up(&mut self) {
        if let Some(wake) = self.wake.take() {
            wake.notify_one();
        }
    }

    pub(super) fn answer(&self, d: Delivery, result: Result<(), BusError>) {
        if let Err(e) = &result {
            tracing::warn!(broker = %self.name, from = %d.msg.source, error = %e, "topic request refused");
        }
        self.bus
            .finish(TOPICS, d, Duration::ZERO, result.map(|()| None));
    }

    pub(super) fn sync(&mut self) {
        self.outbox.sync_logged(&self.name);
    }

    pub(super) fn update_stats(&self) {
        self.stats.set_outbox(self.outbox.counts());
        self.stats
            .filters
            .store(self.subs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// MQTT 5 properties of a publish.
pub(super) fn props(
    content_type: Option<String>,
    user_properties: Vec<(String, String)>,
) -> PublishProperties {
    PublishProperties {
        content_type,
        user_properties,
        ..Default::default()
    }
}
