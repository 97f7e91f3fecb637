//! What each broker connection reports to `/metrics` and `/status`, written by its task and
//! read at scrape time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::com::spool::SpoolCounts;

/// The counters of one broker connection.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Whether a session with the broker is up.
    pub connected: AtomicBool,
    /// Sessions opened since start.
    pub sessions: AtomicU64,
    /// Publishes that arrived on subscribed filters.
    pub received: AtomicU64,
    /// Copies put into subscribers' mailboxes.
    pub delivered: AtomicU64,
    /// Publishes from services the broker acknowledged (at least once) or that were sent (at
    /// most once).
    pub published: AtomicU64,
    /// Publishes from services the broker refused (its ACL, a quota) or could never take
    /// (larger than its packet limit): dropped from the outbox, logged.
    pub refused: AtomicU64,
    /// Distinct filters subscribed at the broker.
    pub filters: AtomicU64,
    /// Copies a subscriber did not take (its mailbox full, or it stopped), by service.
    dropped: std::sync::Mutex<BTreeMap<String, u64>>,
    outbox: std::sync::Mutex<SpoolCounts>,
}

impl BrokerStats {
    /// Counts a copy `service` did not take.
    pub fn drop_for(&self, service: &str) {
        *busbar_base::sync::lock(&self.dropped)
            .entry(service.to_owned())
            .or_default() += 1;
    }

    /// Copies dropped, by service.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        busbar_base::sync::lock(&self.dropped).clone()
    }

    /// Records the outbox's latest counts.
    pub fn set_outbox(&self, c: SpoolCounts) {
        *busbar_base::sync::lock(&self.outbox) = c;
    }

    /// The outbox's latest counts.
    pub fn outbox(&self) -> SpoolCounts {
        *busbar_base::sync::lock(&self.outbox)
    }

    /// The counters as JSON, for `/status`.
    pub fn to_json(&self) -> serde_json::Value {
        let outbox = self.outbox();
        serde_json::json!({
            "connected": self.connected.load(Relaxed),
            "sessions": self.sessions.load(Relaxed),
            "received": self.received.load(Relaxed),
            "delivered": self.delivered.load(Relaxed),
            "published": self.published.load(Relaxed),
            "refused": self.refused.load(Relaxed),
            "filters": self.filters.load(Relaxed),
            "dropped": self.dropped(),
            "outbox_messages": outbox.pending,
            "outbox_bytes": outbox.pending_bytes,
        })
    }
}

/// Every broker connection's counters, by name.
pub type TopicsStats = BTreeMap<String, Arc<BrokerStats>>;
