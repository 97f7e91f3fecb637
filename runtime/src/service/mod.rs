//! One custom service: its lifecycle state, counters, the wasm instance that runs it, and the
//! supervising task that feeds it its mailbox and restarts it after a fault.

mod actor;
mod instance;
mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use actor::{Handover, PROBATION, ServiceSpec, Spawned, Successor, spawn};
pub use instance::{Fault, Instance};
pub use supervisor::{Decision, RestartPolicy, Supervisor};

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
            swap_pause_us: None,
            rolled_back: None,
        }
    }
}

/// Counters of one service, updated without locks on the hot path.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    processed: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    refused: AtomicU64,
    tracked: AtomicU64,
    thrown: AtomicU64,
    dead_lettered: AtomicU64,
    throttled: AtomicU64,
}

/// A copy of a service's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    /// Messages `process` handled (successfully or with an error result).
    pub processed: u64,
    /// Messages whose processing failed (error result, trap or deadline).
    pub failed: u64,
    /// Messages the service sent that the bus accepted.
    pub sent: u64,
    /// Messages the service tried to send that the bus refused.
    pub refused: u64,
    /// `track` events.
    pub tracked: u64,
    /// `throw-error` faults.
    pub thrown: u64,
    /// Messages it took but could not finish (see [`crate::dead_letter`]).
    pub dead_lettered: u64,
    /// Submits that had to wait for its quota.
    pub throttled: u64,
}

impl ServiceCounters {
    pub(crate) fn record_processed(&self, ok: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_sent(&self, accepted: bool) {
        let c = if accepted { &self.sent } else { &self.refused };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_tracked(&self) {
        self.tracked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_thrown(&self) {
        self.thrown.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            processed: get(&self.processed),
            failed: get(&self.failed),
            sent: get(&self.sent),
            refused: get(&self.refused),
            tracked: get(&self.tracked),
            thrown: get(&self.thrown),
            dead_lettered: get(&self.dead_lettered),
            throttled: get(&self.throttled),
        }
    }
}
