//! What Com reports to `/metrics`: its link to the broker and its spool.

use std::sync::atomic::{AtomicBool, AtomicU64};

use super::spool::SpoolCounts;

/// Com's gauges and counters, written by Com, read at scrape time.
#[derive(Debug, Default)]
pub struct ComStats {
    /// Whether Com talks to a broker at all (`mqtt` or `azure-iot-hub`).
    pub broker: AtomicBool,
    /// Whether a session with the broker is up.
    pub connected: AtomicBool,
    /// Sessions opened since start.
    pub sessions: AtomicU64,
    /// Messages the broker acknowledged.
    pub delivered: AtomicU64,
    spool: std::sync::Mutex<SpoolCounts>,
}

impl ComStats {
    /// Records the spool's latest counts.
    pub fn set_spool(&self, c: SpoolCounts) {
        *busbar_base::sync::lock(&self.spool) = c;
    }

    /// The spool's latest counts.
    pub fn spool(&self) -> SpoolCounts {
        *busbar_base::sync::lock(&self.spool)
    }
}
