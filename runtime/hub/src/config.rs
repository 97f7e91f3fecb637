//! `hub.toml`: the hub's admin token and public key, its timing, and the nodes it knows.
//! Tokens are only ever stored as their sha256.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::protocol;

/// The hub's configuration file, in the fleet dir.
pub const HUB_TOML: &str = "hub.toml";

/// The contents of `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// sha256 (hex) of the admin token.
    pub admin_token_sha256: String,
    /// The ed25519 public key (64 hex digits) every published component is checked against.
    pub public_key: String,
    /// How often nodes send their status, in seconds.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
    /// How long a manifest request is held open at most, in seconds.
    #[serde(default = "default_long_poll_s")]
    pub long_poll_s: u64,
    /// The nodes, by id.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeEntry>,
}

/// One node of `hub.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// sha256 (hex) of the node's token.
    pub token_sha256: String,
    /// Its tags: it runs what is published to them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether it forwards its log lines.
    #[serde(default)]
    pub debug: bool,
    /// Whether its token is refused.
    #[serde(default)]
    pub revoked: bool,
}

/// Default of `heartbeat_s`.
fn default_heartbeat_s() -> u64 {
    30
}

/// Longest `long_poll_s`: below the nodes' read timeout.
pub const MAX_LONG_POLL_S: u64 = 300;

/// Default of `long_poll_s`.
fn default_long_poll_s() -> u64 {
    25
}

impl HubConfig {
    /// A fresh configuration with no nodes.
    pub fn new(admin_token_sha256: String, public_key: String) -> Self {
        Self {
            admin_token_sha256,
            public_key,
            heartbeat_s: default_heartbeat_s(),
            long_poll_s: default_long_poll_s(),
            nodes: BTreeMap::new(),
        }
    }

    /// Parses and checks `hub.toml` text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text).with_context(|| format!("{origin}: bad TOML"))?;
        config
            .check()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(config)
    }

    /// Reads `hub.toml` from the fleet dir.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(HUB_TOML);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (create the fleet dir with `busbar hub init`)",
                path.display()
            )
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Writes `hub.toml` to the fleet dir atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(HUB_TOML);
        let text = toml::to_string(self).context("cannot serialize hub.toml")?;
        super::files::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `hub.toml`, changes it with `change` and writes it back, holding `hub.toml.lock`
    /// meanwhile, so the command line and a running hub (the console) do not overwrite each
    /// other's changes.
    pub fn edit<T>(
        dir: &Path,
        change: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let lock_path = dir.join(format!("{HUB_TOML}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut config = Self::load(dir)?;
        let out = change(&mut config)?;
        config.save(dir)?;
        Ok(out)
    }

    /// What is wrong with the configuration, if anything.
    pub fn check(&self) -> Result<(), String> {
        check_digest(&self.admin_token_sha256).map_err(|e| format!("admin_token_sha256: {e}"))?;
        self.verifying_key()
            .map_err(|e| format!("public_key: {e}"))?;
        if self.heartbeat_s == 0 {
            return Err("heartbeat_s: must be at least 1".into());
        }
        if self.long_poll_s > MAX_LONG_POLL_S {
            return Err(format!(
                "long_poll_s: at most {MAX_LONG_POLL_S} (nodes give up on a silent request after 5 minutes)"
            ));
        }
        for (id, node) in &self.nodes {
            check_id(id).map_err(|e| format!("nodes.{id}: {e}"))?;
            check_digest(&node.token_sha256)
                .map_err(|e| format!("nodes.{id}.token_sha256: {e}"))?;
            for tag in &node.tags {
                check_id(tag).map_err(|e| format!("nodes.{id}.tags: {e}"))?;
            }
        }
        Ok(())
    }

    /// The public key published components are checked against.
    pub fn verifying_key(&self) -> Result<VerifyingKey, String> {
        protocol::parse_public_key(&self.public_key)
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        same_digest(&token_sha256(token), &self.admin_token_sha256)
    }

    /// The node `id`, or an error naming it.
    pub fn node_mut(&mut self, id: &str) -> anyhow::Result<&mut NodeEntry> {
        self.nodes
            .get_mut(id)
            .ok_or_else(|| anyhow::anyhow!("hub.toml has no node `{id}`"))
    }
}

/// The nodes of a `hub.toml` by their token's sha256: a token is checked with one lookup,
/// not a comparison with every node's (which cost most of the hub's time at 10,000 nodes).
/// The digest found is compared again with the node's in constant time.
#[derive(Debug, Default)]
pub struct TokenIndex {
    by_digest: std::collections::HashMap<String, String>,
}

impl TokenIndex {
    /// The index of `config`'s nodes.
    pub fn of(config: &HubConfig) -> Self {
        Self {
            by_digest: config
                .nodes
                .iter()
                .map(|(id, n)| (n.token_sha256.to_ascii_lowercase(), id.clone()))
                .collect(),
        }
    }

    /// The node of `config` whose token is `token`, revoked or not.
    pub fn find<'c>(&self, config: &'c HubConfig, token: &str) -> Option<(&'c str, &'c NodeEntry)> {
        let digest = token_sha256(token);
        let id = self.by_digest.get(&digest)?;
        let (id, node) = config.nodes.get_key_value(id)?;
        same_digest(&digest, &node.token_sha256).then_some((id.as_str(), node))
    }
}

/// sha256 (hex) of a token, as `hub.toml` stores it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A fresh random token: 32 random bytes as hex.
pub fn fresh_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares two hex digests in time independent of where they differ.
fn same_digest(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
        }) == 0
}

/// Checks a sha256 written as hex.
pub fn check_digest(digest: &str) -> Result<(), String> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("expected 64 hex digits, got `{digest}`"))
    }
}

pub use busbar_base::names::check_id;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HubConfig {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut c = HubConfig::new(
            token_sha256("admin-secret"),
            hex::encode(key.verifying_key().to_bytes()),
        );
        c.nodes.insert(
            "gw1".into(),
            NodeEntry {
                token_sha256: token_sha256("gw1-secret"),
                tags: vec!["lab".into()],
                ..NodeEntry::default()
            },
        );
        c.nodes.insert(
            "gw2".into(),
            NodeEntry {
                token_sha256: token_sha256("gw2-secret"),
                revoked: true,
                ..NodeEntry::default()
            },
        );
        c
    }

    #[test]
    fn hub_toml_round_trips() {
        let c = config();
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("[nodes.gw1]"), "{text}");
        assert_eq!(HubConfig::parse(&text, "hub.toml").unwrap(), c);
    }

    #[test]
    fn tokens_are_looked_up_by_their_hash() {
        let c = config();
        assert!(c.is_admin("admin-secret"));
        assert!(!c.is_admin("gw1-secret"));
        let index = TokenIndex::of(&c);
        let (id, node) = index.find(&c, "gw1-secret").unwrap();
        assert_eq!((id, node.revoked), ("gw1", false));
        assert!(index.find(&c, "gw2-secret").unwrap().1.revoked);
        assert!(index.find(&c, "nobody").is_none());
        assert!(index.find(&c, "admin-secret").is_none());
        assert_eq!(fresh_token().len(), 64);
        assert_ne!(fresh_token(), fresh_token());
    }

    #[test]
    fn bad_entries_are_named() {
        let mut c = config();
        c.nodes.get_mut("gw1").unwrap().token_sha256 = "nope".into();
        let e = c.check().unwrap_err();
        assert!(e.contains("nodes.gw1.token_sha256"), "{e}");
        assert!(check_id("a b").is_err() && check_id("GW-1.x_y").is_ok());
    }
}
