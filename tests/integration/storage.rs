//! The Com spool under storage faults and a flapping broker, with a real node, a real
//! mosquitto and (as root) a real small filesystem.

use std::path::Path;
use std::time::{Duration, Instant};

use busbar_tests::TestNode;
use busbar_tests::mqtt::{Cloud, Mosquitto, Received};
use busbar_tests::{guard, service};
use serde_json::json;

fn probe() -> String {
    service(
        "probe",
        "cloud_probe",
        "[services.limits]\ndeadline_ms = 120000\nsubmit_per_sec = 0",
    )
}

fn config(port: u16, extra: &str) -> String {
    format!(
        "[com]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\nbackoff_max_ms = 500\n{extra}"
    )
}

/// A tmpfs of `size` on a temp folder, unmounted on drop; None (with a message) without root.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// The numbers of the burst messages delivered, in arrival order, first arrivals only.
fn numbers(got: &[Received]) -> Vec<u64> {
    let mut seen = std::collections::BTreeSet::new();
    got.iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).ok()?;
            let payload = v.get("payload")?;
            payload.get("n")?.as_u64()
        })
        .filter(|n| seen.insert(*n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_queue_full_keeps_what_it_accepted_and_recovers() {
    let Some(disk) = Tmpfs::mount("384k") else {
        return;
    };
    let mut broker = Mosquitto::start();
    // Subscribed before the outage, as in the outage test: nothing the node sends once the
    // broker is back can pass before the cloud listens.
    let cloud = Cloud::connect(broker.port, &["busbar/test-node/d2c"]).await;
    broker.stop();
    let spool = format!(
        "[com.spool]\ndir = \"{}\"",
        disk.path().join("spool").display()
    );
    let cfg = config(broker.port, &spool);
    let node = TestNode::start_raw(&probe(), &cfg).await.unwrap();
    node.node
        .wait_for("probe", |s| s == busbar::service::State::Running)
        .await
        .unwrap();
    let out = node
        .call_json("probe", "burst", &json!({"count": 5000}))
        .await;
    let accepted = out["accepted"].as_u64().unwrap();
    assert!(
        accepted > 0 && out["refused"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert_eq!(out["last_error"]["code"], "queue-full", "{out}");
    let message = out["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("disk is full"), "{message}");
    let stats = node.node.com_stats().spool();
    assert_eq!(
        stats.pending, accepted,
        "gauges count what is on disk: {stats:?}"
    );
    // A restart on the full disk starts and keeps everything.
    node.shutdown().await;
    let node = TestNode::start_raw(&probe(), &cfg).await.unwrap();
    busbar_tests::until("the restarted spool's gauges", || async {
        (node.node.com_stats().spool().pending == accepted).then_some(())
    })
    .await;
    // The broker returns: everything accepted is delivered, in order, once at least.
    broker.restart();
    let got = cloud
        .wait_for("every accepted message", accepted as usize, |r| {
            r.topic == "busbar/test-node/d2c"
        })
        .await;
    assert_eq!(numbers(&got), (0..accepted).collect::<Vec<_>>());
    // Delivered segments are deleted: there is room again, by itself.
    let end = Instant::now() + guard();
    loop {
        let out = node
            .call_json("probe", "burst", &json!({"count": 100}))
            .await;
        if out["accepted"] == 100 {
            break;
        }
        assert!(Instant::now() < end, "space never returned: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_accepts_then_drops_is_retried_slower_and_slower() {
    // Answers every CONNECT with a CONNACK, then closes the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = tx.send(Instant::now());
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
            let _ = s.shutdown().await;
        }
    });
    let node = TestNode::start_raw(
        &probe(),
        &format!(
            "[com]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\nbackoff_max_ms = 4000\n"
        ),
    )
    .await
    .unwrap();
    let mut at = Vec::new();
    while at.len() < 7 {
        let next = tokio::time::timeout(guard(), attempts.recv())
            .await
            .expect("the node stopped trying to connect")
            .unwrap();
        at.push(next);
    }
    // Full-jitter backoff that keeps growing across CONNACKs: by the 6th retry a wait is at
    // least half of min(100 ms × 2^5, 4 s) = 1.6 s; a backoff reset by every CONNACK would
    // wait at most 100 ms.
    let last_gap = at[6] - at[5];
    assert!(
        last_gap >= Duration::from_millis(1500),
        "{last_gap:?} between attempts 6 and 7"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_reported_on_connect_is_followed_by_the_running_services() {
    let broker = Mosquitto::start();
    let cloud = Cloud::connect(broker.port, &["busbar/test-node/reported"]).await;
    let node = TestNode::start_raw(&probe(), &config(broker.port, ""))
        .await
        .unwrap();
    // Well before the periodic report (60 s): a report shows the probe running, with its
    // version, even when the first one (on connect) came while it was still loading.
    let got = cloud
        .wait_for("a report with the probe running", 1, |r| {
            if r.topic != "busbar/test-node/reported" {
                return false;
            }
            let v = r.json();
            v["services"]["probe"]["state"] == "running"
                && v["services"]["probe"]["sha256"].is_string()
        })
        .await;
    assert!(!got.is_empty());
    node.shutdown().await;
}

#[test]
fn a_node_starts_on_a_full_disk_and_says_what_it_could_not_write() {
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    // Fill it up (dd stops at "no space left").
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=1024"])
        .arg(format!("of={}", disk.path().join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        std::fs::write(disk.path().join("probe"), b"x").is_err(),
        "the tmpfs should be full"
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("m.toml"), service("echo", "echo", "")).unwrap();
    std::fs::write(
        work.path().join("node.toml"),
        format!(
            "data_dir = \"{0}/state\"\ncache_dir = \"{0}/cache\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[admin.tokens]]\nname = \"ops\"\ntoken = \"ops-token-0123456789ab\"\n",
            disk.path().display()
        ),
    )
    .unwrap();
    let state = disk.path().join("state");
    let mut node = busbar_tests::process::Busbar::start_env(
        work.path(),
        &["run", "--manifest", "m.toml", "--config", "node.toml"],
        &[("BUSBAR_DATA_DIR", state.as_os_str())],
    );
    node.wait_log(1, &["node running"]);
    node.wait_log(1, &["cannot write this file", "admin-token"]);
    node.wait_log(1, &["could not cache compiled component"]);
    node.wait_log(1, &["service state", "\"running\""]);
    node.signal("TERM");
    assert!(node.wait().success());
}
