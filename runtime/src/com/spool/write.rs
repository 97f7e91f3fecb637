//! The writing side of the spool: batches appended to the open segment, rotated at
//! [`super::SEGMENT_BYTES`], kept within the quota, and cut back after a failed write.

use std::io::Write as _;

use super::frame::{self, Record};
use super::{SEGMENT_BYTES, Segment, Spool, SpoolError, SpoolFull, is_disk_full, segment_path};

impl Spool {
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

    pub(super) fn rotate(&mut self) -> std::io::Result<()> {
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
