//! One record on disk: `len: u32 LE | crc32: u32 LE | seq: u64 LE | expires_ms: u64 LE | body`,
//! where `len` counts everything after the crc and the crc covers the same bytes. A frame
//! cut short by a crash, or whose crc does not match, ends the readable part of its file.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

/// Largest frame the spool reads back (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 64 << 20;

/// A message on its way to the hub, as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The message id the node gave it.
    pub id: String,
    /// The service that submitted it.
    pub source: String,
    /// MIME type of the payload.
    pub content_type: String,
    /// Message properties.
    pub headers: Vec<(String, String)>,
    /// The body (a CBOR byte string, not an array of numbers).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// When Com accepted it (ms since the Unix epoch).
    pub accepted_ms: u64,
    /// The MQTT topic it goes to, for a broker connection's outbox (Com derives its topic
    /// from its dialect). Left out when none, so older spools read back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Whether the broker keeps it as the topic's last value (outbox only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain: bool,
}

/// Appends the frame of `record` to `out`; returns the frame's length.
pub fn encode(out: &mut Vec<u8>, seq: u64, expires_ms: u64, record: &Record) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    ciborium::into_writer(record, &mut *out).expect("writing CBOR to a Vec cannot fail");
    let len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// A frame read back: its sequence number, expiry, length on disk and body.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub expires_ms: u64,
    pub len: u64,
    body: Vec<u8>,
}

impl Frame {
    /// The record, or why it cannot be decoded.
    pub fn record(&self) -> Result<Record, String> {
        ciborium::from_reader(self.body.as_slice()).map_err(|e| e.to_string())
    }
}

/// How reading a frame ended.
#[derive(Debug)]
pub enum Next {
    /// A whole, intact frame.
    Frame(Frame),
    /// Nothing more (clean end of file).
    End,
    /// A cut or corrupt frame: what is wrong, and whether the file simply ends inside it.
    Torn(Torn),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub struct Torn {
    /// In words.
    pub why: String,
    /// The file ends inside the frame (a crash during a write, at the end of a file).
    pub cut: bool,
    /// The frame's length when its header looked sound and its bytes were all there (so the
    /// damage is inside it, and the next frame starts right after it).
    pub len: Option<u64>,
}

impl std::fmt::Display for Torn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

fn torn(why: String, cut: bool, len: Option<u64>) -> Next {
    Next::Torn(Torn { why, cut, len })
}

/// Reads the next frame of `r`.
pub fn read(r: &mut impl Read) -> io::Result<Next> {
    let mut head = [0u8; 8];
    match read_full(r, &mut head)? {
        0 => return Ok(Next::End),
        8 => {}
        n => return Ok(torn(format!("{n} bytes of a frame header"), true, None)),
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if !(16..=MAX_FRAME).contains(&len) {
        return Ok(torn(format!("impossible frame length {len}"), false, None));
    }
    let mut rest = vec![0u8; len];
    let got = read_full(r, &mut rest)?;
    if got < len {
        return Ok(torn(
            format!("frame cut at {got} of {len} bytes"),
            true,
            None,
        ));
    }
    if crc32fast::hash(&rest) != crc {
        return Ok(torn(
            "frame checksum mismatch".into(),
            false,
            Some(len as u64 + 8),
        ));
    }
    let seq = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let expires_ms = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    rest.drain(..16);
    Ok(Next::Frame(Frame {
        seq,
        expires_ms,
        len: (len + 8) as u64,
        body: rest,
    }))
}

/// The first intact frame in `bytes` (which start with a damaged one) whose sequence number
/// is at least `min_seq` and less than a million above it: where a reader resumes, so that
/// damage costs the records it hit and no more. When the damaged frame's header was sound
/// (`len`), the frame right after it is tried first, so a flipped bit in a payload never
/// sends the search into that payload. Returns the offset and sequence number.
pub fn resync(bytes: &[u8], min_seq: u64, len: Option<u64>) -> Option<(usize, u64)> {
    let plausible = |seq: u64| seq >= min_seq && seq - min_seq < 1_000_000;
    let first = len.and_then(|l| usize::try_from(l).ok());
    first.into_iter().chain(1..bytes.len()).find_map(|at| {
        let head = bytes.get(at..at + 24)?;
        let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
        let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
        if !(16..=MAX_FRAME).contains(&len) || !plausible(seq) {
            return None;
        }
        let body = bytes.get(at + 8..at + 8 + len)?;
        let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
        (crc32fast::hash(body) == crc).then_some((at, seq))
    })
}

/// Reads until `buf` is full or the end; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            id: "m1".into(),
            source: "sensor".into(),
            content_type: "application/json".into(),
            headers: vec![("unit".into(), "C".into())],
            payload: b"{\"t\":21}".to_vec(),
            accepted_ms: 7,
            topic: None,
            retain: false,
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        let n = encode(&mut buf, 42, 99, &record());
        assert_eq!(n, buf.len());
        encode(&mut buf, 43, 99, &record());
        buf.truncate(buf.len() - 3);
        let mut r = buf.as_slice();
        let Next::Frame(f) = read(&mut r).unwrap() else {
            panic!("first frame")
        };
        assert_eq!((f.seq, f.expires_ms, f.len), (42, 99, n as u64));
        assert_eq!(f.record().unwrap(), record());
        assert!(matches!(read(&mut r).unwrap(), Next::Torn(_)));
        let mut bad = Vec::new();
        encode(&mut bad, 1, 1, &record());
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(
            matches!(read(&mut bad.as_slice()).unwrap(), Next::Torn(m) if m.why.contains("checksum"))
        );
        assert!(matches!(read(&mut [].as_slice()).unwrap(), Next::End));
    }

    #[test]
    fn resync_finds_the_next_intact_frame_after_damage() {
        let mut buf = Vec::new();
        let starts: Vec<usize> = (0..4)
            .map(|seq| {
                let at = buf.len();
                encode(&mut buf, seq, 99, &record());
                at
            })
            .collect();
        // A flipped byte in frame 1: reading stops there; resync resumes at frame 2.
        buf[starts[1] + 30] ^= 0x01;
        let Next::Torn(t) = read(&mut &buf[starts[1]..]).unwrap() else {
            panic!("frame 1 is damaged")
        };
        assert_eq!(t.len, Some((starts[2] - starts[1]) as u64));
        assert_eq!(
            resync(&buf[starts[1]..], 1, t.len),
            Some((starts[2] - starts[1], 2))
        );
        // Zeros over frame 2's header: resync skips to frame 3.
        buf[starts[2]..starts[2] + 4].fill(0);
        assert_eq!(
            resync(&buf[starts[1]..], 1, None),
            Some((starts[3] - starts[1], 3))
        );
        // Nothing intact after, or only frames with implausible numbers: none.
        assert_eq!(resync(&buf[starts[3] + 1..], 4, None), None);
        assert_eq!(resync(&buf[starts[1]..], 2_000_000, None), None);
    }
}
