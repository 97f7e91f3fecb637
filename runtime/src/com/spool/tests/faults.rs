//! The spool under storage faults: damaged frames, unreadable files, a full disk.

use super::*;

/// Offsets of each frame of a segment holding records of one size.
fn frame_len(dir: &Path) -> u64 {
    let seg = segment_path(dir, 0);
    let mut spool_len = std::fs::metadata(&seg).unwrap().len();
    let mut r = std::io::BufReader::new(File::open(&seg).unwrap());
    let frame::Next::Frame(f) = frame::read(&mut r).unwrap() else {
        panic!("a first frame");
    };
    spool_len -= spool_len % f.len;
    f.len.min(spool_len)
}

fn flip(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, at)
        .unwrap();
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_costs_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let spool = twelve_mib_in_segments(dir.path());
    assert!(spool.segments.len() >= 3);
    let len = frame_len(dir.path());
    drop(spool);
    // Inside the payload of record 1 of the first (sealed) segment.
    flip(&segment_path(dir.path(), 0), len + 5000, &[0xff]);
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let ids: Vec<String> = drain(&mut spool).into_iter().map(|d| d.1).collect();
    let expected: Vec<String> = (0..12)
        .filter(|n| *n != 1)
        .map(|n| format!("m{n}"))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(spool.counts().corrupt, 1);
    // The acknowledged position moves past the lost record.
    for seq in (0..12).filter(|s| *s != 1) {
        spool.ack(seq);
    }
    spool.sync().unwrap();
    assert_eq!(spool.counts().pending, 0);
    assert_eq!(read_acked(&dir.path().join(ACKED_FILE)), 12);
}

#[test]
fn zeros_over_a_record_in_the_open_segment_cost_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    spool.append(&(0..10).map(|n| record(n, 50)).collect::<Vec<_>>());
    let len = frame_len(dir.path());
    // While the node runs: the reader resynchronises.
    flip(&segment_path(dir.path(), 0), 3 * len, &[0; 4]);
    let ids: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    assert_eq!(ids, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    assert_eq!(spool.counts().corrupt, 1);
    // New records after the damage are read too.
    spool.append(&[record(10, 50)]);
    assert_eq!(drain(&mut spool), vec![(10, "m10".to_string())]);
    drop(spool);
    // After a restart: the same, the damage is not taken for a torn tail.
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let ids: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    assert_eq!(ids, [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn an_unreadable_acked_file_is_moved_aside_and_everything_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    spool.append(&(0..3).map(|n| record(n, 10)).collect::<Vec<_>>());
    drop(spool);
    std::fs::write(dir.path().join(ACKED_FILE), [0xff, 0xfe, 0x00]).unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    assert_eq!(drain(&mut spool).len(), 3);
    assert!(dir.path().join("acked.bad").exists());
}

/// A real full disk: a 256 KiB tmpfs (needs root; skipped otherwise).
#[test]
fn a_full_disk_refuses_new_records_keeps_the_accepted_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .args(["-l"])
                .arg(self.0)
                .status();
        }
    }
    let _unmount = Unmount(dir.path());
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![1u8; 64 << 10]).unwrap();
    let spool_dir = dir.path().join("spool");
    let mut spool = Spool::open(&spool_dir, config()).unwrap();
    let mut accepted = Vec::new();
    let mut n = 0;
    let refusal = loop {
        match spool.append(&[record(n, 1000)]).remove(0) {
            Ok(seq) => accepted.push(seq),
            Err(e) => break e,
        }
        n += 1;
        assert!(n < 1000, "the disk never filled");
    };
    assert!(matches!(refusal, SpoolError::DiskFull { .. }), "{refusal}");
    assert!(refusal.to_string().contains("disk is full"), "{refusal}");
    assert_eq!(
        spool.counts().pending,
        accepted.len() as u64,
        "gauges count what is on disk"
    );
    // Delivering half works on the full disk (the acked position is overwritten in place).
    let half = accepted.len() / 2;
    for _ in 0..half {
        let (seq, _) = spool.next_record().unwrap().unwrap();
        spool.ack(seq);
    }
    spool.sync().unwrap();
    // A restart on the full disk starts.
    drop(spool);
    let mut spool = Spool::open(&spool_dir, config()).unwrap();
    assert_eq!(spool.counts().pending, (accepted.len() - half) as u64);
    // Space returns: new records are taken, and every accepted one is there, once, in order.
    std::fs::remove_file(&filler).unwrap();
    let more = spool.append(&[record(9000, 1000), record(9001, 1000)]);
    assert!(more.iter().all(|r| r.is_ok()), "{more:?}");
    let seqs: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    let mut expected: Vec<u64> = accepted[half..].to_vec();
    expected.extend(more.iter().map(|r| *r.as_ref().unwrap()));
    assert_eq!(seqs, expected);
}

std::thread_local! {
    /// Bytes the [`Flaky`] disk still takes; then writes fail as on a full disk.
    static ROOM: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
    /// Whether cutting a failed write back off fails too.
    static CUT_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A segment file on a disk that fills up: a write past the room writes what fits (a torn
/// write), then fails with `StorageFull`.
#[derive(Debug)]
struct Flaky(File);

impl std::io::Write for Flaky {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = ROOM.get();
        if room == 0 {
            return Err(std::io::ErrorKind::StorageFull.into());
        }
        let n = self.0.write(&buf[..buf.len().min(room as usize)])?;
        ROOM.set(room - n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl SegmentFile for Flaky {
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if CUT_FAILS.get() {
            return Err(std::io::ErrorKind::StorageFull.into());
        }
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

fn open_flaky(path: &Path) -> std::io::Result<Box<dyn SegmentFile>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(Flaky(file)))
}

/// Opens a spool in `dir` whose segments sit on the flaky disk.
fn flaky_spool(dir: &Path) -> Spool {
    let mut spool = Spool::open(dir, config()).unwrap();
    spool.opener = open_flaky;
    spool.writer = open_flaky(&spool.segments.back().unwrap().path).unwrap();
    spool
}

/// Appends one record at a time until the disk refuses; returns the accepted seqs.
fn fill(spool: &mut Spool, from: u32) -> Vec<u64> {
    let mut accepted = Vec::new();
    for n in from.. {
        match spool.append(&[record(n, 100)]).remove(0) {
            Ok(seq) => accepted.push(seq),
            Err(e) => {
                assert!(matches!(e, SpoolError::DiskFull { .. }), "{e}");
                return accepted;
            }
        }
    }
    unreachable!()
}

#[test]
fn a_torn_write_on_a_full_disk_is_cut_back_and_nothing_accepted_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = flaky_spool(dir.path());
    ROOM.set(2000);
    let accepted = fill(&mut spool, 0);
    assert!(!accepted.is_empty());
    // Nothing partial stays: the segment holds exactly the accepted frames.
    let frame = frame_len(dir.path());
    let seg = segment_path(dir.path(), 0);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        frame * accepted.len() as u64
    );
    assert_eq!(spool.counts().pending, accepted.len() as u64);
    // Space returns: writing goes on with the next sequence number.
    ROOM.set(u64::MAX);
    let more: Vec<u64> = spool
        .append(&[record(100, 100), record(101, 100)])
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(more[0], *accepted.last().unwrap() + 1);
    let seqs: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    let mut expected = accepted;
    expected.extend(more);
    assert_eq!(seqs, expected);
    assert_eq!(spool.counts().corrupt, 0);
}

#[test]
fn a_torn_write_that_cannot_be_cut_back_hides_nothing_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = flaky_spool(dir.path());
    ROOM.set(1500);
    CUT_FAILS.set(true);
    let accepted = fill(&mut spool, 0);
    CUT_FAILS.set(false);
    ROOM.set(u64::MAX);
    let more: Vec<u64> = spool
        .append(&(200..205).map(|n| record(n, 100)).collect::<Vec<_>>())
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut expected = accepted;
    expected.extend(more);
    // While running: the reader steps over the torn bytes; the gauges stay true.
    assert_eq!(spool.counts().pending, expected.len() as u64);
    let seqs: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    assert_eq!(seqs, expected);
    assert_eq!(
        spool.counts().corrupt,
        0,
        "refused records are not lost records"
    );
    drop(spool);
    // After a restart: the torn bytes are not taken for a tail; all accepted come back.
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let seqs: Vec<u64> = drain(&mut spool).into_iter().map(|d| d.0).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn a_stale_acked_position_does_not_hold_the_spool_below_its_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let spool = twelve_mib_in_segments(dir.path());
    drop(spool);
    // The first segment was delivered and deleted, but `acked` still says 0.
    std::fs::remove_file(segment_path(dir.path(), 0)).unwrap();
    std::fs::write(dir.path().join(ACKED_FILE), "0").unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let all = drain(&mut spool);
    for (seq, _) in &all {
        spool.ack(*seq);
    }
    spool.sync().unwrap();
    assert_eq!(spool.counts().pending, 0);
    assert_eq!(
        segment_files(dir.path()),
        1,
        "delivered segments are deleted"
    );
    // New records continue after the highest number.
    assert_eq!(spool.append(&[record(12, 1)])[0].as_ref().unwrap(), &12);
}

#[test]
fn a_frame_hidden_in_a_damaged_payload_is_never_taken_for_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    // Record 1's payload carries a well-formed frame numbered 2 from another "service".
    let mut fake = Vec::new();
    let mut forged = record(99, 10);
    forged.source = "someone-else".into();
    frame::encode(&mut fake, 2, u64::MAX, &forged);
    let mut carrier = record(1, 0);
    carrier.payload = [vec![7u8; 200], fake, vec![7u8; 200]].concat();
    spool.append(&[record(0, 10), carrier, record(2, 10)]);
    let first = frame_len(dir.path());
    drop(spool);
    // A flipped byte in the carrier's payload, before the hidden frame.
    flip(&segment_path(dir.path(), 0), first + 100, &[0x00]);
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let mut out = Vec::new();
    while let Some((seq, r)) = spool.next_record().unwrap() {
        out.push((seq, r.source, r.id));
    }
    assert_eq!(
        out,
        vec![
            (0, "sensor".to_string(), "m0".to_string()),
            (2, "sensor".to_string(), "m2".to_string())
        ]
    );
}
