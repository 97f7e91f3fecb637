//! What a node and the fleet hub say to each other over HTTP(S), and how components are
//! signed. Both sides use these types; the hub serves them (`busbar hub serve`), the node's
//! fleet client reads them.
//!
//! Node endpoints (header `Authorization: Bearer <node token>`):
//! - `POST /v1/sign-in`, body [`SignIn`] → [`SignedIn`]
//! - `GET /v1/manifest?wait=SECONDS` with `If-None-Match: "<etag>"` → `200` [`FleetManifest`]
//!   with an `ETag` header, or `304` when it has not changed within `wait` (long poll)
//! - `GET /v1/blobs/{sha256}`, optionally `Range: bytes=N-` → `200`/`206` the component or
//!   precompiled artifact with that sha256
//! - `POST /v1/status`, body [`NodeStatus`] → `204` (also the heartbeat)
//! - `POST /v1/logs`, body [`LogBatch`] → `204`
//!
//! Admin endpoints (header `Authorization: Bearer <admin token>`):
//! - `PUT /v1/admin/blobs/{sha256}`, body the component, header `x-busbar-signature` → `201`
//! - `PUT /v1/admin/artifacts/{sha256}?component=SHA&target=TRIPLE&fingerprint=FP`, body the
//!   precompiled artifact, header `x-busbar-signature` (see [`Artifact`]) → `201`
//! - `POST /v1/admin/engines`, body [`Targets`] → [`Engines`]: the engines the nodes a
//!   publish reaches have announced
//! - `POST /v1/admin/publish`, body [`Publish`] → [`Published`]
//! - `POST /v1/admin/remove`, body [`Remove`] → [`Published`] (the manifests it changed)
//! - `GET /v1/admin/nodes` → `[NodeRecord]`
//! - `GET /v1/admin/nodes/{node}/logs` → the node's forwarded log lines, as text
//!
//! Errors are `{"error": "<what is wrong>"}` with a 4xx/5xx status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use busbar_base::digest::{Fingerprint, Sha256};
use busbar_base::grants::Grants;
use busbar_base::limits::Limits;

/// Header carrying a component's signature on upload.
pub const SIGNATURE_HEADER: &str = "x-busbar-signature";

/// Who a node is, sent at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// The node id of its config; must be the node the token belongs to.
    pub node_id: String,
    /// The machine's host name.
    pub hostname: String,
    /// The node's target triple, e.g. `aarch64-unknown-linux-gnu` (for precompiled
    /// artifacts).
    pub target: String,
    /// busbar's version on the node.
    pub runtime_version: String,
    /// MAC addresses of the node's network interfaces.
    #[serde(default)]
    pub macs: Vec<String>,
    /// Its wasm engine: what a publisher compiles artifacts for (older nodes send none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<NodeEngine>,
}

/// A node's wasm engine, as it announces it at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeEngine {
    /// busbar's fingerprint of the engine: its wasmtime version, compilation target and the
    /// settings below. An artifact is used only by engines with its fingerprint.
    pub fingerprint: Fingerprint,
    /// `[engine] max_memory_mib` of the node config.
    pub max_memory_mib: u32,
    /// `[engine] consume_fuel`.
    pub consume_fuel: bool,
    /// `[engine] pooling`.
    pub pooling: bool,
    /// Whether the node can compile a component itself (`false`: the gateway build, which
    /// runs only precompiled artifacts).
    pub compiler: bool,
}

/// A component compiled ahead of time for one node target and engine, by the publisher:
/// listed in a [`FleetService`], downloaded from `/v1/blobs/{sha256}` by the nodes it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The node target triple it runs on, e.g. `aarch64-unknown-linux-gnu`.
    pub target: String,
    /// The engine fingerprint it was compiled for ([`NodeEngine::fingerprint`]).
    pub fingerprint: Fingerprint,
    /// sha256 of the artifact file.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
    /// ed25519 signature (hex) by the publisher over the artifact's sha256 and size, the
    /// component's sha256, the target and the fingerprint ([`artifact_message`]).
    pub signature: String,
}

/// The nodes a publish reaches: named nodes, nodes with a tag, or (neither) every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Node ids.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The engines of the nodes a publish reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engines {
    /// One entry per distinct target and engine, with the nodes that run it.
    pub engines: Vec<EngineGroup>,
    /// Nodes that have not announced an engine (never signed in, or an older busbar).
    pub unknown: Vec<String>,
}

/// Nodes with one target and engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineGroup {
    /// Their target triple.
    pub target: String,
    /// Their engine.
    pub engine: NodeEngine,
    /// Their ids.
    pub nodes: Vec<String>,
}

/// The hub's answer to a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    /// The node id the hub knows the token by.
    pub node_id: String,
    /// How often the node should send its status, in seconds.
    pub heartbeat_s: u64,
    /// How long the hub holds a manifest request open, in seconds.
    pub long_poll_s: u64,
}

/// What one node must run, as the hub serves it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetManifest {
    /// The services, in start order.
    #[serde(default)]
    pub services: Vec<FleetService>,
    /// Settings for the node.
    #[serde(default)]
    pub settings: NodeSettings,
}

/// Hub-side settings of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Forward the node's log lines to the hub.
    pub debug: bool,
}

/// One service of a fleet manifest: a component version and how to run it, signed whole by
/// the publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetService {
    /// Name on the bus.
    pub name: String,
    /// sha256 of the component: where to download it (`/v1/blobs/{sha256}`).
    pub sha256: Sha256,
    /// Size of the component in bytes.
    pub size: u64,
    /// ed25519 signature (hex) of the whole entry, see [`entry_message`]: a hub cannot change
    /// the version, its config, limits, grants or whether it runs.
    pub signature: String,
    /// Whether the node runs it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Configuration the service reads with `get-property`.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// Capabilities beyond the sandbox.
    #[serde(default)]
    pub grants: Grants,
    /// MQTT subscriptions made before the service starts. Left out when empty (old
    /// signatures hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<busbar_base::grants::Subscription>,
    /// The group it is shared in across the fabric (`{name}@{group}` reaches one instance).
    /// Left out when none (old signatures hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<busbar_base::address::Place>,
    /// The component compiled ahead of time for node targets and engines, each signed on
    /// its own (not part of the entry's signature, so a version can gain artifacts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

impl FleetService {
    /// The artifact for a node of `target` whose engine has `fingerprint`, if listed.
    pub fn artifact_for(&self, target: &str, fingerprint: &Fingerprint) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.target == target && &a.fingerprint == fingerprint)
    }
}

fn yes() -> bool {
    true
}

/// A node's report to the hub: what it runs, and what happened since the last report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Every service with the version it runs.
    pub services: Vec<ServiceStatus>,
    /// Events since the last report (rollbacks, refused versions, swaps).
    #[serde(default)]
    pub events: Vec<NodeEvent>,
}

/// One service as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// The component version it runs now.
    pub sha256: Option<Sha256>,
    /// Its lifecycle state, e.g. `running`.
    pub state: String,
    /// Restarts after faults.
    pub restarts: u32,
    /// Messages it processed since the node started (absent from nodes before 0.1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed: Option<u64>,
}

/// Something a node reports once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The service concerned.
    pub service: String,
    /// What happened.
    pub kind: EventKind,
    /// The version concerned.
    pub sha256: Sha256,
    /// What happened, in words.
    pub detail: String,
}

/// What a [`NodeEvent`] says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A new version replaced the running one.
    Swapped,
    /// A new version failed and the previous one runs again.
    RolledBack,
    /// A version (or its entry) was not accepted; the service kept what it ran.
    Refused,
}

impl EventKind {
    /// The name the protocol uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Swapped => "swapped",
            EventKind::RolledBack => "rolled-back",
            EventKind::Refused => "refused",
        }
    }

    /// Whether an operator should look at it.
    pub fn is_trouble(self) -> bool {
        !matches!(self, EventKind::Swapped)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log lines a node forwards while debug is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The lines, oldest first.
    pub lines: Vec<String>,
}

/// An admin's request to run a component version on some nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The service, with its (already uploaded) component version.
    pub service: FleetService,
    /// Nodes whose own manifest gets it.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tags whose manifest gets it (nodes carry tags); with no nodes and no tags: every node.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An admin's request to stop running a service on some nodes: it is taken out of the
/// named manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// The service's name.
    pub service: String,
    /// Nodes whose own manifest loses it.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tags whose manifest loses it; with no nodes and no tags: the manifest of every node.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What a publish (or a removal) changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The manifests updated, e.g. `all`, `tag:lab`, `node:gw1`.
    pub manifests: Vec<String>,
}

/// What the hub knows about one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub node_id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether its token is revoked.
    pub revoked: bool,
    /// What it said at its last sign-in.
    pub identity: Option<SignIn>,
    /// Its last sign-in, status or log batch, in ms since the Unix epoch.
    pub last_seen_ms: Option<u64>,
    /// Its last status.
    pub status: Option<NodeStatus>,
    /// Every event it reported, oldest first.
    pub events: Vec<NodeEvent>,
}

pub use super::signing::{
    artifact_message, entry_message, parse_public_key, parse_secret_key, sign, sign_artifact,
    sign_entry, signed_message, verify, verify_artifact, verify_entry,
};

/// A service entry for tests: `name` at a version whose sha256 is `sha` repeated.
#[doc(hidden)]
pub fn test_service(name: &str, sha: char) -> FleetService {
    FleetService {
        name: name.into(),
        sha256: Sha256::parse(&sha.to_string().repeat(64)).expect("hex"),
        size: 1,
        signature: String::new(),
        enabled: true,
        config: BTreeMap::new(),
        limits: Default::default(),
        grants: Default::default(),
        subscribe: Vec::new(),
        shared: None,
        artifacts: Vec::new(),
    }
}
