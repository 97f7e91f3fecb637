//! `[brokers.{name}]` of the node config: the MQTT broker connections services publish and
//! subscribe on, and the Com's own broker as the connection named `com`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::com::ComConfig;
use crate::com::spool::SpoolConfig;

/// The connection the Com's broker lends services (`[com] kind = "mqtt"`).
pub const COM_BROKER: &str = "com";
/// The largest `max_message_bytes` a connection may set (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// One broker connection.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Broker host (required).
    pub host: Option<String>,
    /// Broker port (default 1883, or 8883 with TLS).
    pub port: Option<u16>,
    /// Client id (default `{node_id}-{name}`).
    pub client_id: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// TLS (rustls).
    pub tls: bool,
    /// PEM file of the CA to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive, in seconds (at least 5).
    pub keep_alive_s: u64,
    /// Longest wait between reconnection attempts, in ms (jittered exponential backoff).
    pub backoff_max_ms: u64,
    /// Services' base topic is `{base_topic}/{service}` (`{node}` is the node id); topics
    /// not beginning with `/` are relative to it.
    pub base_topic: String,
    /// The connection services use when they name none.
    pub default: bool,
    /// At-least-once publishes sent and not yet acknowledged by the broker, at most.
    pub in_flight: u16,
    /// Largest message in either direction, payload, topic and properties.
    pub max_message_bytes: usize,
    /// Distinct filters subscribed on this connection, at most.
    pub max_filters: usize,
    /// The durable outbox of at-least-once publishes (default folder
    /// `{data_dir}/brokers/{name}`).
    pub outbox: SpoolConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            client_id: None,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            keep_alive_s: 30,
            backoff_max_ms: 30_000,
            base_topic: "busbar/{node}".into(),
            default: false,
            in_flight: 64,
            max_message_bytes: 256 * 1024,
            max_filters: 10_000,
            outbox: SpoolConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// The keep-alive.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_s.max(5))
    }

    /// Resolves relative paths in it against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.outbox.dir]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// The node's broker connections, checked: `[brokers.*]` plus `com` when the Com is a plain
/// MQTT one, and which is the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Brokers {
    /// By name, each with `{node}` filled in and its outbox folder set.
    pub connections: BTreeMap<String, BrokerConfig>,
    /// The connection services use when they name none.
    pub default: Option<String>,
}

impl Brokers {
    /// The connections of a node: `brokers` as configured, and the Com's broker as `com`
    /// (same host, port, TLS and credentials; its own session, client id `{client_id}-topics`,
    /// base topic `[com.topics] services`). Errors name the field.
    pub fn of(
        brokers: &BTreeMap<String, BrokerConfig>,
        com: &ComConfig,
        node_id: &str,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut connections = BTreeMap::new();
        for (name, b) in brokers {
            busbar_base::grants::check_broker_name(name)
                .map_err(|e| anyhow::anyhow!("[brokers.{name}]: {e}"))?;
            anyhow::ensure!(
                name != COM_BROKER || !matches!(com, ComConfig::Mqtt(_)),
                "[brokers.{COM_BROKER}]: `{COM_BROKER}` is the Com's own broker connection; \
                 give this one another name"
            );
            let mut b = b.clone();
            anyhow::ensure!(
                b.host.as_deref().is_some_and(|h| !h.is_empty()),
                "[brokers.{name}]: `host` is required (the broker's address)"
            );
            if b.client_id.is_none() {
                b.client_id = Some(format!("{node_id}-{name}"));
            }
            connections.insert(name.clone(), b);
        }
        if let ComConfig::Mqtt(m) = com {
            let b = BrokerConfig {
                host: m.host.clone(),
                port: m.port,
                client_id: Some(format!(
                    "{}-topics",
                    m.client_id.as_deref().unwrap_or(node_id)
                )),
                username: m.username.clone(),
                password: m.password.clone(),
                tls: m.tls.unwrap_or(false),
                ca_file: m.ca_file.clone(),
                keep_alive_s: m.keep_alive_s,
                backoff_max_ms: m.backoff_max_ms,
                base_topic: m.topics.services.clone(),
                default: false,
                in_flight: m.in_flight,
                max_message_bytes: m.max_message_bytes,
                max_filters: BrokerConfig::default().max_filters,
                outbox: SpoolConfig {
                    dir: None,
                    ..m.spool.clone()
                },
            };
            connections.insert(COM_BROKER.to_owned(), b);
        }
        let marked: Vec<&String> = brokers
            .iter()
            .filter(|(_, b)| b.default)
            .map(|(n, _)| n)
            .collect();
        let default = match marked.as_slice() {
            [] => connections
                .contains_key(COM_BROKER)
                .then(|| COM_BROKER.to_owned())
                .or_else(|| {
                    (connections.len() == 1)
                        .then(|| connections.keys().next().cloned())
                        .flatten()
                }),
            [one] => Some((*one).clone()),
            more => anyhow::bail!(
                "[brokers]: {} connections say `default = true` ({}); only one may",
                more.len(),
                more.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        for (name, b) in &mut connections {
            b.base_topic = b.base_topic.replace("{node}", node_id);
            anyhow::ensure!(
                !b.base_topic.contains(['+', '#']) && !b.base_topic.starts_with('$'),
                "[brokers.{name}].base_topic: `{}` may not contain `+` or `#` nor begin with `$`",
                b.base_topic
            );
            anyhow::ensure!(
                b.in_flight > 0,
                "[brokers.{name}].in_flight must be at least 1"
            );
            anyhow::ensure!(
                (1..=MAX_MESSAGE_BYTES).contains(&b.max_message_bytes),
                "[brokers.{name}].max_message_bytes: {} is out of range (1 to {MAX_MESSAGE_BYTES})",
                b.max_message_bytes
            );
            anyhow::ensure!(
                b.max_filters > 0,
                "[brokers.{name}].max_filters must be at least 1"
            );
            if b.outbox.dir.is_none() {
                b.outbox.dir = Some(data_dir.join("brokers").join(name));
            }
        }
        Ok(Self {
            connections,
            default,
        })
    }

    /// Each connection's base topic, for the grants of services.
    pub fn bases(&self) -> crate::grants::BrokerBases {
        crate::grants::BrokerBases {
            bases: self
                .connections
                .iter()
                .map(|(n, b)| (n.clone(), b.base_topic.clone()))
                .collect(),
            default: self.default.clone(),
        }
    }
}
