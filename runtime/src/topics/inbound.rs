//! Publishes arriving on subscribed filters: matched in the trie by the connection's task and
//! handed, without waiting, to one forwarder per subscriber, which puts them into its mailbox
//! in order. A full mailbox applies the service's policy (wait `block_ms`, or refuse) in its
//! own forwarder: a slow or restarting subscriber holds up only its own publishes, never the
//! others nor the session. Each forwarder holds at most [`QUEUE`] publishes and
//! [`QUEUE_BYTES`] of payload; past that the subscriber loses the publish, counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::broker::Broker;
use super::stats::BrokerStats;
use crate::bus::Bus;
use crate::message::{ACTION_TOPIC, Message, TOPICS};

/// Publishes a subscriber may have waiting in front of its mailbox.
pub const QUEUE: usize = 16_384;
/// Payload bytes a subscriber may have waiting in front of its mailbox.
pub const QUEUE_BYTES: usize = 16 << 20;

/// The way into one subscriber's forwarder.
#[derive(Debug)]
struct Forwarder {
    tx: mpsc::Sender<Message>,
    /// Payload bytes it holds.
    bytes: Arc<AtomicUsize>,
}

/// The forwarders of one connection, by subscriber.
#[derive(Debug)]
pub struct Forwarders {
    broker: Arc<str>,
    bus: Bus,
    stats: Arc<BrokerStats>,
    by_service: HashMap<Arc<str>, Forwarder>,
    /// Publishes lost because a forwarder was full (logged at 1, 2, 4, ...).
    lost: u64,
}

impl Forwarders {
    /// None yet.
    pub fn new(broker: Arc<str>, bus: Bus, stats: Arc<BrokerStats>) -> Self {
        Self {
            broker,
            bus,
            stats,
            by_service: HashMap::new(),
            lost: 0,
        }
    }

    /// Hands `msg` to `service`'s forwarder (started when it has none, or when it ended).
    fn send(&mut self, service: &Arc<str>, msg: Message) {
        let mut msg = msg;
        let size = msg.payload.len();
        for _ in 0..2 {
            let f = self
                .by_service
                .entry(service.clone())
                .or_insert_with(|| spawn(service.clone(), self.bus.clone(), self.stats.clone()));
            if f.bytes.load(Relaxed) + size > QUEUE_BYTES {
                return self.lose(service);
            }
            match f.tx.try_send(msg) {
                Ok(()) => {
                    f.bytes.fetch_add(size, Relaxed);
                    return;
                }
                Err(TrySendError::Full(_)) => return self.lose(service),
                Err(TrySendError::Closed(m)) => {
                    // Its forwarder ended (it cannot, short of a panic): a new one takes over.
                    self.by_service.remove(service);
                    msg = m;
                }
            }
        }
    }

    /// `service` is too far behind: this publish is lost for it, counted.
    fn lose(&mut self, service: &str) {
        self.stats.drop_for(service);
        self.lost += 1;
        if self.lost.is_power_of_two() {
            tracing::warn!(broker = %self.broker, %service, lost = self.lost,
                "a subscriber is {QUEUE} publishes or {QUEUE_BYTES} bytes behind: publishes for it are dropped");
        }
    }

    /// `service` has no subscription left here: its forwarder ends once it has delivered
    /// what it holds.
    pub fn forget(&mut self, service: &str) {
        self.by_service.remove(service);
    }
}

fn spawn(service: Arc<str>, bus: Bus, stats: Arc<BrokerStats>) -> Forwarder {
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let bytes = Arc::new(AtomicUsize::new(0));
    let held = bytes.clone();
    tokio::spawn(async move {
        let mut refusals = 0u64;
        while let Some(msg) = rx.recv().await {
            held.fetch_sub(msg.payload.len(), Relaxed);
            let topic = msg
                .headers
                .first()
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            match bus.send(msg).await {
                Ok(_) => {
                    stats.delivered.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    stats.drop_for(&service);
                    refusals += 1;
                    if refusals.is_power_of_two() {
                        tracing::warn!(%service, %topic, error = %e, dropped = refusals,
                            "a publish was not delivered to a subscriber");
                    }
                }
            }
        }
    });
    Forwarder { tx, bytes }
}

impl Broker {
    /// A publish arrived: who gets it is decided here; each subscriber's forwarder delivers.
    pub(super) fn arrived(&mut self, publish: Publish) {
        self.stats.received.fetch_add(1, Relaxed);
        let Ok(topic) = std::str::from_utf8(&publish.topic).map(str::to_owned) else {
            tracing::warn!(broker = %self.name, "a publish whose topic is not UTF-8 was dropped");
            return;
        };
        let ids = publish
            .properties
            .as_ref()
            .map(|p| p.subscription_identifiers.as_slice())
            .unwrap_or_default();
        let recipients = self
            .subs
            .recipients(&topic, if self.takes.ids { ids } else { &[] });
        for service in &recipients {
            let msg = message(&self.bus, &self.name, &topic, &publish, service);
            self.forwarders.send(service, msg);
        }
    }
}

/// The `$topic` message of a publish for `service`.
fn message(bus: &Bus, broker: &str, topic: &str, p: &Publish, service: &str) -> Message {
    let qos = match p.qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    };
    let mut headers = vec![
        ("topic".to_owned(), topic.to_owned()),
        ("broker".to_owned(), broker.to_owned()),
        ("qos".to_owned(), qos.to_owned()),
        ("retain".to_owned(), p.retain.to_string()),
    ];
    let mut content_type = None;
    let mut correlation_id = None;
    if let Some(props) = &p.properties {
        // Correlation data as text (binary data is shown as hex, prefixed `hex:`).
        correlation_id = props
            .correlation_data
            .as_ref()
            .map(|c| match std::str::from_utf8(c) {
                Ok(text) => text.to_owned(),
                Err(_) => format!("hex:{}", hex::encode(c)),
            });
        if let Some(rt) = &props.response_topic {
            headers.push(("response-topic".to_owned(), rt.clone()));
        }
        headers.extend(props.user_properties.iter().cloned());
        content_type = props.content_type.clone();
    }
    Message {
        id: bus.next_id(),
        source: TOPICS.to_owned(),
        destination: service.to_owned(),
        action: ACTION_TOPIC.to_owned(),
        content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
        payload: p.payload.to_vec(),
        correlation_id,
        headers,
    }
}
