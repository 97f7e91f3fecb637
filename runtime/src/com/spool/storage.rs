//! The spool's files: segments opened for appending (behind a trait a test double can make
//! fail like a full disk), the acknowledged position, and the scan that recovers a segment at
//! start.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;

use super::frame;

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
pub(super) type Opener = fn(&Path) -> std::io::Result<Box<dyn SegmentFile>>;

pub(super) fn open_for_append(path: &Path) -> std::io::Result<Box<dyn SegmentFile>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(path)?,
    ))
}

/// The acknowledged position in `path`; 0 (deliver everything again) when there is none.
/// An unreadable file is moved aside (`acked.bad`) and logged.
pub(super) fn read_acked(path: &Path) -> u64 {
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
pub(super) struct Scanned {
    /// The end of its last intact frame.
    pub(super) good_len: u64,
    pub(super) file_len: u64,
    pub(super) last_seq: Option<u64>,
    /// Intact records at or above `first_unacked`, and their bytes.
    pub(super) pending: u64,
    pub(super) bytes: u64,
    /// Ranges of sequence numbers lost to damage inside it.
    pub(super) lost: Vec<(u64, u64)>,
}

/// Reads a segment at `open`, resynchronising past damaged frames. In the last segment a
/// frame the file ends inside is a crash's torn tail (cut by the caller), never searched
/// past; in a sealed one, what cannot be read up to the end costs the records up to
/// `next_first`.
pub(super) fn scan(
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
