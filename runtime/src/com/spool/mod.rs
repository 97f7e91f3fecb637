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

mod frame;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

pub use frame::Record;

/// Segment files are rotated past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// A segment holding at least this much, all delivered, is replaced by an empty one.
const RECYCLE_BYTES: u64 = 1 << 20;
const ACKED_FILE: &str = "acked";
const EXTENSION: &str = "spool";

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
    /// Bytes of the segment read so far (the start of the next frame).
    offset: u64,
    /// The sequence number of the last intact frame read.
    last_seq: Option<u64>,
    /// Where unreadable bytes with nothing intact after them were last found (segment,
    /// offset, the segment's length then): not searched again until the segment grows.
    stuck_at: Option<(usize, u64, u64)>,
}

impl Cursor {
    fn open(segment: usize, path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            segment,
            file: BufReader::new(File::open(path)?),
            offset: 0,
            last_seq: None,
            stuck_at: None,
        })
    }
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

    /// Writes `records` (one write for the batch), assigning sequence numbers; each gets its
    /// own outcome. Syncs before returning when `sync_ms = 0`. A failed write is cut back
    /// off the segment and its records refused (nothing of them stays, nothing is counted).
    pub fn append(&mut self, records: &[Record]) -> Vec<Result<u64, SpoolError>> {
        let expires =
            busbar_base::time::unix_ms().saturating_add(self.config.ttl.as_millis() as u64);
        let mut out = Vec::with_capacity(records.len());
        let mut batch = Batch::default();
        let mut frame = Vec::new();
        for record in records {
            frame.clear();
            let len = frame::encode(&mut frame, self.next_seq, expires, record) as u64;
            let room = self
                .make_room(len, &mut batch)
                .and_then(|()| self.rotate_if_full(len, &mut batch));
            match room {
                Ok(()) => {}
                Err(SpoolError::Full { .. }) => {
                    self.counts.refused += 1;
                    out.push(Err(self.full_error()));
                    continue;
                }
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            }
            batch.buf.extend_from_slice(&frame);
            batch.records.push((out.len(), len));
            out.push(Ok(self.next_seq));
            self.next_seq += 1;
        }
        if let Err(e) = self.write_batch(&mut batch) {
            for &(i, _) in &batch.records {
                let refused = std::mem::replace(&mut out[i], Err(self.write_error(&e)));
                // Their numbers are taken again, unless some of their bytes stayed on disk:
                // then they are passed (never counted, never to be waited for).
                if batch.torn_kept
                    && let Ok(seq) = refused
                {
                    self.pass(seq);
                }
            }
            if !batch.torn_kept {
                self.next_seq -= batch.records.len() as u64;
            }
        }
        if self.config.sync_ms == 0
            && let Err(e) = self.sync()
        {
            tracing::error!(error = %e, "Com spool: fdatasync failed");
        }
        out
    }

    fn full_error(&self) -> SpoolError {
        SpoolError::Full {
            pending_bytes: self.counts.pending_bytes,
            max_bytes: self.config.max_bytes,
        }
    }

    fn write_error(&mut self, e: &std::io::Error) -> SpoolError {
        if is_disk_full(e) {
            self.disk_full = true;
            SpoolError::DiskFull {
                dir: self.dir.display().to_string(),
            }
        } else {
            SpoolError::Io(std::io::Error::new(e.kind(), e.to_string()))
        }
    }

    /// Starts a new segment when `len` more bytes would overflow the current one.
    fn rotate_if_full(&mut self, len: u64, batch: &mut Batch) -> Result<(), SpoolError> {
        let used = self.writer_bytes + batch.buf.len() as u64;
        if used == 0 || used + len <= SEGMENT_BYTES {
            return Ok(());
        }
        self.write_batch(batch).map_err(|e| self.write_error(&e))?;
        self.rotate().map_err(|e| self.write_error(&e))
    }

    /// Writes and empties `batch`, counting its records as pending once they are on disk.
    /// On failure the bytes written of it are cut off again (so nothing partial stays before
    /// later records) and the batch is left as it was.
    fn write_batch(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        if batch.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.writer.write_all(&batch.buf) {
            if let Err(cut) = self.writer.set_len(self.writer_bytes) {
                // Left as they are, the partial bytes are stepped over by resynchronisation;
                // writing goes on after them with new sequence numbers.
                tracing::error!(error = %cut, "Com spool: cannot cut a failed write back off");
                let path = &self.segments.back().expect("a segment").path;
                self.writer_bytes = std::fs::metadata(path).map_or(self.writer_bytes, |m| m.len());
                batch.torn_kept = true;
            }
            return Err(e);
        }
        self.writer_bytes += batch.buf.len() as u64;
        self.unsynced = true;
        self.counts.pending += batch.records.len() as u64;
        self.counts.pending_bytes += batch.records.iter().map(|r| r.1).sum::<u64>();
        batch.buf.clear();
        batch.records.clear();
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync_writer()?;
        let path = segment_path(&self.dir, self.next_seq);
        self.writer = (self.opener)(&path)?;
        self.writer_bytes = 0;
        self.segments.push_back(Segment {
            first_seq: self.next_seq,
            path,
        });
        Ok(())
    }

    /// Frees room for `len` more bytes according to the policy (writing the batch first, so
    /// the oldest of it can be dropped too).
    fn make_room(&mut self, len: u64, batch: &mut Batch) -> Result<(), SpoolError> {
        let waiting: u64 = batch.records.iter().map(|r| r.1).sum();
        let full =
            |s: &Self, waiting: u64| s.counts.pending_bytes + waiting + len > s.config.max_bytes;
        if !full(self, waiting) {
            return Ok(());
        }
        // A record larger than the whole quota is refused without emptying the queue for it.
        if self.config.on_full == SpoolFull::DropOldest && len <= self.config.max_bytes {
            self.write_batch(batch).map_err(|e| self.write_error(&e))?;
            let full = |s: &Self| full(s, 0);
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
        Err(self.full_error())
    }

    /// The next record to send, in order; expired and unreadable ones are skipped (and
    /// counted). `None` when every record has been handed out.
    pub fn next_record(&mut self) -> std::io::Result<Option<(u64, Record)>> {
        loop {
            let Some(f) = self.read_frame()? else {
                return Ok(None);
            };
            if f.expires_ms <= busbar_base::time::unix_ms() {
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

    /// The next intact frame, moving to the next segment at the end of one. Damage in a
    /// segment costs the frames it hit: reading resumes at the next intact frame.
    fn read_frame_raw(&mut self) -> std::io::Result<Option<frame::Frame>> {
        loop {
            match frame::read(&mut self.cursor.file)? {
                frame::Next::Frame(f) => {
                    self.cursor.offset += f.len;
                    self.cursor.last_seq = Some(f.seq);
                    return Ok(Some(f));
                }
                frame::Next::Torn(torn) => {
                    if self.resync(&torn)? {
                        continue;
                    }
                    if self.cursor.segment + 1 == self.segments.len() {
                        // Nothing intact after it yet: what is appended later is found then.
                        self.cursor
                            .file
                            .seek(std::io::SeekFrom::Start(self.cursor.offset))?;
                        return Ok(None);
                    }
                    // The rest of a sealed segment: its records up to the next segment's.
                    let next_first = self.segments[self.cursor.segment + 1].first_seq;
                    let end = std::fs::metadata(&self.segments[self.cursor.segment].path)
                        .map_or(self.cursor.offset, |m| m.len());
                    let from = self.next_expected();
                    self.skip_lost(from, next_first, end.saturating_sub(self.cursor.offset));
                }
                frame::Next::End => {}
            }
            if self.cursor.segment + 1 >= self.segments.len() {
                return Ok(None);
            }
            let next = self.cursor.segment + 1;
            self.cursor = Cursor::open(next, &self.segments[next].path)?;
        }
    }

    /// The sequence number the next frame at the cursor should have.
    fn next_expected(&self) -> u64 {
        self.cursor
            .last_seq
            .map_or(self.segments[self.cursor.segment].first_seq, |s| s + 1)
    }

    /// After a damaged frame at the cursor: finds the next intact one in the segment and
    /// moves there, counting and logging the records skipped. False when there is none (yet:
    /// the same bytes are not searched again until the segment grows).
    fn resync(&mut self, torn: &frame::Torn) -> std::io::Result<bool> {
        use std::io::{Read as _, Seek as _};
        let segment = &self.segments[self.cursor.segment];
        let len = std::fs::metadata(&segment.path)?.len();
        let here = (self.cursor.segment, self.cursor.offset, len);
        if self.cursor.stuck_at == Some(here) {
            return Ok(false);
        }
        let mut rest = Vec::new();
        let mut file = File::open(&segment.path)?;
        file.seek(std::io::SeekFrom::Start(self.cursor.offset))?;
        file.read_to_end(&mut rest)?;
        let expected = self.next_expected();
        let Some((at, seq)) = frame::resync(&rest, expected, torn.len) else {
            self.cursor.stuck_at = Some(here);
            tracing::error!(segment = %segment.path.display(), offset = self.cursor.offset, why = %torn,
                "Com spool: unreadable bytes with no intact record after them");
            return Ok(false);
        };
        tracing::error!(segment = %segment.path.display(), offset = self.cursor.offset, why = %torn,
            "Com spool: damaged record(s); resuming at the next intact one");
        self.skip_lost(expected, seq, at as u64);
        self.cursor.offset += at as u64;
        self.cursor.stuck_at = None;
        self.cursor
            .file
            .seek(std::io::SeekFrom::Start(self.cursor.offset))?;
        Ok(true)
    }

    /// Records `from..to` (`bytes` on disk) were lost to damage while running: counted,
    /// logged, passed, and taken off the gauges. Those already known lost at `open` (passed
    /// then, never counted as pending) are left alone.
    fn skip_lost(&mut self, from: u64, to: u64, bytes: u64) {
        if to <= from {
            return;
        }
        let mut counted = 0;
        for seq in from..to {
            if seq >= self.first_unacked
                && !self.retired.contains(&seq)
                && !self.in_flight.contains_key(&seq)
            {
                counted += 1;
                self.pass(seq);
            }
        }
        if counted == 0 {
            return;
        }
        tracing::error!(
            first_seq = from,
            last_seq = to - 1,
            lost = counted,
            "Com spool: records lost to storage damage"
        );
        self.counts.corrupt += counted;
        self.counts.pending = self.counts.pending.saturating_sub(counted);
        self.counts.pending_bytes = self.counts.pending_bytes.saturating_sub(bytes);
    }
}

/// The file a segment is appended to: a real file, or in tests a double that fails like a
/// full disk (after writing part of what it was given).
pub(crate) trait SegmentFile: std::io::Write + Send + std::fmt::Debug {
    /// Cuts the file to `len` bytes.
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> std::io::Result<()>;
}

impl SegmentFile for File {
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }
}

/// Opens (creating) a segment for appending.
type Opener = fn(&Path) -> std::io::Result<Box<dyn SegmentFile>>;

fn open_for_append(path: &Path) -> std::io::Result<Box<dyn SegmentFile>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(path)?,
    ))
}

/// Bytes of a batch not yet written, and which of the batch's records they hold (their index
/// in the batch's outcomes, and their length).
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    records: Vec<(usize, u64)>,
    /// A failed write could not be cut back off: the numbers it used are not taken again.
    torn_kept: bool,
}

/// The acknowledged position in `path`; 0 (deliver everything again) when there is none.
/// An unreadable file is moved aside (`acked.bad`) and logged.
fn read_acked(path: &Path) -> u64 {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e,
                "Com spool: cannot read the acked position; delivering the whole spool again");
            return 0;
        }
    };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|t| {
        let mut words = t.split_whitespace();
        let digits = words.next()?;
        match words.next() {
            // Checked: what this version writes.
            Some(crc) => (u32::from_str_radix(crc, 16).ok()? == crc32fast::hash(digits.as_bytes())
                && words.next().is_none())
            .then(|| digits.parse::<u64>().ok())
            .flatten(),
            // Digits alone: what earlier versions wrote.
            None => digits.parse::<u64>().ok(),
        }
    });
    parsed.unwrap_or_else(|| {
        let aside = path.with_extension("bad");
        let moved = std::fs::rename(path, &aside);
        tracing::error!(file = %path.display(), moved_to = %aside.display(), moved = moved.is_ok(),
            "Com spool: unreadable acked position; delivering the whole spool again (duplicates, no loss)");
        0
    })
}

/// What [`scan`] found in a segment.
struct Scanned {
    /// The end of its last intact frame.
    good_len: u64,
    file_len: u64,
    last_seq: Option<u64>,
    /// Intact records at or above `first_unacked`, and their bytes.
    pending: u64,
    bytes: u64,
    /// Ranges of sequence numbers lost to damage inside it.
    lost: Vec<(u64, u64)>,
}

/// Reads a segment at `open`, resynchronising past damaged frames. In the last segment a
/// frame the file ends inside is a crash's torn tail (cut by the caller), never searched
/// past; in a sealed one, what cannot be read up to the end costs the records up to
/// `next_first`.
fn scan(
    path: &Path,
    first_seq: u64,
    first_unacked: u64,
    next_first: Option<u64>,
) -> anyhow::Result<Scanned> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading spool segment {}", path.display()))?;
    let mut found = Scanned {
        good_len: 0,
        file_len: bytes.len() as u64,
        last_seq: None,
        pending: 0,
        bytes: 0,
        lost: Vec::new(),
    };
    let mut at = 0usize;
    loop {
        let mut r = bytes.get(at..).unwrap_or_default();
        let expected = found.last_seq.map_or(first_seq, |s| s + 1);
        match frame::read(&mut r)? {
            frame::Next::Frame(f) => {
                at += f.len as usize;
                found.good_len = at as u64;
                found.last_seq = Some(f.seq);
                if f.seq >= first_unacked {
                    found.pending += 1;
                    found.bytes += f.len;
                }
            }
            frame::Next::End => break,
            frame::Next::Torn(torn) if torn.cut && next_first.is_none() => break,
            frame::Next::Torn(torn) => {
                let rest = bytes.get(at..).unwrap_or_default();
                match frame::resync(rest, expected, torn.len) {
                    Some((skip, seq)) => {
                        if seq > expected {
                            found.lost.push((expected, seq - 1));
                        }
                        at += skip;
                    }
                    None => {
                        if let Some(next) = next_first.filter(|n| *n > expected) {
                            found.lost.push((expected, next - 1));
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
