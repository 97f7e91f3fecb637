//! One custom service: its lifecycle state, counters, the wasm instance that runs it, and the
//! supervising task that feeds it its mailbox and restarts it after a fault.

mod actor;
mod instance;
mod spec;
mod supervisor;

use std::sync::Arc;

pub use actor::{Handover, Spawned, spawn};
pub use instance::{Fault, Instance};
pub use spec::{PROBATION, ServiceSpec, Successor};
pub use supervisor::{Decision, RestartPolicy, Supervisor};

pub use crate::observe::{CounterSnapshot, ServiceCounters};

/// What the node hands every service it runs: the way to its code, the bus, and the node's
/// dead letters and desired state.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// Loads (and caches) components.
    pub loader: crate::component::Loader,
    /// Where its messages go.
    pub bus: crate::bus::Bus,
    /// Where messages it took but could not finish go.
    pub dead_letters: Arc<crate::dead_letter::DeadLetters>,
    /// What the hub asks of the node, handed to `state-update`.
    pub desired: Arc<crate::desired::DesiredState>,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Reading and compiling its component.
    Loading,
    /// Instantiated, `start` running.
    Starting,
    /// Processing its mailbox.
    Running,
    /// Waiting out the backoff after a fault before starting again.
    Restarting,
    /// Finishing queued messages and running `stop`.
    Stopping,
    /// Done, cleanly.
    Stopped,
    /// Gave up: the component did not load, or it faulted too often. Messages to it fail with
    /// `unavailable`.
    Failed,
}

impl State {
    /// The state's name as reports show it, e.g. `running`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Loading => "loading",
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's state and the reason for its last fault, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The lifecycle state.
    pub state: State,
    /// How many times it was restarted after a fault.
    pub restarts: u32,
    /// The last fault, in words.
    pub last_fault: Option<String>,
    /// The sha256 of the component it runs, once loaded: its version.
    pub sha256: Option<String>,
    /// Where its compiled code came from, once loaded: `precompiled` (an artifact),
    /// `compiled` (on this node) or `cached` (compiled here before).
    pub code: Option<&'static str>,
    /// How long the last hot swap to this version held messages up, in µs: from the old
    /// version's last message to this one being ready.
    pub swap_pause_us: Option<u64>,
    /// Set when this version failed and the service went back to the one it replaced.
    pub rolled_back: Option<Rollback>,
}

/// A new version that failed, after which the service runs its previous version again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rollback {
    /// The version that failed.
    pub sha256: Option<String>,
    /// Why.
    pub reason: String,
}

impl Status {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Loading,
            restarts: 0,
            last_fault: None,
            sha256: None,
            code: None,
            swap_pause_us: None,
            rolled_back: None,
        }
    }
}
