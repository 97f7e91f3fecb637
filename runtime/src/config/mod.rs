//! Node configuration (`--config node.toml`): what the node is and how it runs, as opposed
//! to the manifest, which says what services it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::bus::DEFAULT_MAX_PAYLOAD;
use crate::com::ComConfig;
use crate::engine::EngineConfig;

pub mod admin;
pub mod fleet;

pub use admin::AdminConfig;
pub use fleet::FleetConfig;

/// The node's settings; every field has a default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's identity towards the hub.
    pub node_id: String,
    /// Where compiled components are cached (default `$XDG_CACHE_HOME/busbar` or
    /// `~/.cache/busbar`).
    pub cache_dir: Option<PathBuf>,
    /// Where the node keeps its state (default `$XDG_STATE_HOME/busbar` or
    /// `~/.local/state/busbar`): the admin API's URL and local token.
    pub data_dir: Option<PathBuf>,
    /// Where to write the node's process id while it runs (none by default).
    pub pid_file: Option<PathBuf>,
    /// Set to false to compile components at every start.
    pub compile_cache: bool,
    /// Largest payload the bus accepts, in bytes.
    pub max_payload_bytes: usize,
    /// How long services may keep processing queued messages at shutdown, in ms.
    pub drain_ms: u64,
    /// wasm engine settings.
    pub engine: EngineConfig,
    /// The link towards the IoT hub.
    pub com: ComConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// The fleet hub the node takes its services from (none: the manifest is local).
    pub hub: Option<FleetConfig>,
    /// MQTT broker connections services publish and subscribe on, by name.
    pub brokers: std::collections::BTreeMap<String, crate::topics::BrokerConfig>,
    /// The fabric: services on other nodes reached over one of the broker connections
    /// (none: this node is on no fabric).
    pub fabric: Option<crate::fabric::FabricConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: "busbar-node".into(),
            cache_dir: None,
            data_dir: None,
            pid_file: None,
            compile_cache: true,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD,
            drain_ms: 2000,
            engine: EngineConfig::default(),
            com: ComConfig::default(),
            admin: AdminConfig::default(),
            hub: None,
            brokers: Default::default(),
            fabric: None,
        }
    }
}

impl NodeConfig {
    /// Reads a TOML node config; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = busbar_base::read_file::read_text_bounded(
            path,
            busbar_base::read_file::MAX_CONFIG_BYTES,
        )
        .with_context(|| format!("node config {}: cannot read it", path.display()))?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "node config {}: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let ComConfig::File { path } = &mut config.com
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
        if let Some(hub) = &mut config.hub {
            hub.resolve(base);
        }
        for b in config.brokers.values_mut() {
            b.resolve_paths(base);
        }
        if let Some(f) = &mut config.fabric {
            f.resolve_paths(base);
        }
        // Checked here, once, naming the file (services would otherwise each fail on it).
        config
            .fabric_settings()
            .map_err(|e| anyhow::anyhow!("node config {}: {e:#}", path.display()))?;
        for dir in [
            &mut config.cache_dir,
            &mut config.data_dir,
            &mut config.pid_file,
        ]
        .into_iter()
        .flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    /// The compile cache folder, or `None` when caching is off or no folder can be found.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if !self.compile_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|d| d.join("busbar"))
        })
    }

    /// The data folder: `data_dir`, else `$XDG_STATE_HOME/busbar`, else
    /// `~/.local/state/busbar`, else `./busbar-data`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .map_or_else(|| PathBuf::from("busbar-data"), |d| d.join("busbar"))
        })
    }

    /// The broker connections, checked ([`crate::topics::Brokers::of`]).
    pub fn brokers(&self) -> anyhow::Result<crate::topics::Brokers> {
        crate::topics::Brokers::of(&self.brokers, &self.com, &self.node_id, &self.data_dir())
    }

    /// The fabric's settings, checked against the node's id and connections (none: no
    /// `[fabric]`). Checks the broker connections too.
    pub fn fabric_settings(&self) -> anyhow::Result<Option<crate::fabric::FabricSettings>> {
        let brokers = self.brokers()?;
        self.fabric
            .as_ref()
            .map(|f| f.settings(&self.node_id, &self.data_dir(), &brokers))
            .transpose()
    }

    /// The shutdown drain time.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file_com() {
        let c: NodeConfig =
            toml::from_str("node_id = \"gw\"\n[com]\nkind = \"file\"\npath = \"out.jsonl\"\n")
                .unwrap();
        assert_eq!(c.node_id, "gw");
        assert_eq!(
            c.com,
            ComConfig::File {
                path: "out.jsonl".into()
            }
        );
        assert_eq!(c.engine, EngineConfig::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<NodeConfig>("[engine]\nmax_memory = 3\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `max_memory`"), "{e}");
        let e = toml::from_str::<NodeConfig>("[com]\nkind = \"carrier-pigeon\"\n").unwrap_err();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    }
}
