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
//! Durability: a record is written (`write(2)`) before Com accepts it, so it survives the
//! process being killed; `fdatasync` runs before accepting when `sync_ms = 0`, else at most
//! `sync_ms` later (the window a power cut could lose). A byte quota bounds the spool; when it
//! is full, [`OnFull::Refuse`] refuses new messages and [`OnFull::DropOldest`] drops the
//! oldest ones not in flight. Records older than the TTL are dropped when their turn comes.

mod frame;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

pub use frame::Record;

/// Segment files are rotated past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
const ACKED_FILE: &str = "acked";
const EXTENSION: &str = "spool";

/// What to do with a new message when the spool is at its byte quota.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnFull {
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
    pub on_full: OnFull,
    /// Longest time between a write and its `fdatasync`, in ms; 0 syncs before accepting.
    pub sync_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(7 * 24 * 3600),
            on_full: OnFull::Refuse,
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
    /// The disk failed.
    #[error("the Com spool could not write: {0}")]
    Io(#[from] std::io::Error),
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

/// A segment file.
#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// Where the reader is.
#[derive(Debug)]
struct Cursor {
    /// Index into `segments` (shifted when segments are deleted).
    segment: usize,
    file: BufReader<File>,
}

/// The spool. One owner (Com's task); every call is synchronous file I/O on small batches.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segments: VecDeque<Segment>,
    writer: File,
    writer_bytes: u64,
    next_seq: u64,
    cursor: Cursor,
    /// Every sequence number below it is acknowledged, dropped or expired.
    first_unacked: u64,
    /// Handed out by `next` and not acknowledged yet: seq → frame length.
    in_flight: BTreeMap<u64, u64>,
    /// Retired out of order (above `first_unacked`).
    retired: BTreeSet<u64>,
    acked_written: u64,
    unsynced: bool,
    counts: SpoolCounts,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
        let first_unacked = match std::fs::read_to_string(dir.join(ACKED_FILE)) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
                // A cut `acked` file (power loss) costs duplicates, never the node's start.
                tracing::warn!(
                    file = %dir.join(ACKED_FILE).display(),
                    "Com spool: unreadable acked position; delivering the whole spool again"
                );
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context("reading the spool's acked file"),
        };
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
        let mut counts = SpoolCounts::default();
        let mut segments = VecDeque::new();
        let mut next_seq = first_unacked;
        let mut last_len = 0;
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            let last = i + 1 == firsts.len();
            let (good_len, last_seq, pending, bytes) = scan(&path, first_unacked, &mut counts)?;
            if let Some(s) = last_seq {
                next_seq = next_seq.max(s + 1);
            }
            let file_len = std::fs::metadata(&path)?.len();
            if good_len < file_len {
                tracing::warn!(
                    file = %path.display(), kept = good_len, cut = file_len - good_len,
                    "Com spool: cutting a torn tail (a crash during a write)"
                );
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(good_len)?;
            }
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
        let writer = OpenOptions::new()
            .append(true)
            .open(&segments.back().expect("one segment").path)?;
        let file = BufReader::new(File::open(&segments[0].path)?);
        let spool = Spool {
            dir: dir.to_owned(),
            config,
            segments,
            writer,
            writer_bytes: last_len,
            next_seq,
            cursor: Cursor { segment: 0, file },
            first_unacked,
            in_flight: BTreeMap::new(),
            retired: BTreeSet::new(),
            acked_written: first_unacked,
            unsynced: false,
            counts,
        };
        if spool.counts.pending > 0 {
            tracing::info!(
                pending = spool.counts.pending,
                bytes = spool.counts.pending_bytes,
                "Com spool: messages from the last run wait for the hub"
            );
        }
        Ok(spool)
    }

    /// Writes `records` (one write for the batch), assigning sequence numbers; each gets its
    /// own outcome. Syncs before returning when `sync_ms = 0`.
    pub fn append(&mut self, records: &[Record]) -> Vec<Result<u64, SpoolError>> {
        let expires = now_ms().saturating_add(self.config.ttl.as_millis() as u64);
        let mut out = Vec::with_capacity(records.len());
        let mut buf = Vec::new();
        let mut frame = Vec::new();
        for record in records {
            frame.clear();
            let len = frame::encode(&mut frame, self.next_seq, expires, record) as u64;
            let written = self
                .make_room(len, &mut buf)
                .and_then(|()| self.rotate_if_full(len, &mut buf).map_err(SpoolError::from));
            if let Err(e) = written {
                if matches!(e, SpoolError::Full { .. }) {
                    self.counts.refused += 1;
                }
                out.push(Err(e));
                continue;
            }
            buf.extend_from_slice(&frame);
            out.push(Ok(self.next_seq));
            self.next_seq += 1;
            self.counts.pending += 1;
            self.counts.pending_bytes += len;
        }
        if let Err(e) = self.write_buf(&mut buf) {
            tracing::error!(error = %e, "Com spool: write failed");
            // Nothing of this batch is accepted; records written before a rotation in it
            // stay on disk and are delivered (the senders get an error: a duplicate at worst).
            return out
                .into_iter()
                .map(|r| {
                    r.and_then(|_| {
                        Err(SpoolError::Io(std::io::Error::new(e.kind(), e.to_string())))
                    })
                })
                .collect();
        }
        if self.config.sync_ms == 0
            && let Err(e) = self.sync()
        {
            tracing::error!(error = %e, "Com spool: fdatasync failed");
        }
        out
    }

    /// Starts a new segment when `len` more bytes would overflow the current one.
    fn rotate_if_full(&mut self, len: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let used = self.writer_bytes + buf.len() as u64;
        if used == 0 || used + len <= SEGMENT_BYTES {
            return Ok(());
        }
        self.write_buf(buf)?;
        self.rotate()
    }

    /// Writes and empties `buf`.
    fn write_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.writer.write_all(buf)?;
        self.writer_bytes += buf.len() as u64;
        self.unsynced = true;
        buf.clear();
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let path = segment_path(&self.dir, self.next_seq);
        self.writer = OpenOptions::new().create(true).append(true).open(&path)?;
        self.writer_bytes = 0;
        self.segments.push_back(Segment {
            first_seq: self.next_seq,
            path,
        });
        Ok(())
    }

    /// Frees room for `len` more bytes according to the policy (writing `buf` first, so
    /// the oldest of this batch can be dropped too).
    fn make_room(&mut self, len: u64, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        let full = |s: &Self| s.counts.pending_bytes + len > s.config.max_bytes;
        if !full(self) {
            return Ok(());
        }
        // A record larger than the whole quota is refused without emptying the queue for it.
        if self.config.on_full == OnFull::DropOldest && len <= self.config.max_bytes {
            self.write_buf(buf)?;
            while full(self) {
                match self.read_frame() {
                    Ok(Some(f)) => {
                        self.counts.dropped += 1;
                        self.retire(f.seq, f.len);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            if !full(self) {
                return Ok(());
            }
        }
        Err(SpoolError::Full {
            pending_bytes: self.counts.pending_bytes,
            max_bytes: self.config.max_bytes,
        })
    }

    /// The next record to send, in order; expired and unreadable ones are skipped (and
    /// counted). `None` when every record has been handed out.
    pub fn next_record(&mut self) -> std::io::Result<Option<(u64, Record)>> {
        loop {
            let Some(f) = self.read_frame()? else {
                return Ok(None);
            };
            if f.expires_ms <= now_ms() {
                self.counts.expired += 1;
                self.retire(f.seq, f.len);
                continue;
            }
            match f.record() {
                Ok(r) => {
                    self.in_flight.insert(f.seq, f.len);
                    return Ok(Some((f.seq, r)));
                }
                Err(e) => {
                    tracing::error!(seq = f.seq, error = %e, "Com spool: unreadable record skipped");
                    self.counts.corrupt += 1;
                    self.retire(f.seq, f.len);
                }
            }
        }
    }

    /// The broker acknowledged `seq`.
    pub fn ack(&mut self, seq: u64) {
        if let Some(len) = self.in_flight.remove(&seq) {
            self.retire(seq, len);
        }
    }

    /// Counters and depth.
    pub fn counts(&self) -> SpoolCounts {
        self.counts
    }

    /// Whether writes are waiting for `fdatasync`.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// `fdatasync`s the segment being written and records the acknowledged position.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.writer.sync_data()?;
            self.unsynced = false;
        }
        self.write_acked()
    }

    fn write_acked(&mut self) -> std::io::Result<()> {
        if self.acked_written == self.first_unacked {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{ACKED_FILE}.tmp"));
        std::fs::write(&tmp, self.first_unacked.to_string())?;
        std::fs::rename(&tmp, self.dir.join(ACKED_FILE))?;
        self.acked_written = self.first_unacked;
        self.delete_retired_segments()
    }

    fn retire(&mut self, seq: u64, len: u64) {
        self.counts.pending = self.counts.pending.saturating_sub(1);
        self.counts.pending_bytes = self.counts.pending_bytes.saturating_sub(len);
        if seq != self.first_unacked {
            self.retired.insert(seq);
            return;
        }
        self.first_unacked += 1;
        while self.retired.remove(&self.first_unacked) {
            self.first_unacked += 1;
        }
    }

    /// Deletes segments whose every record is retired and whose retirement is on disk.
    fn delete_retired_segments(&mut self) -> std::io::Result<()> {
        while self.segments.len() > 1
            && self.segments[1].first_seq <= self.acked_written
            && self.cursor.segment > 0
        {
            let gone = self.segments.pop_front().expect("two segments");
            self.cursor.segment -= 1;
            std::fs::remove_file(&gone.path)?;
        }
        Ok(())
    }

    fn read_frame(&mut self) -> std::io::Result<Option<frame::Frame>> {
        loop {
            let Some(f) = self.read_frame_raw()? else {
                return Ok(None);
            };
            if f.seq >= self.first_unacked && !self.retired.contains(&f.seq) {
                return Ok(Some(f));
            }
        }
    }

    /// The next intact frame, moving to the next segment at the end of one.
    fn read_frame_raw(&mut self) -> std::io::Result<Option<frame::Frame>> {
        loop {
            match frame::read(&mut self.cursor.file)? {
                frame::Next::Frame(f) => return Ok(Some(f)),
                frame::Next::Torn(why) if self.cursor.segment + 1 == self.segments.len() => {
                    // Only the writer's own segment can end mid-frame after `open`; a torn
                    // frame there means the reader got ahead of nothing. Treat as the end.
                    tracing::error!(%why, "Com spool: unreadable data in the current segment");
                    return Ok(None);
                }
                frame::Next::Torn(why) => {
                    tracing::error!(
                        segment = %self.segments[self.cursor.segment].path.display(), %why,
                        "Com spool: rest of a segment unreadable; moving on"
                    );
                    self.counts.corrupt += 1;
                }
                frame::Next::End => {}
            }
            if self.cursor.segment + 1 >= self.segments.len() {
                return Ok(None);
            }
            self.cursor.segment += 1;
            self.cursor.file =
                BufReader::new(File::open(&self.segments[self.cursor.segment].path)?);
        }
    }
}

/// Reads a segment at `open`: the length of its intact part, its last sequence number, and
/// how many records (and bytes) at or above `first_unacked` it holds.
fn scan(
    path: &Path,
    first_unacked: u64,
    counts: &mut SpoolCounts,
) -> anyhow::Result<(u64, Option<u64>, u64, u64)> {
    let mut r = BufReader::new(
        File::open(path).with_context(|| format!("opening spool segment {}", path.display()))?,
    );
    let (mut good, mut last, mut pending, mut bytes) = (0, None, 0, 0);
    loop {
        match frame::read(&mut r)? {
            frame::Next::Frame(f) => {
                good += f.len;
                last = Some(f.seq);
                if f.seq >= first_unacked {
                    pending += 1;
                    bytes += f.len;
                }
            }
            frame::Next::End => break,
            frame::Next::Torn(_) => {
                counts.corrupt += 1;
                break;
            }
        }
    }
    Ok((good, last, pending, bytes))
}

#[cfg(test)]
mod tests;
