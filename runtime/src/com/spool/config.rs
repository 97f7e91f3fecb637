//! `[com.spool]` of the node config, what the spool refuses with, and what it counts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What to do with a new message when the spool is at its byte quota.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SpoolFull {
    /// Refuse it: the submitting service gets `queue-full`.
    #[default]
    Refuse,
    /// Accept it and drop the oldest messages not yet sent.
    DropOldest,
}

/// `[com.spool]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Where the segments live (default `{data_dir}/spool`).
    pub dir: Option<PathBuf>,
    /// Byte quota of messages waiting to be delivered.
    pub max_bytes: u64,
    /// How long a message may wait before it is dropped, e.g. `"7d"`.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Policy when the quota is reached.
    pub on_full: SpoolFull,
    /// Longest time between a write and its `fdatasync`, in ms; 0 syncs before accepting.
    pub sync_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(7 * 24 * 3600),
            on_full: SpoolFull::Refuse,
            sync_ms: 20,
        }
    }
}

/// Why the spool did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// At the byte quota with the `refuse` policy (or nothing left to drop).
    #[error(
        "the Com spool is full ({pending_bytes} of {max_bytes} bytes waiting for the hub); \
         the message was refused (spool.on_full = \"refuse\")"
    )]
    Full {
        /// Bytes waiting.
        pending_bytes: u64,
        /// The quota.
        max_bytes: u64,
    },
    /// The disk is full: nothing of the message was kept.
    #[error(
        "the Com spool's disk is full ({dir}); the message was refused — everything accepted \
         before is kept, and messages are taken again once there is space"
    )]
    DiskFull {
        /// The spool's folder.
        dir: String,
    },
    /// The disk failed.
    #[error("the Com spool could not write: {0}")]
    Io(#[from] std::io::Error),
}

impl SpoolError {
    /// What the sender of a message a service's outbox did not take is told: `whose` names
    /// the outbox (``broker `field`'s outbox``), `raise` the setting that bounds it.
    pub fn to_bus(&self, whose: &str, raise: &str) -> crate::message::BusError {
        use crate::message::{BusError, ErrorCode};
        match self {
            SpoolError::Full {
                pending_bytes,
                max_bytes,
            } => BusError::new(
                ErrorCode::QueueFull,
                format!(
                    "{whose} is full ({pending_bytes} of {max_bytes} bytes not yet delivered); \
                     raise {raise}"
                ),
            ),
            SpoolError::DiskFull { dir } => BusError::new(
                ErrorCode::QueueFull,
                format!("{whose} in {dir} cannot be written: the disk is full"),
            ),
            SpoolError::Io(io) => {
                BusError::new(ErrorCode::Other, format!("{whose} cannot be written: {io}"))
            }
        }
    }
}

/// Whether `e` says the disk (or the quota of the filesystem) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Counters of what the spool did, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolCounts {
    /// Messages waiting (not yet acknowledged by the broker).
    pub pending: u64,
    /// Their bytes on disk.
    pub pending_bytes: u64,
    /// Refused because the spool was full.
    pub refused: u64,
    /// Dropped to make room (`drop-oldest`).
    pub dropped: u64,
    /// Dropped because they outlived the TTL.
    pub expired: u64,
    /// Unreadable records skipped (torn by a crash or corrupt).
    pub corrupt: u64,
}
