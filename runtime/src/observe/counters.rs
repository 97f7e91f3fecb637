//! The counters of one service: written by its task and its host imports without locks,
//! read by reports and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Messages it took but could not finish (see `busbar::dead_letter`).
    pub dead_lettered: u64,
    /// Submits that had to wait for its quota.
    pub throttled: u64,
}

impl ServiceCounters {
    /// One message processed, `ok` or not.
    pub(crate) fn record_processed(&self, ok: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One message sent, accepted by the bus or not.
    pub(crate) fn record_sent(&self, accepted: bool) {
        let c = if accepted { &self.sent } else { &self.refused };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One `track` event.
    pub(crate) fn record_tracked(&self) {
        self.tracked.fetch_add(1, Ordering::Relaxed);
    }

    /// One message dead-lettered.
    pub(crate) fn record_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// One submit that waited for its quota.
    pub(crate) fn record_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// One `throw-error` fault.
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
