//! B7: the Com spool under storage faults. What one corrupt record costs (beside what the
//! same damage cost when the rest of its segment was cut), and how long the spool takes to
//! accept messages again once a disk-full episode ends (beside a plain append).

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Instant;

use busbar::com::spool::{Record, Spool, SpoolConfig};

use crate::{Row, verdict};

fn record(n: u64, size: usize) -> Record {
    Record {
        id: format!("m{n}"),
        source: "bench".into(),
        content_type: "application/octet-stream".into(),
        headers: Vec::new(),
        payload: vec![n as u8; size],
        accepted_ms: 0,
        topic: None,
        retain: false,
    }
}

fn config() -> SpoolConfig {
    SpoolConfig {
        sync_ms: 0,
        max_bytes: 1 << 30,
        ..SpoolConfig::default()
    }
}

/// Delivers (and acknowledges) everything; returns how many records came out.
fn deliver_all(spool: &mut Spool) -> anyhow::Result<u64> {
    let mut n = 0;
    while let Some((seq, _)) = spool.next_record()? {
        spool.ack(seq);
        n += 1;
    }
    spool.sync()?;
    Ok(n)
}

/// The rows of B7.
pub fn faults() -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![corrupt_record()?];
    rows.push(disk_full_recovery()?);
    Ok(rows)
}

fn corrupt_record() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let total = 20_000u64;
    let mut spool = Spool::open(dir.path(), config())?;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Record> = chunk.iter().map(|&n| record(n, 400)).collect();
        spool.append(&batch);
    }
    drop(spool);
    // One flipped byte in the middle of the first segment (sealed: later ones follow).
    let first = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .min()
        .ok_or_else(|| anyhow::anyhow!("no segment"))?;
    let len = std::fs::metadata(&first)?.len();
    let file = std::fs::OpenOptions::new().write(true).open(&first)?;
    file.write_all_at(&[0x5a], len / 2)?;
    // What cutting the rest of the segment would have cost: the records after the damage.
    let per_segment = records_in(&first)?;
    let cut_cost = per_segment - per_segment / 2;
    let mut spool = Spool::open(dir.path(), config())?;
    let delivered = deliver_all(&mut spool)?;
    let lost = total - delivered;
    Ok(Row {
        id: "B7",
        what: format!("records lost to one flipped byte in a sealed segment ({total} records)"),
        busbar: format!("{lost} lost (counted corrupt: {})", spool.counts().corrupt),
        baseline: format!("{cut_cost} lost when the rest of the segment is cut"),
        target: verdict("1", lost == 1),
    })
}

/// Records in a segment file (all intact before the damage: its size over one frame's).
fn records_in(segment: &Path) -> anyhow::Result<u64> {
    let one = {
        let dir = tempfile::tempdir()?;
        let mut s = Spool::open(dir.path(), config())?;
        s.append(&[record(0, 400)]);
        drop(s);
        let path = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "spool"))
            .ok_or_else(|| anyhow::anyhow!("no segment"))?;
        std::fs::metadata(path)?.len()
    };
    Ok(std::fs::metadata(segment)?.len() / one)
}

/// A spool on a 2 MiB tmpfs fills up; everything is delivered; how long until it accepts
/// again. Needs root (to mount); otherwise the row says so.
fn disk_full_recovery() -> anyhow::Result<Row> {
    let what = "disk-full episode: all delivered → accepting again".to_owned();
    let dir = tempfile::tempdir()?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return Ok(Row {
            id: "B7",
            what,
            busbar: "not measured (mounting a tmpfs needs root)".into(),
            baseline: "-".into(),
            target: "-".into(),
        });
    }
    let result = (|| -> anyhow::Result<Row> {
        let mut spool = Spool::open(&dir.path().join("spool"), config())?;
        let mut n = 0;
        while spool.append(&[record(n, 1000)])[0].is_ok() {
            n += 1;
        }
        deliver_all(&mut spool)?;
        let started = Instant::now();
        let mut tries = 0u32;
        while spool.append(&[record(n, 1000)])[0].is_err() {
            spool.sync().ok();
            tries += 1;
            anyhow::ensure!(tries < 10_000, "the spool never accepted again");
        }
        let recovered = started.elapsed();
        // Baseline: one append on a spool with room, same disk.
        let started = Instant::now();
        spool.append(&[record(n + 1, 1000)])[0]
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let plain = started.elapsed();
        Ok(Row {
            id: "B7",
            what: format!("{what} ({n} records filled 2 MiB)"),
            busbar: format!(
                "{:.2} ms, {tries} refused tries",
                recovered.as_secs_f64() * 1e3
            ),
            baseline: format!(
                "{:.2} ms for one append with room",
                plain.as_secs_f64() * 1e3
            ),
            target: verdict("accepts at the first try once delivered", tries == 0),
        })
    })();
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir.path())
        .status();
    result
}
