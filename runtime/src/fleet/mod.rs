//! The fleet control plane as a node sees it: sign in to the hub, follow its manifest,
//! download and verify components into a local cache, apply them (hot-swapping new versions),
//! remember the last good manifest for offline starts, and report back.

mod artifacts;
mod checks;
mod client;
mod download;
mod identity;
mod report;
mod store;
mod sync;

pub use crate::config::fleet::FleetConfig;
pub use busbar_hub::{bounds, protocol, signing};
pub use client::{HubClient, HubError};
pub use identity::node_engine;
pub use store::{FleetState, Store};

use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use tokio::sync::{Notify, watch};

use crate::engine::EngineConfig;
use protocol::{NodeEvent, SignIn, SignedIn};

/// The node's side of the fleet: its hub client, cache and remembered state.
#[derive(Debug)]
pub struct Fleet {
    hub: HubClient,
    store: Store,
    key: VerifyingKey,
    /// The node's engine settings, which every entry's limits must fit.
    engine: EngineConfig,
    cap: u64,
    /// Largest artifact downloaded.
    artifact_cap: u64,
    /// This node's engine fingerprint: the artifacts it takes.
    fingerprint: busbar_base::digest::Fingerprint,
    backoff_max: Duration,
    boot_wait: Duration,
    identity: SignIn,
    state: Mutex<FleetState>,
    events: Mutex<Vec<NodeEvent>>,
    /// The hub's answer to the last sign-in.
    session: Mutex<Option<SignedIn>>,
    debug: watch::Sender<bool>,
    report_now: Notify,
}
