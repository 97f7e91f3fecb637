//! What nodes told the hub (`nodes/<id>.json`): identity, last contact, status, events.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::config::NodeEntry;
use super::error::{HubApiError, blocking};
use super::files::{self, FleetDir};
use crate::protocol::{NodeEvent, NodeRecord, NodeStatus, SignIn};

/// Events kept per node; older ones are dropped. With each event's detail bounded
/// ([`crate::bounds::MAX_DETAIL_CHARS`]) and the status too, a node's record stays
/// under about 1 MB whatever its token sends.
pub const MAX_EVENTS: usize = 200;

/// The contents of `nodes/<id>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeData {
    /// What it said at its last sign-in.
    pub identity: Option<SignIn>,
    /// Its last sign-in, status or log batch, in ms since the Unix epoch.
    pub last_seen_ms: Option<u64>,
    /// Its last status (without events: they are in `events`).
    pub status: Option<NodeStatus>,
    /// Its events, oldest first, at most [`MAX_EVENTS`].
    pub events: Vec<NodeEvent>,
}

impl NodeData {
    /// Stores a status: its services as the last status, its events appended.
    pub fn report(&mut self, mut status: NodeStatus) {
        self.events.append(&mut status.events);
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
        self.status = Some(status);
    }

    /// The record an admin sees, with what `hub.toml` says of the node.
    pub fn record(&self, id: &str, entry: &NodeEntry) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            tags: entry.tags.clone(),
            revoked: entry.revoked,
            identity: self.identity.clone(),
            last_seen_ms: self.last_seen_ms,
            status: self.status.clone(),
            events: self.events.clone(),
        }
    }
}

/// Every node's data, cached in memory and written through to `nodes/<id>.json`.
#[derive(Debug)]
pub struct Records {
    dir: FleetDir,
    cache: tokio::sync::Mutex<HashMap<String, NodeData>>,
}

impl Records {
    /// The records of the fleet dir, read when first needed.
    pub fn new(dir: FleetDir) -> Self {
        Self {
            dir,
            cache: tokio::sync::Mutex::default(),
        }
    }

    /// Node `id`'s data.
    pub async fn get(&self, id: &str) -> Result<NodeData, HubApiError> {
        let mut cache = self.cache.lock().await;
        Ok(self.cached(&mut cache, id).await?.clone())
    }

    /// Changes node `id`'s data with `change` (which also sets its last contact to now) and
    /// writes it.
    pub async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut NodeData),
    ) -> Result<(), HubApiError> {
        let mut cache = self.cache.lock().await;
        let data = self.cached(&mut cache, id).await?;
        change(data);
        data.last_seen_ms = Some(busbar_base::time::unix_ms());
        let snapshot = data.clone();
        let path = self.dir.node(id);
        blocking(move || {
            files::write_json(&path, &snapshot)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })
        .await
    }

    /// The cached data of `id`, read from its file the first time.
    async fn cached<'c>(
        &self,
        cache: &'c mut HashMap<String, NodeData>,
        id: &str,
    ) -> Result<&'c mut NodeData, HubApiError> {
        if !cache.contains_key(id) {
            let path = self.dir.node(id);
            let data = blocking(move || files::read_json::<NodeData>(&path)).await?;
            cache.insert(id.into(), data.unwrap_or_default());
        }
        Ok(cache.entry(id.into()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> NodeEvent {
        NodeEvent {
            at_ms: n,
            service: "s".into(),
            kind: crate::protocol::EventKind::Swapped,
            sha256: crate::protocol::test_service("s", 'a').sha256,
            detail: String::new(),
        }
    }

    #[test]
    fn events_accumulate_up_to_the_cap() {
        let mut data = NodeData::default();
        data.report(NodeStatus {
            services: vec![],
            events: (0..900).map(event).collect(),
        });
        data.report(NodeStatus {
            services: vec![],
            events: (900..1200).map(event).collect(),
        });
        assert_eq!(data.events.len(), MAX_EVENTS);
        assert_eq!(data.events[0].at_ms, 1200 - MAX_EVENTS as u64);
        assert!(data.status.as_ref().unwrap().events.is_empty());
    }
}
