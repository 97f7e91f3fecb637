//! B5: resident memory of an idle node, and what each idle service adds, measured on the
//! real `busbar` binary with 0, 1, 10, 100 and 1000 copies of `raw-counter`.

use busbar_tests::process::Busbar;
use busbar_tests::service;

use crate::{Row, verdict};

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A `/proc/PID/status` figure in KiB, e.g. `VmRSS` or `VmHWM` (the peak).
pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
        .ok_or_else(|| anyhow::anyhow!("no {key} for {pid}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// RSS (KiB) of a node running `n` idle services, once all of them run.
fn node_rss(n: usize) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let manifest: String = (0..n)
        .map(|i| service(&format!("c{i}"), "raw_counter", ""))
        .collect();
    std::fs::write(dir.path().join("m.toml"), manifest)?;
    std::fs::write(
        dir.path().join("node.toml"),
        format!(
            "[engine]\nmax_instances = {}\n[com]\nkind = \"file\"\npath = \"com.jsonl\"\n",
            n.max(1)
        ),
    )?;
    let mut node = Busbar::start(
        dir.path(),
        &["run", "--manifest", "m.toml", "--config", "node.toml"],
    );
    if n > 0 {
        node.wait_log(n, &["service state", "\"running\""]);
    } else {
        node.wait_log(1, &["node running"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rss = rss_kib(node.id())?;
    node.signal("TERM");
    node.wait_finished();
    Ok(rss)
}

/// RSS (KiB) of one idle `mosquitto_sub`: one process per service, as MQTT-as-bus designs
/// run them.
fn mqtt_client_rss() -> anyhow::Result<u64> {
    let broker = busbar_tests::mqtt::Mosquitto::try_start()?;
    let mut child = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-t", "x"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    rss
}

/// B5 rows.
pub fn idle_memory() -> anyhow::Result<Vec<Row>> {
    let counts = [0usize, 1, 10, 100, 1000];
    let mut rss = Vec::new();
    for n in counts {
        eprintln!("  {n} services ...");
        rss.push(node_rss(n)?);
    }
    // The first service brings its component's compiled code (shared by every later copy):
    // the slope is measured from one service on.
    let per_service = |i: usize| (rss[i] as f64 - rss[1] as f64) / (counts[i] - 1) as f64;
    let mut slope = vec![format!("1st: {:.1} MB", (rss[1] - rss[0]) as f64 / 1024.0)];
    slope.extend(
        (2..counts.len()).map(|i| format!("to {}: {:.0} KB each", counts[i], per_service(i))),
    );
    let client =
        mqtt_client_rss().map_or_else(|e| format!("not measured ({e})"), |k| format!("{k} KB"));
    Ok(vec![
        Row {
            id: "B5",
            what: "RSS of an idle node (no services)".into(),
            busbar: format!("{:.1} MB", rss[0] as f64 / 1024.0),
            baseline: format!("one idle mosquitto_sub process: {client}"),
            target: verdict("≤ 15 MB", rss[0] <= 15 * 1024),
        },
        Row {
            id: "B5",
            what: "RSS added per idle service (raw-counter), by service count".into(),
            busbar: slope.join(", "),
            baseline: format!("a process per service: {client} each"),
            target: verdict("≤ 200 KB", per_service(counts.len() - 1) <= 200.0),
        },
    ])
}
