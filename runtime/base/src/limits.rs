//! A service's sandbox limits as a manifest (or a fleet entry) states them, and the range each
//! may take. How a node applies them lives with the node (`busbar::engine`, `busbar::bus`).

use serde::{Deserialize, Serialize};

/// Per-service limits; every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest linear memory in MiB (default: the engine's `max_memory_mib`).
    pub memory_mib: Option<u32>,
    /// Deadline of each export call in ms (time spent waiting on other services not counted).
    pub deadline_ms: u64,
    /// Messages the mailbox holds.
    pub mailbox: usize,
    /// When the mailbox is full: `block` (senders wait up to `block_ms`) or `refuse`.
    pub on_full: FullPolicy,
    /// How long a sender waits for room with `on_full = "block"`, in ms.
    pub block_ms: u64,
    /// Messages per second it may submit (`submit-message`, `submit-action`, `call`), with
    /// bursts of as many; beyond that each submit waits its turn. 0: no quota.
    pub submit_per_sec: u32,
    /// Fuel (roughly, wasm instructions) each export call may burn; needs
    /// `engine.consume_fuel = true`. None: only the deadline bounds a call.
    pub fuel: Option<u64>,
    /// Core wasm instances its component may create (a componentize-py service needs 13).
    pub instances: usize,
    /// Elements each of its tables may hold.
    pub table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: None,
            deadline_ms: 1000,
            mailbox: 64,
            on_full: FullPolicy::Block,
            block_ms: 1000,
            submit_per_sec: 10_000,
            fuel: None,
            instances: 32,
            table_elements: 20_000,
        }
    }
}

/// What senders experience when a mailbox is full.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// Wait for room (backpressure).
    Block,
    /// Fail at once with `queue-full`.
    Refuse,
}

/// The range each limit may take; outside it a manifest is refused (by `busbar check`, `run`,
/// SIGHUP, the hub's publish and the node's fleet client alike), naming the field.
pub const LIMIT_RANGES: &[(&str, u64, u64)] = &[
    ("memory_mib", 1, 4096),
    ("deadline_ms", 1, 3_600_000),
    ("mailbox", 1, 100_000),
    ("block_ms", 0, 3_600_000),
    ("submit_per_sec", 0, 10_000_000),
    ("fuel", 1, u64::MAX),
    ("instances", 1, 10_000),
    ("table_elements", 1, 10_000_000),
];

impl Limits {
    /// Checks every limit against [`LIMIT_RANGES`]; the error starts with the field's name,
    /// e.g. `mailbox: 2305843009213693952 is out of range (1 to 100000)`.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            ("memory_mib", self.memory_mib.map(u64::from)),
            ("deadline_ms", Some(self.deadline_ms)),
            ("mailbox", Some(self.mailbox as u64)),
            ("block_ms", Some(self.block_ms)),
            ("submit_per_sec", Some(u64::from(self.submit_per_sec))),
            ("fuel", self.fuel),
            ("instances", Some(self.instances as u64)),
            ("table_elements", Some(self.table_elements as u64)),
        ];
        for (field, value) in values {
            let Some(v) = value else { continue };
            let Some(&(_, min, max)) = LIMIT_RANGES.iter().find(|(f, ..)| *f == field) else {
                continue;
            };
            if !(min..=max).contains(&v) {
                return Err(format!("{field}: {v} is out of range ({min} to {max})"));
            }
        }
        Ok(())
    }
}
