//! The reading side of the spool: records handed out in sequence order, past expired and
//! damaged ones.

use std::fs::File;
use std::io::{BufReader, Seek as _};
use std::path::Path;

use super::Spool;
use super::frame::{self, Record};

/// Where the reader is.
#[derive(Debug)]
pub(super) struct Cursor {
    /// Index into `segments` (shifted when segments are deleted).
    pub(super) segment: usize,
    pub(super) file: BufReader<File>,
    /// Bytes of the segment read so far (the start of the next frame).
    pub(super) offset: u64,
    /// The sequence number of the last intact frame read.
    pub(super) last_seq: Option<u64>,
    /// Where unreadable bytes with nothing intact after them were last found (segment,
    /// offset, the segment's length then): not searched again until the segment grows.
    pub(super) stuck_at: Option<(usize, u64, u64)>,
}

impl Cursor {
    pub(super) fn open(segment: usize, path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            segment,
            file: BufReader::new(File::open(path)?),
            offset: 0,
            last_seq: None,
            stuck_at: None,
        })
    }
}

impl Spool {
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

    pub(super) fn read_frame(&mut self) -> std::io::Result<Option<frame::Frame>> {
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
