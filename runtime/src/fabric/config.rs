//! `[fabric]` of the node config: which broker connection carries messages between nodes,
//! under which topic prefix, and how the fabric keeps what it was handed.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::com::spool::SpoolConfig;
use crate::topics::Brokers;
use busbar_base::address::Place;
use busbar_base::topic::TopicName;

/// The longest `[fabric] prefix`.
const MAX_PREFIX_BYTES: usize = 256;

/// `[fabric]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FabricConfig {
    /// The broker connection (`[brokers.{name}]`) the fabric runs on (required).
    pub broker: String,
    /// The fabric's topics begin with it: node inboxes are `{prefix}/{node}/...`.
    pub prefix: String,
    /// How long a message sent to another node waits for word that it was processed before
    /// it is sent again (to the same node, or to whichever member of a group), in ms.
    pub resend_ms: u64,
    /// Requests from other nodes handled at once; more are answered `queue-full` (their
    /// senders send again).
    pub max_inbound: usize,
    /// Messages sent to other nodes and not yet processed there, kept on disk until they
    /// are (default folder `{data_dir}/fabric`, 16 MiB).
    pub outbox: SpoolConfig,
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self {
            broker: String::new(),
            prefix: "busbar/fabric".into(),
            resend_ms: 5_000,
            max_inbound: 1_024,
            outbox: SpoolConfig {
                max_bytes: 16 << 20,
                ..SpoolConfig::default()
            },
        }
    }
}

/// The fabric of one node, checked.
#[derive(Debug, Clone)]
pub struct FabricSettings {
    /// This node's id on the fabric.
    pub node: Place,
    /// The broker connection.
    pub broker: String,
    /// The topic prefix.
    pub prefix: String,
    /// See [`FabricConfig::resend_ms`].
    pub resend: Duration,
    /// See [`FabricConfig::max_inbound`].
    pub max_inbound: usize,
    /// The outbox, its folder set.
    pub outbox: SpoolConfig,
}

impl FabricConfig {
    /// Checks the settings against the node's id and connections; errors name the field.
    pub fn settings(
        &self,
        node_id: &str,
        data_dir: &Path,
        brokers: &Brokers,
    ) -> anyhow::Result<FabricSettings> {
        let node = Place::parse(node_id).map_err(|e| {
            anyhow::anyhow!("node_id {e}: a node on a fabric needs an id that is a topic level")
        })?;
        anyhow::ensure!(
            !self.broker.is_empty(),
            "[fabric] broker: name the broker connection the fabric runs on (one of the \
             [brokers.*] sections)"
        );
        anyhow::ensure!(
            brokers.connections.contains_key(&self.broker),
            "[fabric] broker: `{}` is not a broker connection of this node (it has: {})",
            self.broker,
            names(brokers)
        );
        // Room under the topic limit for `/{node or group}/to/{service}/{node}` (64 each).
        anyhow::ensure!(
            self.prefix.len() <= MAX_PREFIX_BYTES,
            "[fabric] prefix: {} bytes, at most {MAX_PREFIX_BYTES}",
            self.prefix.len()
        );
        let topic = TopicName::parse(&self.prefix)
            .map_err(|e| anyhow::anyhow!("[fabric] prefix `{}`: {e}", self.prefix))?;
        anyhow::ensure!(
            !topic.is_system() && !self.prefix.ends_with('/') && !self.prefix.starts_with('/'),
            "[fabric] prefix `{}`: must not begin with `$` or `/` nor end with `/`",
            self.prefix
        );
        anyhow::ensure!(
            self.outbox.on_full == crate::com::spool::SpoolFull::Refuse,
            "[fabric.outbox] on_full: only \"refuse\" (a message for another node is never \
             dropped to make room)"
        );
        anyhow::ensure!(
            (100..=3_600_000).contains(&self.resend_ms),
            "[fabric] resend_ms = {}: must be 100 to 3,600,000",
            self.resend_ms
        );
        anyhow::ensure!(
            (1..=65_536).contains(&self.max_inbound),
            "[fabric] max_inbound = {}: must be 1 to 65,536",
            self.max_inbound
        );
        let mut outbox = self.outbox.clone();
        if outbox.dir.is_none() {
            outbox.dir = Some(data_dir.join("fabric"));
        }
        Ok(FabricSettings {
            node,
            broker: self.broker.clone(),
            prefix: self.prefix.clone(),
            resend: Duration::from_millis(self.resend_ms),
            max_inbound: self.max_inbound,
            outbox,
        })
    }

    /// Makes a relative outbox folder relative to the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.outbox.dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
    }
}

fn names(brokers: &Brokers) -> String {
    if brokers.connections.is_empty() {
        return "none".into();
    }
    brokers
        .connections
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers() -> Brokers {
        let site = crate::topics::BrokerConfig {
            host: Some("127.0.0.1".into()),
            ..Default::default()
        };
        Brokers {
            connections: [("site".to_owned(), site)].into(),
            default: None,
        }
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let dir = Path::new("/tmp/x");
        let ok = FabricConfig {
            broker: "site".into(),
            ..FabricConfig::default()
        };
        let s = ok.settings("gw1", dir, &brokers()).unwrap();
        assert_eq!(s.node.as_str(), "gw1");
        assert_eq!(s.outbox.dir.as_deref(), Some(Path::new("/tmp/x/fabric")));
        let cases = [
            (FabricConfig::default(), "gw1", "[fabric] broker: name"),
            (
                FabricConfig {
                    broker: "cloud".into(),
                    ..ok.clone()
                },
                "gw1",
                "it has: site",
            ),
            (ok.clone(), "gw 1", "node_id"),
            (
                FabricConfig {
                    prefix: "a/+".into(),
                    ..ok.clone()
                },
                "gw1",
                "[fabric] prefix",
            ),
            (
                FabricConfig {
                    resend_ms: 5,
                    ..ok.clone()
                },
                "gw1",
                "resend_ms",
            ),
            (
                FabricConfig {
                    prefix: "p".repeat(300),
                    ..ok.clone()
                },
                "gw1",
                "at most 256",
            ),
        ];
        for (config, node, expected) in cases {
            let e = config.settings(node, dir, &brokers()).unwrap_err();
            assert!(format!("{e:#}").contains(expected), "{e:#}");
        }
    }
}
