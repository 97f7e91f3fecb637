//! Manifest layers: what is published to every node, to a tag, to one node; how a node's
//! manifest is made of them, and its ETag.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest as _, Sha256};

use super::config::NodeEntry;
use super::files::FleetDir;
use crate::protocol::{FleetManifest, FleetService, NodeSettings};

/// One published manifest layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Every node (`manifests/all.json`).
    All,
    /// Nodes with a tag (`manifests/tag-<tag>.json`).
    Tag(String),
    /// One node (`manifests/node-<id>.json`).
    Node(String),
}

impl Layer {
    /// The layers a publish to `nodes` and `tags` names: theirs, or [`Layer::All`].
    pub fn targets(nodes: &[String], tags: &[String]) -> Vec<Layer> {
        if nodes.is_empty() && tags.is_empty() {
            return vec![Layer::All];
        }
        let mut layers: Vec<Layer> = tags
            .iter()
            .map(|t| Layer::Tag(t.clone()))
            .chain(nodes.iter().map(|n| Layer::Node(n.clone())))
            .collect();
        layers.sort();
        layers.dedup();
        layers
    }

    /// The file stem under `manifests/`.
    pub fn stem(&self) -> String {
        match self {
            Layer::All => "all".into(),
            Layer::Tag(t) => format!("tag-{t}"),
            Layer::Node(n) => format!("node-{n}"),
        }
    }

    /// The layer of a file stem under `manifests/`.
    pub fn from_stem(stem: &str) -> Option<Layer> {
        if stem == "all" {
            Some(Layer::All)
        } else if let Some(t) = stem.strip_prefix("tag-") {
            Some(Layer::Tag(t.into()))
        } else {
            stem.strip_prefix("node-").map(|n| Layer::Node(n.into()))
        }
    }
}

impl fmt::Display for Layer {
    /// `all`, `tag:<tag>` or `node:<id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::All => f.write_str("all"),
            Layer::Tag(t) => write!(f, "tag:{t}"),
            Layer::Node(n) => write!(f, "node:{n}"),
        }
    }
}

/// Every published layer, with its services.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layers {
    layers: BTreeMap<Layer, Vec<FleetService>>,
}

impl Layers {
    /// Reads every `manifests/*.json` of the fleet dir.
    pub fn load(dir: &FleetDir) -> anyhow::Result<Self> {
        let mut layers = Layers::default();
        let entries = std::fs::read_dir(dir.manifests())
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.manifests().display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Some(layer) = Layer::from_stem(stem) else {
                tracing::warn!(file = %path.display(), "not a manifest layer (all, tag-*, node-*): ignored");
                continue;
            };
            let services = super::files::read_json(&path)?.unwrap_or_default();
            layers.layers.insert(layer, services);
        }
        Ok(layers)
    }

    /// Every layer with its services.
    pub fn iter(&self) -> impl Iterator<Item = (&Layer, &[FleetService])> {
        self.layers.iter().map(|(l, s)| (l, s.as_slice()))
    }

    /// The services of one layer.
    pub fn services(&self, layer: &Layer) -> &[FleetService] {
        self.layers.get(layer).map_or(&[], Vec::as_slice)
    }

    /// Puts `service` into `layer`, replacing a service of the same name in place.
    pub fn upsert(&mut self, layer: Layer, service: FleetService) {
        let services = self.layers.entry(layer).or_default();
        match services.iter_mut().find(|s| s.name == service.name) {
            Some(old) => *old = service,
            None => services.push(service),
        }
    }

    /// Takes service `name` out of `layer`; whether it was there.
    pub fn remove(&mut self, layer: &Layer, name: &str) -> bool {
        let Some(services) = self.layers.get_mut(layer) else {
            return false;
        };
        let before = services.len();
        services.retain(|s| s.name != name);
        services.len() != before
    }

    /// The manifest of node `id`: `all`, then each of its tags (sorted), then its own layer,
    /// merged by service name, with its settings.
    pub fn node_manifest(&self, id: &str, node: &NodeEntry) -> FleetManifest {
        let mut tags = node.tags.clone();
        tags.sort();
        tags.dedup();
        let order = std::iter::once(Layer::All)
            .chain(tags.into_iter().map(Layer::Tag))
            .chain(std::iter::once(Layer::Node(id.into())));
        let layers: Vec<&[FleetService]> = order.map(|l| self.services(&l)).collect();
        FleetManifest {
            services: merge(&layers),
            settings: NodeSettings { debug: node.debug },
        }
    }
}

/// Merges layers by service name: a later layer replaces an earlier service of the same
/// name, which keeps the position of its first occurrence.
pub fn merge(layers: &[&[FleetService]]) -> Vec<FleetService> {
    let mut merged: Vec<FleetService> = Vec::new();
    for service in layers.iter().flat_map(|l| l.iter()) {
        match merged.iter_mut().find(|s| s.name == service.name) {
            Some(old) => *old = service.clone(),
            None => merged.push(service.clone()),
        }
    }
    merged
}

/// The ETag of a manifest: the first 32 hex digits of the sha256 of its JSON, quoted.
pub fn etag(manifest: &FleetManifest) -> String {
    let json = serde_json::to_vec(manifest).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(&json));
    format!("\"{}\"", &digest[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_service as service;

    #[test]
    fn later_layers_replace_by_name_keeping_the_first_position() {
        let all = [service("a", '1'), service("b", '1'), service("c", '1')];
        let tag = [service("b", '2'), service("d", '2')];
        let node = [service("a", '3')];
        let merged = merge(&[&all, &tag, &node]);
        let got: Vec<(&str, char)> = merged
            .iter()
            .map(|s| (s.name.as_str(), s.sha256.as_str().chars().next().unwrap()))
            .collect();
        assert_eq!(got, [("a", '3'), ("b", '2'), ("c", '1'), ("d", '2')]);
    }

    #[test]
    fn a_node_gets_all_then_its_sorted_tags_then_its_own() {
        let mut layers = Layers::default();
        layers.upsert(Layer::All, service("x", '0'));
        layers.upsert(Layer::Tag("b".into()), service("x", 'b'));
        layers.upsert(Layer::Tag("a".into()), service("x", 'a'));
        layers.upsert(Layer::Tag("a".into()), service("y", 'a'));
        layers.upsert(Layer::Node("other".into()), service("y", 'f'));
        let node = NodeEntry {
            tags: vec!["b".into(), "a".into()],
            ..NodeEntry::default()
        };
        let m = layers.node_manifest("gw1", &node);
        assert_eq!(m.services[0].sha256.as_str(), "b".repeat(64));
        assert_eq!(m.services[1].sha256.as_str(), "a".repeat(64));
        assert!(!m.settings.debug);

        let before = etag(&m);
        assert_eq!(before.len(), 34);
        assert!(before.starts_with('"') && before.ends_with('"'));
        assert_eq!(before, etag(&layers.node_manifest("gw1", &node)));
        let debug = NodeEntry {
            debug: true,
            ..node.clone()
        };
        assert_ne!(before, etag(&layers.node_manifest("gw1", &debug)));
        layers.upsert(Layer::Node("gw1".into()), service("y", 'c'));
        assert_ne!(before, etag(&layers.node_manifest("gw1", &node)));
        assert!(layers.remove(&Layer::Node("gw1".into()), "y"));
        assert!(!layers.remove(&Layer::Node("gw1".into()), "y"));
        assert_eq!(before, etag(&layers.node_manifest("gw1", &node)));
    }

    #[test]
    fn layers_are_named_and_targeted() {
        assert_eq!(Layer::targets(&[], &[]), [Layer::All]);
        let t = Layer::targets(&["gw1".into()], &["lab".into(), "lab".into()]);
        assert_eq!(
            t.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["tag:lab", "node:gw1"]
        );
        assert_eq!(Layer::from_stem(&t[0].stem()), Some(t[0].clone()));
        assert_eq!(Layer::from_stem("junk"), None);
    }
}
