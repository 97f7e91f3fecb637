//! What the fabric reports to `/metrics` and `/status`: requests to and from other nodes,
//! and round trips by the node that answered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Remote places tracked one by one; past that they count as `other`.
const MAX_PEERS: usize = 1_024;

/// The fabric's counters.
#[derive(Debug, Default)]
pub struct FabricStats {
    /// Requests from other nodes handled here.
    pub served: AtomicU64,
    /// Requests from other nodes seen before (sent again), not delivered twice.
    pub duplicates: AtomicU64,
    /// Requests from other nodes answered `queue-full` (`max_inbound` at work).
    pub busy: AtomicU64,
    /// Messages for other nodes waiting for word that they were processed.
    pub outbox: AtomicU64,
    /// Calls waiting for their reply.
    pub calls_waiting: AtomicU64,
    peers: Mutex<BTreeMap<String, Peer>>,
}

/// What this node did with one other node (or group).
#[derive(Debug, Clone)]
pub struct Peer {
    /// Round trips of calls and sends the node answered, in seconds.
    pub round_trips: Histogram,
    /// Requests sent (calls and sends, first attempts).
    pub sent: u64,
    /// Sends sent again (no word in `resend_ms`, or the service was busy).
    pub resent: u64,
    /// Requests that failed: no such node or group, timed out, or refused there.
    pub failed: u64,
}

impl Default for Peer {
    fn default() -> Self {
        Self {
            // 100 µs .. 26 s
            round_trips: Histogram::new(exponential_buckets(1e-4, 4.0, 10)),
            sent: 0,
            resent: 0,
            failed: 0,
        }
    }
}

impl FabricStats {
    fn with(&self, place: &str, f: impl FnOnce(&mut Peer)) {
        let mut peers = busbar_base::sync::lock(&self.peers);
        let key = if peers.contains_key(place) || peers.len() < MAX_PEERS {
            place
        } else {
            "other"
        };
        f(peers.entry(key.to_owned()).or_default());
    }

    /// A request went to `place` for the first time.
    pub fn sent(&self, place: &str) {
        self.with(place, |p| p.sent += 1);
    }

    /// A send went to `place` again.
    pub fn resent(&self, place: &str) {
        self.with(place, |p| p.resent += 1);
    }

    /// A request to `place` failed.
    pub fn failed(&self, place: &str) {
        self.with(place, |p| p.failed += 1);
    }

    /// `node` answered a request after `seconds`.
    pub fn answered(&self, node: &str, seconds: f64) {
        self.with(node, |p| p.round_trips.observe(seconds));
    }

    /// Every peer's figures, by name.
    pub fn peers(&self) -> BTreeMap<String, Peer> {
        busbar_base::sync::lock(&self.peers).clone()
    }

    /// The figures as JSON, for `/status`.
    pub fn to_json(&self) -> serde_json::Value {
        let peers: serde_json::Map<String, serde_json::Value> = self
            .peers()
            .into_iter()
            .map(|(name, p)| {
                let v =
                    serde_json::json!({ "sent": p.sent, "resent": p.resent, "failed": p.failed });
                (name, v)
            })
            .collect();
        serde_json::json!({
            "served": self.served.load(Relaxed),
            "duplicates": self.duplicates.load(Relaxed),
            "busy": self.busy.load(Relaxed),
            "outbox": self.outbox.load(Relaxed),
            "calls_waiting": self.calls_waiting.load(Relaxed),
            "peers": peers,
        })
    }
}
