use std::time::Duration;

use super::*;

fn record(n: u32, size: usize) -> Record {
    Record {
        id: format!("m{n}"),
        source: "sensor".into(),
        content_type: "application/octet-stream".into(),
        headers: vec![("n".into(), n.to_string())],
        payload: vec![n as u8; size],
        accepted_ms: 0,
        topic: None,
        retain: false,
    }
}

fn config() -> SpoolConfig {
    SpoolConfig {
        sync_ms: 0,
        ..SpoolConfig::default()
    }
}

fn drain(spool: &mut Spool) -> Vec<(u64, String)> {
    std::iter::from_fn(|| spool.next_record().unwrap())
        .map(|(seq, r)| (seq, r.id))
        .collect()
}

/// A spool in `dir` holding records 0..12 of 1 MiB each, in several segments.
fn twelve_mib_in_segments(dir: &Path) -> Spool {
    let mut spool = Spool::open(dir, config()).unwrap();
    let mib = (0..12).map(|n| record(n, 1 << 20)).collect::<Vec<_>>();
    for r in mib.chunks(3) {
        spool.append(r);
    }
    spool
}

/// How many segment files `dir` holds.
fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == EXTENSION)
        })
        .count()
}

#[test]
fn delivers_in_order_and_resumes_after_a_restart_from_the_first_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    let batch: Vec<Record> = (0..5).map(|n| record(n, 10)).collect();
    let seqs: Vec<u64> = spool
        .append(&batch)
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    let out = drain(&mut spool);
    assert_eq!(
        out.iter().map(|o| o.1.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    // Acknowledged out of order: 0, 2, 1 — the first unacknowledged is then 3.
    for s in [0, 2, 1] {
        spool.ack(s);
    }
    assert_eq!(spool.counts().pending, 2);
    spool.sync().unwrap();
    spool.ack(3); // acknowledged but not recorded on disk before the "crash"
    drop(spool);

    let mut spool = Spool::open(dir.path(), config()).unwrap();
    assert_eq!(spool.counts().pending, 2);
    let again = drain(&mut spool);
    assert_eq!(again, vec![(3, "m3".to_string()), (4, "m4".to_string())]);
    // New records continue the sequence.
    assert_eq!(spool.append(&[record(5, 10)])[0].as_ref().unwrap(), &5);
}

#[test]
fn a_torn_tail_is_cut_and_the_intact_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    spool.append(&[record(0, 100), record(1, 100)]);
    drop(spool);
    let seg = segment_path(dir.path(), 0);
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let mut spool = Spool::open(dir.path(), config()).unwrap();
    assert_eq!(drain(&mut spool), vec![(0, "m0".to_string())]);
    assert_eq!(spool.counts().corrupt, 1);
    // The cut leaves a clean end: new records are readable after it.
    spool.append(&[record(2, 100)]);
    assert_eq!(drain(&mut spool), vec![(1, "m2".to_string())]);
}

#[test]
fn at_the_quota_refuse_refuses_and_drop_oldest_drops_the_oldest_unsent() {
    let dir = tempfile::tempdir().unwrap();
    let small = SpoolConfig {
        max_bytes: 1000,
        ..config()
    };
    let mut spool = Spool::open(dir.path(), small.clone()).unwrap();
    let results = spool.append(&(0..10).map(|n| record(n, 200)).collect::<Vec<_>>());
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert!((3..=4).contains(&accepted), "{accepted} accepted");
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(refused.to_string().contains("spool is full"), "{refused}");
    assert_eq!(spool.counts().refused, 10 - accepted as u64);

    let dir = tempfile::tempdir().unwrap();
    let dropping = SpoolConfig {
        on_full: SpoolFull::DropOldest,
        ..small
    };
    let mut spool = Spool::open(dir.path(), dropping).unwrap();
    let results = spool.append(&(0..10).map(|n| record(n, 200)).collect::<Vec<_>>());
    assert!(results.iter().all(|r| r.is_ok()));
    let kept = drain(&mut spool);
    assert_eq!(kept.last().unwrap().1, "m9");
    assert_eq!(spool.counts().dropped, 10 - kept.len() as u64);
    // What is left is the newest, in order.
    let first = kept[0].0;
    assert!(
        kept.iter()
            .enumerate()
            .all(|(i, k)| k.0 == first + i as u64)
    );
}

#[test]
fn expired_records_are_dropped_when_their_turn_comes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(
        dir.path(),
        SpoolConfig {
            ttl: Duration::ZERO,
            ..config()
        },
    )
    .unwrap();
    spool.append(&[record(0, 1), record(1, 1)]);
    assert!(drain(&mut spool).is_empty());
    assert_eq!(spool.counts().expired, 2);
    assert_eq!(spool.counts().pending, 0);
}

#[test]
fn segments_rotate_and_acknowledged_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = twelve_mib_in_segments(dir.path());
    let files = || segment_files(dir.path());
    assert!(files() >= 3, "{} segments", files());
    let all = drain(&mut spool);
    assert_eq!(all.len(), 12);
    for (seq, _) in &all {
        spool.ack(*seq);
    }
    spool.sync().unwrap();
    assert_eq!(files(), 1, "only the segment being written is left");
    assert_eq!(spool.counts().pending_bytes, 0);
    drop(spool);
    let mut spool = Spool::open(dir.path(), config()).unwrap();
    assert!(drain(&mut spool).is_empty());
    assert_eq!(spool.append(&[record(0, 1)])[0].as_ref().unwrap(), &12);
}

mod faults;
