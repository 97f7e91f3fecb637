//! B9: precompiled delivery. The time from `busbar hub publish` to the new version running on
//! a node, and the node's peak RSS meanwhile, when the publish compiles an artifact for the
//! node's engine beside the same publish with `--no-artifacts` (the node compiles the
//! `.wasm`), for a Rust and a Python component; and the sizes of the `busbar` binaries.

use std::path::Path;
use std::time::{Duration, Instant};

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, new_version, start_node};
use busbar_tests::{guest, python_guest};

use crate::{Row, verdict};

fn sha256(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}

/// Waits until `node` runs `name` at `sha`; returns where its code came from.
async fn running(node: &AdminNode, name: &str, sha: &str) -> anyhow::Result<String> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let status = node.get_json("/status").await;
        if let Some(s) = status["services"].as_array().and_then(|s| {
            s.iter()
                .find(|s| s["name"] == name && s["sha256"] == sha && s["state"] == "running")
        }) {
            return Ok(s["code"].as_str().unwrap_or_default().to_owned());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{name} {sha} not running after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One delivery to a fresh node (fresh compile cache): seconds from the publish command to
/// the service running, seconds of that after the publish command returned (the node's
/// part: download, load, start), and the node's peak RSS in MB.
async fn deliver(component: &Path, artifacts: bool) -> anyhow::Result<(f64, f64, f64)> {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    let work = tempfile::tempdir()?;
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    // Signed in (its engine announced) before the clock starts.
    let until = Instant::now() + Duration::from_secs(30);
    while hub.node("gw1").await["identity"]["engine"].is_null() {
        anyhow::ensure!(Instant::now() < until, "gw1 did not sign in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A version no run has compiled before.
    let fresh = new_version(component, work.path(), &format!("b9{}", rand_tag()));
    let sha = sha256(&fresh)?;
    let began = Instant::now();
    let mut args = vec!["--no-artifacts"];
    if artifacts {
        args.clear();
    }
    hub.publish("svc", &fresh, "gw1", &args);
    let published = Instant::now();
    let code = running(&node, "svc", &sha).await?;
    let secs = began.elapsed().as_secs_f64();
    let node_secs = published.elapsed().as_secs_f64();
    let want = if artifacts { "precompiled" } else { "compiled" };
    anyhow::ensure!(code == want, "the node's code is {code}, not {want}");
    let peak = crate::memory::status_kib(node.process.id(), "VmHWM")? as f64 / 1024.0;
    Ok((secs, node_secs, peak))
}

fn rand_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Size of a built binary in MB, or why there is none.
fn size_of(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{:.1} MB", m.len() as f64 / 1e6),
        Err(_) => "not built".to_owned(),
    }
}

pub async fn delivery() -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (label, component) in [
        ("Rust echo (155 KB)", guest("echo")),
        ("Python py_counter (18.8 MB)", python_guest("py_counter")),
    ] {
        let (pre_s, pre_node, pre_mb) = deliver(&component, true).await?;
        let (cc_s, cc_node, cc_mb) = deliver(&component, false).await?;
        rows.push(Row {
            id: "B9",
            what: format!(
                "publish → running on a node, {label}: in all (after the publish returned); \
                 node peak RSS"
            ),
            busbar: format!("artifact: {pre_s:.2} s ({pre_node:.2} s), {pre_mb:.0} MB"),
            baseline: format!(
                "node compiles the .wasm: {cc_s:.2} s ({cc_node:.2} s), {cc_mb:.0} MB"
            ),
            target: verdict(
                "less node time and memory",
                pre_node < cc_node && pre_mb < cc_mb,
            ),
        });
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new("target").to_owned(), Into::into);
    let gateway = |triple: &str| size_of(&target.join(triple).join("dist/busbar"));
    let aarch64 = target.join("aarch64-unknown-linux-gnu/dist/busbar");
    let aarch64_mb = std::fs::metadata(&aarch64).map(|m| m.len() as f64 / 1e6);
    rows.push(Row {
        id: "B9",
        what: "`busbar` binary, stripped: gateway build (no compiler, no hub) aarch64 / armv7"
            .into(),
        busbar: format!(
            "{} / {}",
            gateway("aarch64-unknown-linux-gnu"),
            gateway("armv7-unknown-linux-gnueabihf")
        ),
        baseline: format!(
            "full build x86_64 (release, all targets' compilers): {}",
            size_of(&busbar_tests::busbar_bin())
        ),
        target: match aarch64_mb {
            Ok(mb) => verdict("aarch64 ≤ 12 MB", mb <= 12.0),
            Err(_) => "aarch64 ≤ 12 MB: run `just cross-aarch64` first".into(),
        },
    });
    Ok(rows)
}
