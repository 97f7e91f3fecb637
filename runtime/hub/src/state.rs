//! What the hub's handlers share: the fleet dir, `hub.toml` (re-read when it changes), the
//! published layers, the store of what nodes reported, and the signal that wakes long polls.

use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, header};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{HUB_TOML, HubConfig, NodeEntry, TokenIndex};
use super::error::HubApiError;
use super::files::FleetDir;
use super::layers::{Layers, etag};
use super::store::Store;
use crate::protocol::FleetManifest;

/// The hub's shared state.
#[derive(Debug)]
pub struct Hub {
    /// The fleet dir.
    pub dir: FleetDir,
    /// `hub.toml` as last read.
    pub config: ArcSwap<HubConfig>,
    /// Its nodes by token digest (set right after `config`).
    tokens: ArcSwap<TokenIndex>,
    /// When `hub.toml` was last read: its modification time and size.
    stamp: Mutex<Option<(SystemTime, u64)>>,
    /// The published layers.
    pub layers: RwLock<Layers>,
    /// Held while the layers are changed, so changes are written one at a time.
    pub writer: tokio::sync::Mutex<()>,
    /// What nodes told the hub.
    pub store: Arc<Store>,
    /// The blobs in memory.
    pub blobs: super::blobs::Blobs,
    /// Bumped whenever a node's manifest may have changed.
    pub changes: watch::Sender<u64>,
    /// Fires when the server stops (ends long polls).
    pub cancel: CancellationToken,
}

impl Hub {
    /// Reads the fleet dir: `hub.toml`, the published layers and the store; also returns the
    /// store's writer, to be watched.
    pub fn open(
        dir: FleetDir,
        cancel: CancellationToken,
    ) -> anyhow::Result<(
        Arc<Self>,
        impl Future<Output = anyhow::Result<()>> + Send + 'static + use<>,
    )> {
        let stamp = stamp_of(dir.root());
        let config = HubConfig::load(dir.root())?;
        dir.create_subdirs().map_err(|e| {
            anyhow::anyhow!("cannot create the dirs of {}: {e}", dir.root().display())
        })?;
        let layers = Layers::load(&dir)?;
        let (store, writer) = Store::open(dir.root(), cancel.clone())?;
        let hub = Arc::new(Self {
            store: Arc::new(store),
            blobs: super::blobs::Blobs::default(),
            dir,
            tokens: ArcSwap::from_pointee(TokenIndex::of(&config)),
            config: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
            layers: RwLock::new(layers),
            writer: tokio::sync::Mutex::new(()),
            changes: watch::Sender::new(0),
            cancel,
        });
        Ok((hub, writer))
    }

    /// Re-reads `hub.toml` if it changed since it was last read; wakes long polls when it
    /// did. A broken file is reported and the previous configuration kept.
    pub fn reload_if_changed(&self) {
        let stamp = stamp_of(self.dir.root());
        {
            let mut last = busbar_base::sync::lock(&self.stamp);
            if *last == stamp {
                return;
            }
            *last = stamp;
        }
        match HubConfig::load(self.dir.root()) {
            Ok(config) => {
                self.install(config);
                self.bump();
                tracing::info!("{HUB_TOML} re-read");
            }
            Err(e) => tracing::warn!("{e:#}; keeping the previous configuration"),
        }
    }

    /// Uses `config`, just written to `hub.toml`, at once (and not again when the file is
    /// next checked); wakes the long polls.
    pub fn use_config(&self, config: HubConfig) {
        *busbar_base::sync::lock(&self.stamp) = stamp_of(self.dir.root());
        self.install(config);
        self.bump();
    }

    /// Makes `config` (and its token index) current.
    fn install(&self, config: HubConfig) {
        let tokens = TokenIndex::of(&config);
        self.config.store(Arc::new(config));
        self.tokens.store(Arc::new(tokens));
    }

    /// Wakes the long polls: some node's manifest may have changed.
    pub fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Checks the admin token of a request (against `hub.toml` as it is now: a node just
    /// added, revoked or given a tag counts at once).
    pub fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), HubApiError> {
        self.reload_if_changed();
        if self.config.load().is_admin(bearer(headers)?) {
            Ok(())
        } else {
            Err(HubApiError::unauthorized("unknown admin token"))
        }
    }

    /// The node a request's token belongs to, unless it is unknown or revoked.
    pub fn authorize_node(&self, headers: &HeaderMap) -> Result<(String, NodeEntry), HubApiError> {
        self.reload_if_changed();
        let config = self.config.load();
        let (id, node) = self
            .tokens
            .load()
            .find(&config, bearer(headers)?)
            .ok_or_else(|| HubApiError::unauthorized("unknown node token"))?;
        if node.revoked {
            return Err(HubApiError::unauthorized(format!(
                "node token for `{id}` is revoked"
            )));
        }
        Ok((id.to_owned(), node.clone()))
    }

    /// Node `id`'s manifest now, and its ETag; 401 when the node was removed or revoked
    /// meanwhile.
    pub fn manifest_of(&self, id: &str) -> Result<(FleetManifest, String), HubApiError> {
        let config = self.config.load();
        let node =
            config.nodes.get(id).filter(|n| !n.revoked).ok_or_else(|| {
                HubApiError::unauthorized(format!("node `{id}` is revoked or gone"))
            })?;
        let manifest = busbar_base::sync::read(&self.layers).node_manifest(id, node);
        let tag = etag(&manifest);
        Ok((manifest, tag))
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, HubApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| HubApiError::unauthorized("missing `Authorization: Bearer TOKEN` header"))
}

/// The modification time and size of `hub.toml`, if it can be read.
fn stamp_of(dir: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(dir.join(HUB_TOML)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
