//! The in-flight window of a connection that publishes spooled records at QoS 1: records
//! published on the current session and acknowledged in order, sent again after a loss.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::Record;

/// The in-flight window: spooled records published on the current session and not yet
/// acknowledged, at most `limit` of them, published and acknowledged in order.
#[derive(Debug)]
pub struct Window {
    /// Records in flight at most (`com.in_flight`).
    pub limit: usize,
    /// Publishes requested on this session, waiting for rumqttc to number them: the spool
    /// sequence number of each (None for publishes outside the spool).
    pub sent: VecDeque<Option<u64>>,
    /// Packet id → spool sequence number, until the broker acknowledges.
    pub pkids: HashMap<u16, u64>,
    /// Records taken from the spool and not yet acknowledged, by sequence number.
    pub in_flight: BTreeMap<u64, Record>,
    /// In flight but not published on the current session (sent again, in order).
    pub unsent: BTreeSet<u64>,
}

impl Window {
    /// An empty window of `limit` records.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            in_flight: BTreeMap::new(),
            unsent: BTreeSet::new(),
        }
    }
}

impl Window {
    /// A session began or ended: what was in flight is sent again, in order, on the next.
    pub fn restart(&mut self) {
        self.sent.clear();
        self.pkids.clear();
        self.unsent.extend(self.in_flight.keys().copied());
    }

    /// rumqttc numbered the next publish requested on this session with `pkid`.
    pub fn numbered(&mut self, pkid: u16) {
        if let Some(Some(seq)) = self.sent.pop_front() {
            self.pkids.insert(pkid, seq);
        }
    }

    /// The broker acknowledged `pkid`: the spool sequence number it retires, if it was a
    /// spooled record.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<u64> {
        let seq = self.pkids.remove(&pkid)?;
        self.in_flight.remove(&seq);
        Some(seq)
    }
}
