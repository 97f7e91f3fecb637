//! `[hub]` of the node config ([`FleetConfig`]): where the fleet hub is and how the node
//! trusts it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

/// The fleet hub the node takes its services from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The hub's base URL, `https://...` (or `http://` on a trusted network).
    pub url: String,
    /// The node's token (as `busbar hub add-node` printed it).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token instead (first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The publishers' ed25519 public key (64 hex digits): components not signed with its
    /// secret key are refused.
    #[serde(default)]
    pub public_key: Option<String>,
    /// A file holding the public key instead (as `busbar hub keygen` wrote `KEY.pub`).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// PEM file of the CA that signed the hub's certificate (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Largest component the node downloads, in bytes.
    #[serde(default = "default_max_component_bytes")]
    pub max_component_bytes: u64,
    /// Largest precompiled artifact the node downloads, in bytes.
    #[serde(default = "default_max_artifact_bytes")]
    pub max_artifact_bytes: u64,
    /// How long a boot waits for the hub before starting from the last good manifest, in ms.
    #[serde(default = "default_boot_wait_ms")]
    pub boot_wait_ms: u64,
    /// Longest wait between retries when the hub cannot be reached, in ms.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_max_component_bytes() -> u64 {
    64 << 20
}

fn default_max_artifact_bytes() -> u64 {
    busbar_hub::bounds::MAX_ARTIFACT_BYTES
}

fn default_boot_wait_ms() -> u64 {
    5000
}

fn default_backoff_max_ms() -> u64 {
    30_000
}

impl FleetConfig {
    /// Resolves relative file paths against the config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        for path in [
            &mut self.token_file,
            &mut self.public_key_file,
            &mut self.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The node token, from `token` or `token_file`.
    pub fn token(&self) -> anyhow::Result<String> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), None) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("hub.token_file {}: cannot read it", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (Some(_), Some(_)) => anyhow::bail!("hub: set token or token_file, not both"),
            (None, None) => {
                anyhow::bail!("hub: the node needs its token (hub.token or hub.token_file)")
            }
        };
        let token = token.trim().to_owned();
        anyhow::ensure!(!token.is_empty(), "hub: the node token is empty");
        Ok(token)
    }

    /// The key components must be signed with, from `public_key` or `public_key_file`.
    pub fn public_key(&self) -> anyhow::Result<VerifyingKey> {
        let (text, origin) = match (&self.public_key, &self.public_key_file) {
            (Some(k), None) => (k.clone(), "hub.public_key".to_owned()),
            (None, Some(path)) => (
                std::fs::read_to_string(path).with_context(|| {
                    format!("hub.public_key_file {}: cannot read it", path.display())
                })?,
                format!("hub.public_key_file {}", path.display()),
            ),
            (Some(_), Some(_)) => anyhow::bail!("hub: set public_key or public_key_file, not both"),
            (None, None) => anyhow::bail!(
                "hub: the node needs the publishers' public key (hub.public_key or \
                 hub.public_key_file) to check components"
            ),
        };
        busbar_hub::protocol::parse_public_key(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
    }
}
