//! What Com reports to `/metrics`: its link to the broker and its spool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    spool: [AtomicU64; 6],
}

impl ComStats {
    /// Records the spool's latest counts.
    pub fn set_spool(&self, c: SpoolCounts) {
        for (slot, v) in self.spool.iter().zip([
            c.pending,
            c.pending_bytes,
            c.refused,
            c.dropped,
            c.expired,
            c.corrupt,
        ]) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The spool's latest counts.
    pub fn spool(&self) -> SpoolCounts {
        let v = |i: usize| self.spool[i].load(Ordering::Relaxed);
        SpoolCounts {
            pending: v(0),
            pending_bytes: v(1),
            refused: v(2),
            dropped: v(3),
            expired: v(4),
            corrupt: v(5),
        }
    }
}
