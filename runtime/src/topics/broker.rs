//! One broker connection's task: it owns the subscriptions, the outbox and the session, and
//! serves the requests of services in the order they come. Its work is split by concept:
//! this file (requests), `session` (links coming and going, what is sent on them) and
//! `inbound` (publishes arriving for services).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::BrokerConfig;
use super::inbound::Inbound;
use super::link::{Link, LinkEvent};
use super::stats::BrokerStats;
use super::subscriptions::{Change, Subscriptions};
use crate::bus::{Bus, Delivery};
use crate::com::spool::{Record, Spool, SpoolError, Window};
use crate::message::{BusError, ErrorCode, TOPICS, TopicRequest};

/// Requests taken from the mailbox per outbox write.
const BATCH: usize = 256;
/// How long a stopping connection waits for the broker to acknowledge what is in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A broker connection, ready to run.
#[derive(Debug)]
pub struct Prepared {
    link: Link,
    outbox: Spool,
    config: BrokerConfig,
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
    /// Whether the broker of this session takes subscription identifiers.
    pub(super) ids: bool,
    /// Filters (by identifier) to subscribe to on this session, in order.
    pub(super) to_subscribe: VecDeque<u32>,
    /// SUBSCRIBEs requested on this session, waiting for rumqttc to number them.
    pub(super) subscribing: VecDeque<u32>,
    /// Packet id → filter identifier, until the broker's SUBACK.
    pub(super) suback: HashMap<u16, u32>,
    /// Subscribe requests answered when the broker acknowledges their filter.
    pub(super) waiting: HashMap<u32, Vec<Delivery>>,
    pub(super) max_message: usize,
    pub(super) sync_failures: u64,
    pub(super) inbound: mpsc::Sender<Inbound>,
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
    } = prepared;
    let session_cancel = CancellationToken::new();
    let (events_tx, events) = mpsc::channel(1024);
    tracing::info!(broker = %name, address = %link.address(), "broker connection starting");
    let session = tokio::spawn(link.run(events_tx, session_cancel.clone()));
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let worker = tokio::spawn(super::inbound::deliver(
        name.clone(),
        bus.clone(),
        stats.clone(),
        inbound_rx,
    ));
    let mut broker = Broker {
        name,
        bus,
        stats,
        subs: Subscriptions::new(config.max_filters),
        outbox,
        window: Window::new(usize::from(config.in_flight)),
        client: None,
        ids: true,
        to_subscribe: VecDeque::new(),
        subscribing: VecDeque::new(),
        suback: HashMap::new(),
        waiting: HashMap::new(),
        max_message: config.max_message_bytes,
        sync_failures: 0,
        inbound: inbound_tx,
    };
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
    drop(broker);
    let _ = worker.await;
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
                Some(e) = events.recv() => self.on_link(e).await,
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
                Ok(Some(e)) => self.on_link(e).await,
                _ => break,
            }
        }
        self.sync();
        self.update_stats();
        tracing::info!(broker = %self.name, waiting = self.outbox.counts().pending, "broker connection stopped; unacknowledged publishes wait in its outbox");
    }

    /// Serves a batch of requests: publishes at least once go to the outbox in one write.
    fn handle(&mut self, batch: Vec<Delivery>) {
        let mut records = Vec::new();
        let mut takers = Vec::new();
        let now = crate::observe::unix_ms();
        for d in batch {
            let request = match TopicRequest::from_message(&d.msg) {
                Ok(r) => r,
                Err(e) => {
                    self.answer(d, Err(e));
                    continue;
                }
            };
            match request {
                TopicRequest::Publish {
                    topic,
                    at_least_once: true,
                    retain,
                    content_type,
                    properties,
                    payload,
                    ..
                } => {
                    let size = payload.len()
                        + topic.as_str().len()
                        + properties
                            .iter()
                            .map(|(k, v)| k.len() + v.len())
                            .sum::<usize>();
                    if let Err(e) = self.fits(size) {
                        self.answer(d, Err(e));
                        continue;
                    }
                    records.push(Record {
                        id: d.msg.id.clone(),
                        source: d.msg.source.clone(),
                        content_type: content_type.unwrap_or_default(),
                        headers: properties,
                        payload,
                        accepted_ms: now,
                        topic: Some(topic.to_string()),
                        retain,
                    });
                    takers.push(d);
                }
                TopicRequest::Publish {
                    topic,
                    retain,
                    content_type,
                    properties,
                    payload,
                    ..
                } => {
                    let size = payload.len() + topic.as_str().len();
                    let result = self.fits(size).and_then(|()| {
                        self.publish_now(
                            topic.to_string(),
                            QoS::AtMostOnce,
                            retain,
                            payload,
                            props(content_type, properties),
                            None,
                        )
                    });
                    self.answer(d, result);
                }
                TopicRequest::Subscribe { filter, .. } => {
                    let service: Arc<str> = Arc::from(d.msg.source.as_str());
                    match self.subs.add(&service, &filter) {
                        Err(e) => {
                            let e = BusError::new(
                                ErrorCode::QueueFull,
                                format!(
                                    "broker `{}`: cannot subscribe to `{filter}`: {e}",
                                    self.name
                                ),
                            );
                            self.answer(d, Err(e));
                        }
                        Ok(Change::Subscribe(id)) if self.client.is_some() => {
                            self.to_subscribe.push_back(id);
                            self.waiting.entry(id).or_default().push(d);
                        }
                        Ok(_) => match self.subs.id_of(&filter) {
                            Some(id) if self.waiting.contains_key(&id) => {
                                self.waiting.entry(id).or_default().push(d);
                            }
                            // Registered: made (again) on every session.
                            _ => self.answer(d, Ok(())),
                        },
                    }
                }
                TopicRequest::Unsubscribe { filter, .. } => {
                    if let Change::Unsubscribe(f) = self.subs.remove(&d.msg.source, &filter) {
                        self.unsubscribe(&f);
                    }
                    self.answer(d, Ok(()));
                }
                TopicRequest::Release => {
                    for f in self.subs.release(&d.msg.source) {
                        self.unsubscribe(&f);
                    }
                    self.answer(d, Ok(()));
                }
            }
        }
        if records.is_empty() {
            return;
        }
        let results = self.outbox.append(&records);
        self.update_stats();
        for (d, r) in takers.into_iter().zip(results) {
            let result = r.map(drop).map_err(|e| self.outbox_error(&e));
            self.answer(d, result);
        }
    }

    fn fits(&self, size: usize) -> Result<(), BusError> {
        if size <= self.max_message {
            return Ok(());
        }
        Err(BusError::new(
            ErrorCode::TooLarge,
            format!(
                "a publish of {size} bytes (payload, topic and properties) exceeds broker `{}`'s \
                 limit of {} bytes (brokers.{}.max_message_bytes)",
                self.name, self.max_message, self.name
            ),
        ))
    }

    fn outbox_error(&self, e: &SpoolError) -> BusError {
        let name = &self.name;
        match e {
            SpoolError::Full {
                pending_bytes,
                max_bytes,
            } => BusError::new(
                ErrorCode::QueueFull,
                format!(
                    "broker `{name}`: the outbox is full ({pending_bytes} of {max_bytes} bytes \
                     waiting for the broker); raise brokers.{name}.outbox.max_bytes"
                ),
            ),
            SpoolError::DiskFull { .. } => BusError::new(
                ErrorCode::QueueFull,
                format!("broker `{name}`: the outbox cannot be written: {e}"),
            ),
            SpoolError::Io(_) => BusError::new(
                ErrorCode::Other,
                format!("broker `{name}`: the outbox: {e}"),
            ),
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
        match self.outbox.sync() {
            Ok(()) if self.sync_failures > 0 => {
                tracing::info!(broker = %self.name, failures = self.sync_failures, "outbox sync works again");
                self.sync_failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.sync_failures += 1;
                if self.sync_failures.is_power_of_two() {
                    tracing::error!(broker = %self.name, error = %e, failures = self.sync_failures, "outbox sync failed");
                }
            }
        }
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
