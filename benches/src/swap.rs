//! B4: hot-swapping a service while a sender pushes 10,000 numbered messages per second to it;
//! the pause each swap causes and whether any message was lost or doubled. Baseline: the
//! same service removed and added again (a stop-and-start update, as whole-process or
//! container updates do), under the same load.

use std::path::Path;
use std::time::{Duration, Instant};

use busbar::manifest::Manifest;
use busbar_tests::fleet::new_version;
use busbar_tests::{TestNode, guest};
use serde_json::json;

use crate::{Row, pct_us, verdict};

const SWAPS: usize = 20;
const RESTARTS: usize = 10;
/// 100 numbers every 10 ms.
const BATCH: u64 = 100;

fn manifest(receiver: Option<&Path>, count: u64) -> anyhow::Result<Manifest> {
    let mut text = format!(
        "[[services]]\nname = \"seq-sender\"\ncomponent = {:?}\n\
         config = {{ batch = {BATCH}, period_ms = 10, count = {count} }}\n\
         limits = {{ submit_per_sec = 0 }}\ngrants = {{ destinations = [\"seq-receiver\"] }}\n",
        guest("seq_sender").display().to_string()
    );
    if let Some(receiver) = receiver {
        text.push_str(&format!(
            "[[services]]\nname = \"seq-receiver\"\ncomponent = {:?}\nlimits = {{ mailbox = 1024 }}\n",
            receiver.display().to_string()
        ));
    }
    Ok(Manifest::parse(&text, false, "<bench>", Path::new("."))?)
}

/// Waits until `seq-receiver` runs `sha` and returns its status.
async fn running(node: &TestNode, sha: Option<&str>) -> busbar::service::Status {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = node
            .node
            .report()
            .into_iter()
            .find(|r| r.name == "seq-receiver")
            && r.status.state == busbar::service::State::Running
            && sha.is_none_or(|s| r.status.sha256.as_deref() == Some(s))
        {
            return r.status;
        }
        assert!(Instant::now() < until, "seq-receiver did not come up");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the sender is done and (when the receiver kept its state) the receiver has
/// every number; returns the receiver's report.
async fn finished(node: &TestNode, count: u64, kept_state: bool) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let sent = node.call_json("seq-sender", "sent", &json!(null)).await;
        let report = node.call_json("seq-receiver", "report", &json!(null)).await;
        if sent["sent"] == count && (!kept_state || report["received"].as_u64() >= Some(count)) {
            return report;
        }
        assert!(
            Instant::now() < until,
            "the sender did not finish: {sent} {report}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn digest(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}

/// One run: `changes` updates 200 ms apart, each by `update`; returns the pauses (ns) and
/// the receiver's final report.
async fn run(changes: usize, swap: bool) -> anyhow::Result<(Vec<u64>, serde_json::Value, u64)> {
    let dir = tempfile::tempdir()?;
    let versions = [
        guest("seq_receiver"),
        new_version(&guest("seq_receiver"), dir.path(), "v2"),
    ];
    let shas = [digest(&versions[0])?, digest(&versions[1])?];
    // Enough numbers to keep sending through every change.
    let count = (changes as u64 + 2) * 3_000;
    let node = TestNode::start("").await?;
    node.node
        .apply(&manifest(Some(&versions[0]), count)?)
        .await?;
    running(&node, Some(&shas[0])).await;
    let mut pauses = Vec::new();
    for i in 1..=changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = i % 2;
        if swap {
            node.node
                .apply(&manifest(Some(&versions[v]), count)?)
                .await?;
            let status = loop {
                let s = running(&node, Some(&shas[v])).await;
                if s.swap_pause_us.is_some() {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            pauses.push(status.swap_pause_us.unwrap_or_default() * 1000);
        } else {
            let t = Instant::now();
            node.node.apply(&manifest(None, count)?).await?;
            node.node
                .apply(&manifest(Some(&versions[v]), count)?)
                .await?;
            running(&node, Some(&shas[v])).await;
            pauses.push(t.elapsed().as_nanos() as u64);
        }
    }
    let report = finished(&node, count, swap).await;
    node.shutdown().await;
    Ok((pauses, report, count))
}

/// B4 rows.
pub async fn hot_swap() -> anyhow::Result<Vec<Row>> {
    let (mut swaps, report, count) = run(SWAPS, true).await?;
    let (mut restarts, _, _) = run(RESTARTS, false).await?;
    swaps.sort_unstable();
    restarts.sort_unstable();
    let lost =
        |r: &serde_json::Value, n: u64| n.saturating_sub(r["received"].as_u64().unwrap_or(0));
    let dup = |r: &serde_json::Value| r["duplicates"].as_u64().unwrap_or(0);
    let (p50, p99) = (pct_us(&swaps, 50.0), pct_us(&swaps, 99.0));
    let lost_swap = lost(&report, count);
    Ok(vec![Row {
        id: "B4",
        what: format!("hot-swap pause under 10,000 msg/s ({SWAPS} swaps, {count} messages)"),
        busbar: format!(
            "p50 {:.2} ms, p99 {:.2} ms; lost {lost_swap}, duplicated {}; state carried (generation {})",
            p50 / 1e3,
            p99 / 1e3,
            dup(&report),
            report["generation"]
        ),
        baseline: format!(
            "remove + add the service ({RESTARTS}×): p50 {:.2} ms, p99 {:.2} ms; its state is lost",
            pct_us(&restarts, 50.0) / 1e3,
            pct_us(&restarts, 99.0) / 1e3,
        ),
        target: verdict(
            "p99 ≤ 5 ms, 0 lost",
            p99 <= 5_000.0 && lost_swap == 0 && dup(&report) == 0,
        ),
    }])
}
