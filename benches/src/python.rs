//! B8: Python services (componentize-py, `guests/python/py_probe.py`) beside Rust ones in
//! the same run: compile and cached load, memory per service, guest → guest throughput and
//! call round trips.

use std::path::Path;
use std::time::{Duration, Instant};

use busbar::cache::CompileCache;
use busbar::component::{ComponentSource, Loader};
use busbar::config::NodeConfig;
use busbar::engine::EngineConfig;
use busbar::manifest::Manifest;
use busbar::message::new_message;
use busbar::node::Node;
use busbar_tests::process::Busbar;
use busbar_tests::{guest, python_cache_home, python_env, python_guest, service};
use serde_json::{Value, json};

use crate::{Row, median, pct_us, rate, verdict};

const BURST: u64 = 20_000;
const CALLS: u64 = 2_000;

/// Seconds to compile `component` (no cache), and median ms to load it from a cache.
fn compile_and_load(component: &Path) -> anyhow::Result<(f64, f64)> {
    let engine = EngineConfig::default().build()?;
    let dir = tempfile::tempdir()?;
    let loader = |cache: Option<&Path>| {
        Loader::new(
            engine.clone(),
            CompileCache::new(&engine, cache.map(Path::to_path_buf))?,
        )
    };
    let t = Instant::now();
    loader(Some(dir.path()))?.load_blocking(&ComponentSource::file(component))?;
    let compile = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..11 {
        let fresh = loader(Some(dir.path()))?;
        let t = Instant::now();
        fresh.load_blocking(&ComponentSource::file(component))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((compile, median(times)))
}

/// RSS (KiB) of the `busbar` binary running `n` idle copies of `component`, loaded from the
/// shared cache.
fn node_rss(component: &str, n: usize) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let manifest: String = (0..n)
        .map(|i| service(&format!("s{i}"), component, ""))
        .collect();
    std::fs::write(dir.path().join("m.toml"), manifest)?;
    std::fs::write(
        dir.path().join("node.toml"),
        "[com]\nkind = \"file\"\npath = \"com.jsonl\"\n",
    )?;
    let mut node = Busbar::start_env(
        dir.path(),
        &["run", "--manifest", "m.toml", "--config", "node.toml"],
        &python_env(),
    );
    if n > 0 {
        node.wait_log(n, &["service state", "\"running\""]);
    } else {
        node.wait_log(1, &["node running"]);
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.id()))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    node.signal("TERM");
    node.wait_finished();
    Ok(rss)
}

/// (first, each further) MB of `component` services: RSS with 0, 1 and 11 of them.
fn per_service_mb(component: &str) -> anyhow::Result<(f64, f64)> {
    let rss: Vec<u64> = [0, 1, 11]
        .into_iter()
        .map(|n| node_rss(component, n))
        .collect::<anyhow::Result<_>>()?;
    let mb = |kib: f64| kib / 1024.0;
    Ok((
        mb(rss[1] as f64 - rss[0] as f64),
        mb((rss[2] as f64 - rss[1] as f64) / 10.0),
    ))
}

/// A node in this process running a producer and a sink of `component`, taking compiled
/// code from the shared cache.
async fn pair(component: &str, dir: &Path) -> anyhow::Result<Node> {
    let limits = "limits = { mailbox = 1024, deadline_ms = 600000, submit_per_sec = 0 }";
    let text = [
        service(
            "producer",
            component,
            &format!("{limits}\ngrants = {{ destinations = [\"sink\"] }}"),
        ),
        service("sink", component, limits),
    ]
    .concat();
    let config = NodeConfig {
        cache_dir: Some(python_cache_home().join("busbar")),
        data_dir: Some(dir.join("state")),
        com: busbar::com::ComConfig::File {
            path: dir.join("com.jsonl"),
        },
        ..NodeConfig::default()
    };
    let node = Node::start(&config, &Manifest::parse(&text, false, "<bench>", dir)?).await?;
    node.settled().await?;
    Ok(node)
}

async fn ask(node: &Node, to: &str, action: &str, body: Value) -> anyhow::Result<Value> {
    let bus = node.bus();
    let msg = new_message(
        bus.next_id(),
        "bench",
        to,
        action,
        "application/json",
        body.to_string().into_bytes(),
    );
    let reply = bus.call(msg, Duration::from_secs(600)).await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// (msg/s guest → guest, sorted call round trips in ns) between two copies of `component`.
async fn traffic(component: &str) -> anyhow::Result<(f64, Vec<u64>)> {
    let dir = tempfile::tempdir()?;
    let node = pair(component, dir.path()).await?;
    let burst = |n: u64| json!({ "destination": "sink", "count": n, "size": 64 });
    ask(&node, "producer", "burst", burst(1000)).await?; // warm up
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        ask(&node, "producer", "burst", burst(BURST)).await?;
        ask(&node, "sink", "count", json!(null)).await?; // after every reading: FIFO
        best = best.min(t.elapsed().as_secs_f64());
    }
    let calls = |n: u64| json!({ "destination": "sink", "count": n });
    ask(&node, "producer", "calls", calls(200)).await?;
    let reply = ask(&node, "producer", "calls", calls(CALLS)).await?;
    let mut nanos: Vec<u64> = reply["nanos"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no nanos in {reply}"))?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    nanos.sort_unstable();
    node.shutdown().await;
    Ok((BURST as f64 / best, nanos))
}

/// B8 rows.
pub async fn python() -> anyhow::Result<Vec<Row>> {
    let py = python_guest("py_probe");
    let (py_compile, py_load) = compile_and_load(&py)?;
    let (rs_compile, rs_load) = compile_and_load(&guest("bench_producer"))?;
    let (py_first, py_more) = per_service_mb("py_probe")?;
    let (rs_first, rs_more) = per_service_mb("bench_producer")?;
    let (py_rate, py_calls) = traffic("py_probe").await?;
    let (rs_rate, rs_calls) = traffic("bench_producer").await?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let size = |p: &Path| std::fs::metadata(p).map(|m| mb(m.len())).unwrap_or(0.0);
    Ok(vec![
        Row {
            id: "B8",
            what: format!("Python service (py_probe, {:.1} MB): compile", size(&py)),
            busbar: format!("{py_compile:.1} s"),
            baseline: format!(
                "Rust (bench-producer, {:.2} MB): {:.2} s",
                size(&guest("bench_producer")),
                rs_compile
            ),
            target: "-".into(),
        },
        Row {
            id: "B8",
            what: "Python service: load from the compile cache".into(),
            busbar: format!("{py_load:.1} ms"),
            baseline: format!("Rust: {rs_load:.2} ms"),
            target: verdict("≤ 50 ms", py_load <= 50.0),
        },
        Row {
            id: "B8",
            what: "Python services: RSS of the first, and of each further one".into(),
            busbar: format!("first {py_first:.1} MB, each further {py_more:.1} MB"),
            baseline: format!("Rust: first {rs_first:.2} MB, each further {rs_more:.2} MB"),
            target: verdict("each further ≤ 8 MB", py_more <= 8.0),
        },
        Row {
            id: "B8",
            what: format!("Python guest → Python guest, {BURST} × 64 B"),
            busbar: rate(BURST, BURST as f64 / py_rate),
            baseline: format!(
                "Rust guest → Rust guest: {}",
                rate(BURST, BURST as f64 / rs_rate)
            ),
            target: verdict("≥ 20 k msg/s", py_rate >= 20_000.0),
        },
        Row {
            id: "B8",
            what: format!("Python call round trip, {CALLS} calls"),
            busbar: format!(
                "p50 {:.1} µs, p99 {:.1} µs",
                pct_us(&py_calls, 50.0),
                pct_us(&py_calls, 99.0)
            ),
            baseline: format!(
                "Rust: p50 {:.1} µs, p99 {:.1} µs",
                pct_us(&rs_calls, 50.0),
                pct_us(&rs_calls, 99.0)
            ),
            target: "-".into(),
        },
    ])
}
