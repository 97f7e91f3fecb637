//! The durable store-and-forward spool: every message towards the hub is written here before
//! Com accepts it, and leaves only once the broker has acknowledged it.
//!
//! Records go to append-only segment files (`{first seq}.spool`, rotated at
//! [`SEGMENT_BYTES`]) in sequence order; a reader hands them out in the same order; `ack`
//! retires them, and a segment whose records are all retired is deleted. The first
//! unacknowledged sequence number is written to `acked` now and then, so after a crash the
//! spool resumes from there: what had been sent but not yet recorded as acknowledged is sent
//! again. Duplicates happen across a crash or a lost session (QoS 1), each with its message id.
//!
//! Storage faults: a frame that is corrupt (a flipped bit, zeros over it) costs that record
//! only — reading resynchronises on the next intact frame, and the lost sequence numbers
//! are logged and counted (`corrupt`). A write that fails (a full disk) is cut back off the
//! segment so nothing partial stays before later records, and the batch is refused with
//! [`SpoolError::DiskFull`]; everything accepted before stays, and writes work again when
//! space returns. The acknowledged position is overwritten in place in a file of fixed size,
//! so recording it needs no free space, and delivered segments are deleted whether or not it
//! could be written (a stale position costs duplicates, never loss). An unreadable `acked`
//! file is moved aside and the spool is delivered again from its segments.
//!
//! Durability: a record is written (`write(2)`) before Com accepts it, so it survives the
//! process being killed; `fdatasync` runs before accepting when `sync_ms = 0`, else at most
//! `sync_ms` later (the window a power cut could lose). A byte quota bounds the spool; when it
//! is full, [`SpoolFull::Refuse`] refuses new messages and [`SpoolFull::DropOldest`] drops the
//! oldest ones not in flight. Records older than the TTL are dropped when their turn comes.

mod config;
mod frame;
mod read;
mod storage;
mod window;
mod write;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use config::{SpoolConfig, SpoolCounts, SpoolError, SpoolFull, is_disk_full};
pub use frame::Record;
pub use window::Window;

use read::Cursor;
use storage::{Opener, SegmentFile, open_for_append, read_acked, scan};

/// Segment files are rotated past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// A segment holding at least this much, all delivered, is replaced by an empty one.
const RECYCLE_BYTES: u64 = 1 << 20;
const ACKED_FILE: &str = "acked";
const EXTENSION: &str = "spool";

/// A segment file.
#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// The spool. One owner (Com's task); every call is synchronous file I/O on small batches.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segments: VecDeque<Segment>,
    writer: Box<dyn SegmentFile>,
    writer_bytes: u64,
    /// Opens a segment for appending (a test double can make it fail).
    opener: Opener,
    next_seq: u64,
    cursor: Cursor,
    /// Every sequence number below it is acknowledged, dropped or expired.
    first_unacked: u64,
    /// Handed out by `next` and not acknowledged yet: seq → frame length.
    in_flight: BTreeMap<u64, u64>,
    /// Retired out of order (above `first_unacked`).
    retired: BTreeSet<u64>,
    acked_written: u64,
    /// `acked`, kept open and overwritten in place (None until it could be created).
    acked_file: Option<File>,
    /// A write failed for lack of space since the last fresh segment.
    disk_full: bool,
    unsynced: bool,
    counts: SpoolCounts,
    /// `sync_logged` failures in a row.
    sync_failures: u64,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{EXTENSION}"))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run left: torn
    /// tails are cut, acknowledged segments deleted, the rest is delivered first.
    pub fn open(dir: &Path, config: SpoolConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the Com spool folder {}", dir.display()))?;
        let acked = read_acked(&dir.join(ACKED_FILE));
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Some(first) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();
        // Nothing below the oldest segment is waiting (a stale or lost `acked` file must not
        // hold the position below records that were already delivered and deleted).
        let first_unacked = acked.max(firsts.first().copied().unwrap_or(0));
        let mut counts = SpoolCounts::default();
        let mut segments = VecDeque::new();
        let mut next_seq = first_unacked.max(firsts.last().copied().unwrap_or(0));
        let mut last_len = 0;
        let mut lost = BTreeSet::new();
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            let last = i + 1 == firsts.len();
            let found = scan(&path, first, first_unacked, firsts.get(i + 1).copied())?;
            if let Some(s) = found.last_seq {
                next_seq = next_seq.max(s + 1);
            }
            for (from, to) in &found.lost {
                tracing::error!(file = %path.display(), lost = to - from + 1, first_seq = from, last_seq = to,
                    "Com spool: corrupt records skipped; the intact ones around them are kept");
                counts.corrupt += to - from + 1;
                lost.extend((*from..=*to).filter(|s| *s >= first_unacked));
            }
            if last && found.good_len < found.file_len {
                tracing::warn!(
                    file = %path.display(), kept = found.good_len, cut = found.file_len - found.good_len,
                    "Com spool: cutting a torn tail (a crash or a failed write)"
                );
                counts.corrupt += 1;
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(found.good_len)?;
            }
            let (pending, bytes, good_len) = (found.pending, found.bytes, found.good_len);
            if pending == 0 && !last {
                std::fs::remove_file(&path)?;
                continue;
            }
            counts.pending += pending;
            counts.pending_bytes += bytes;
            last_len = good_len;
            segments.push_back(Segment {
                first_seq: first,
                path,
            });
        }
        if segments.is_empty() {
            let path = segment_path(dir, next_seq);
            File::create(&path)?;
            segments.push_back(Segment {
                first_seq: next_seq,
                path,
            });
            last_len = 0;
        }
        let opener: Opener = open_for_append;
        let writer = opener(&segments.back().expect("one segment").path)?;
        let cursor = Cursor::open(0, &segments[0].path)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            config,
            segments,
            writer,
            writer_bytes: last_len,
            opener,
            next_seq,
            cursor,
            first_unacked,
            in_flight: BTreeMap::new(),
            retired: BTreeSet::new(),
            acked_written: first_unacked,
            acked_file: None,
            sync_failures: 0,
            disk_full: false,
            unsynced: false,
            counts,
        };
        // Records lost to corruption are passed, so the acknowledged position moves on.
        for seq in lost {
            spool.pass(seq);
        }
        // `acked` gets its bytes now, while there may be space: later it is overwritten in
        // place. Failing (a full disk) is retried at every sync.
        spool.acked_written = u64::MAX;
        if let Err(e) = spool.write_acked() {
            tracing::error!(dir = %dir.display(), error = %e,
                "Com spool: cannot write the acked position yet; trying again at every sync");
        }
        if spool.counts.pending > 0 {
            tracing::info!(
                pending = spool.counts.pending,
                bytes = spool.counts.pending_bytes,
                "Com spool: messages from the last run wait for the hub"
            );
        }
        Ok(spool)
    }

    /// The broker acknowledged `seq`.
    pub fn ack(&mut self, seq: u64) {
        if let Some(len) = self.in_flight.remove(&seq) {
            self.retire(seq, len);
        }
    }

    /// How long a record may wait before it is dropped.
    pub fn ttl(&self) -> std::time::Duration {
        self.config.ttl
    }

    /// Counters and depth.
    pub fn counts(&self) -> SpoolCounts {
        self.counts
    }

    /// [`Spool::sync`] on its owner's timer: a failure is logged (at the 1st, 2nd, 4th, ...
    /// in a row, naming `owner`), and so is the first success after failures.
    pub fn sync_logged(&mut self, owner: &str) {
        match self.sync() {
            Ok(()) if self.sync_failures > 0 => {
                tracing::info!(
                    spool = owner,
                    failures = self.sync_failures,
                    "spool sync works again"
                );
                self.sync_failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.sync_failures += 1;
                if self.sync_failures.is_power_of_two() {
                    tracing::error!(spool = owner, error = %e, failures = self.sync_failures, "spool sync failed");
                }
            }
        }
    }

    /// Whether writes are waiting for `fdatasync`.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// `fdatasync`s the segment being written, deletes delivered segments and records the
    /// acknowledged position. Deleting needs no free space and happens whatever else fails.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Err(e) = self.recycle() {
            tracing::debug!(error = %e, "Com spool: cannot start a fresh segment yet");
        }
        let deleted = self.delete_retired_segments();
        let synced = self.sync_writer();
        deleted.and(synced).and(self.write_acked())
    }

    /// `fdatasync`s the segment being written, if it has unsynced writes.
    fn sync_writer(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.writer.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Overwrites the acknowledged position in place: 20 digits, a space, their crc32 in 8 hex
    /// digits and a newline, the same size every time, so it needs no new space once the
    /// file exists; a torn overwrite fails its checksum instead of reading as another number.
    fn write_acked(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        if self.acked_written == self.first_unacked {
            return Ok(());
        }
        if self.acked_file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.dir.join(ACKED_FILE))?;
            self.acked_file = Some(file);
        }
        let file = self.acked_file.as_ref().expect("opened above");
        let digits = format!("{:020}", self.first_unacked);
        let line = format!("{digits} {:08x}\n", crc32fast::hash(digits.as_bytes()));
        file.write_all_at(line.as_bytes(), 0)?;
        file.sync_data()?;
        self.acked_written = self.first_unacked;
        Ok(())
    }

    fn retire(&mut self, seq: u64, len: u64) {
        self.counts.pending = self.counts.pending.saturating_sub(1);
        self.counts.pending_bytes = self.counts.pending_bytes.saturating_sub(len);
        self.pass(seq);
    }

    /// Marks `seq` as done without counting it: a record lost to corruption.
    fn pass(&mut self, seq: u64) {
        if seq < self.first_unacked {
            return;
        }
        if seq != self.first_unacked {
            self.retired.insert(seq);
            return;
        }
        self.first_unacked += 1;
        while self.retired.remove(&self.first_unacked) {
            self.first_unacked += 1;
        }
    }

    /// When every record is delivered and the segment being written holds a lot (or the disk
    /// filled up), moves writing and reading to a fresh, empty segment so the old one can be
    /// deleted: a spool that is all delivered gives its space back, even with one segment.
    fn recycle(&mut self) -> std::io::Result<()> {
        let all_done = self.first_unacked == self.next_seq && self.in_flight.is_empty();
        if !all_done
            || self.writer_bytes == 0
            || !(self.disk_full || self.writer_bytes >= RECYCLE_BYTES)
        {
            return Ok(());
        }
        self.rotate()?;
        let last = self.segments.len() - 1;
        self.cursor = Cursor::open(last, &self.segments[last].path)?;
        self.disk_full = false;
        Ok(())
    }

    /// Deletes segments whose every record is retired (delivered, dropped or lost).
    fn delete_retired_segments(&mut self) -> std::io::Result<()> {
        while self.segments.len() > 1
            && self.segments[1].first_seq <= self.first_unacked
            && self.cursor.segment > 0
        {
            let gone = self.segments.pop_front().expect("two segments");
            self.cursor.segment -= 1;
            std::fs::remove_file(&gone.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
