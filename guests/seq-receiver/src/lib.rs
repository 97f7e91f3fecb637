//! Records numbered messages and carries them across hot swaps; a test service (the
//! counterpart of `seq-sender`).
//!
//! Actions:
//! - `seq` (`{"n": n}`) → records n (a number seen before counts as a duplicate); no reply;
//! - `report` → `{"received": <distinct numbers>, "duplicates": d, "max": <largest n or null>,
//!   "missing": [<up to 20 numbers in 0..=max never seen>], "restored": <whether this
//!   instance took over a previous version's state>, "generation": <0 after a fresh start,
//!   the previous version's + 1 after a swap>}`;
//! - `ranges` → `{"ranges": [[first, last], ...]}`: every number seen, as sorted inclusive
//!   ranges.
//!
//! It exports the `stateful-service` world: on a hot swap the seen numbers (as ranges),
//! the duplicates and the generation go to the next version as JSON, e.g.
//! `{"version": 1, "generation": 0, "duplicates": 0, "ranges": [[0, 199999]]}`.

use std::collections::BTreeMap;

use busbar_guest::{Error, Message, Reply, Service, Stateful, info};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Version of the snapshot encoding.
const SNAPSHOT_VERSION: u32 = 1;
/// At most this many numbers are listed as missing in a report.
const MISSING_LIMIT: usize = 20;

#[derive(Deserialize)]
struct Seq {
    n: u64,
}

/// What one version hands to the next.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    version: u32,
    generation: u32,
    duplicates: u64,
    /// The seen numbers as sorted, disjoint inclusive ranges `[first, last]`.
    ranges: Vec<(u64, u64)>,
}

/// A set of numbers kept as disjoint inclusive ranges (first → last): numbers arriving
/// mostly in order take a handful of entries however many there are.
#[derive(Default)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Adds `n`; `false` if it was already there.
    fn insert(&mut self, n: u64) -> bool {
        let before = self
            .0
            .range(..=n)
            .next_back()
            .map(|(&first, &last)| (first, last));
        let mut first = n;
        if let Some((start, last)) = before {
            if n <= last {
                return false;
            }
            if last + 1 == n {
                first = start;
            }
        }
        let last = n
            .checked_add(1)
            .and_then(|after| self.0.remove(&after))
            .unwrap_or(n);
        self.0.insert(first, last);
        true
    }

    /// How many numbers are in the set.
    fn len(&self) -> u64 {
        self.0
            .iter()
            .map(|(first, last)| (last - first).saturating_add(1))
            .fold(0, u64::saturating_add)
    }

    /// The largest number in the set.
    fn max(&self) -> Option<u64> {
        self.0.last_key_value().map(|(_, &last)| last)
    }

    /// Up to `limit` numbers below the largest one that are not in the set, smallest first.
    fn missing(&self, limit: usize) -> Vec<u64> {
        let mut missing = Vec::new();
        let mut expected = 0u64;
        for (&first, &last) in &self.0 {
            for n in expected..first {
                if missing.len() == limit {
                    return missing;
                }
                missing.push(n);
            }
            expected = last.saturating_add(1);
        }
        missing
    }

    /// Rebuilds the set from `ranges`, which must be sorted and disjoint (touching ranges are
    /// merged).
    fn from_ranges(ranges: &[(u64, u64)]) -> Result<Ranges, String> {
        let mut set = BTreeMap::new();
        let mut previous: Option<(u64, u64)> = None;
        for (i, &(first, last)) in ranges.iter().enumerate() {
            if last < first {
                return Err(format!("range {i} [{first}, {last}] ends before it starts"));
            }
            match previous {
                Some((_, end)) if first <= end => {
                    return Err(format!(
                        "range {i} [{first}, {last}] overlaps or precedes the range before it"
                    ));
                }
                Some((start, end)) if end + 1 == first => {
                    set.insert(start, last);
                    previous = Some((start, last));
                }
                _ => {
                    set.insert(first, last);
                    previous = Some((first, last));
                }
            }
        }
        Ok(Ranges(set))
    }
}

#[derive(Default)]
struct SeqReceiver {
    seen: Ranges,
    duplicates: u64,
    restored: bool,
    generation: u32,
}

impl Service for SeqReceiver {
    fn start() -> Result<Self, String> {
        Ok(SeqReceiver::default())
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "seq" => {
                let Seq { n } = msg.json()?;
                if !self.seen.insert(n) {
                    self.duplicates += 1;
                }
                Ok(None)
            }
            "report" => Reply::json(&json!({
                "received": self.seen.len(),
                "duplicates": self.duplicates,
                "max": self.seen.max(),
                "missing": self.seen.missing(MISSING_LIMIT),
                "restored": self.restored,
                "generation": self.generation,
            }))
            .map(Some),
            "ranges" => Reply::json(&json!({
                "ranges": self.seen.0.iter().map(|(&a, &b)| [a, b]).collect::<Vec<_>>(),
            }))
            .map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

impl Stateful for SeqReceiver {
    fn snapshot(&mut self) -> Vec<u8> {
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            generation: self.generation,
            duplicates: self.duplicates,
            ranges: self
                .seen
                .0
                .iter()
                .map(|(&first, &last)| (first, last))
                .collect(),
        };
        // Plain numbers and tuples: serializing them cannot fail.
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let snapshot: Snapshot = serde_json::from_slice(state)
            .map_err(|e| format!("seq-receiver state: not the expected JSON: {e}"))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "seq-receiver state: version {} (this version reads {SNAPSHOT_VERSION})",
                snapshot.version
            ));
        }
        self.seen = Ranges::from_ranges(&snapshot.ranges)
            .map_err(|e| format!("seq-receiver state: {e}"))?;
        self.duplicates = snapshot.duplicates;
        self.generation = snapshot.generation.saturating_add(1);
        self.restored = true;
        info!(
            "restored {} numbers in {} ranges, generation {}",
            self.seen.len(),
            snapshot.ranges.len(),
            self.generation
        );
        Ok(())
    }
}

busbar_guest::export_stateful!(SeqReceiver);
