//! B3: cold start. Loading one component from the compile cache beside compiling it, and a
//! node of 10 services from start to its first routed message, cached and uncached.

use std::path::Path;
use std::time::{Duration, Instant};

use busbar::cache::CompileCache;
use busbar::component::{ComponentSource, Loader};
use busbar::config::NodeConfig;
use busbar::engine::EngineConfig;
use busbar::host::HostContext;
use busbar::manifest::Manifest;
use busbar::message::new_message;
use busbar::node::Node;
use busbar::service::Instance;
use busbar_tests::{guest, service};

use crate::{Row, median, verdict};

/// Median µs to load `echo` with a fresh loader (so nothing is shared in memory).
fn load_us(cache: Option<&Path>, rounds: usize) -> anyhow::Result<f64> {
    let engine = EngineConfig::default().build()?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let loader = Loader::new(
            engine.clone(),
            CompileCache::new(&engine, cache.map(Path::to_path_buf))?,
        )?;
        let t = Instant::now();
        loader.load_blocking(&ComponentSource::file(guest("echo")))?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(times))
}

/// Median µs to create a store, instantiate an already loaded `raw-counter`, run its `start`,
/// and drop it: what each further service (or restart) costs once its code is in memory.
async fn instantiate_us(rounds: usize) -> anyhow::Result<f64> {
    let engine = EngineConfig::default().build()?;
    let loader = Loader::new(engine.clone(), CompileCache::new(&engine, None)?)?;
    let component = loader.load_blocking(&ComponentSource::file(guest("raw_counter")))?;
    let _ticker = busbar::engine::EpochTicker::start(engine, Duration::from_millis(10));
    let bus = busbar::bus::Bus::new(busbar::bus::DEFAULT_MAX_PAYLOAD);
    let (mailbox, _rx) = tokio::sync::mpsc::channel(1);
    let ctx = HostContext {
        service: "bench".into(),
        bus,
        mailbox,
        properties: Default::default(),
        counters: Default::default(),
        memory_bytes: 16 << 20,
        sandbox: Default::default(),
        granted: Default::default(),
    };
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let mut instance = Instance::new(&component, ctx.clone(), Duration::from_secs(1))
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))?;
        instance.start().await.map_err(|f| anyhow::anyhow!("{f}"))?;
        drop(instance);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(times))
}

/// Median µs to start a native process and wait for it (`true`): what a design with one
/// process per service pays for each service started.
fn process_us(rounds: usize) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        std::process::Command::new("true").status()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(times))
}

/// Milliseconds from `Node::start` to the answer of a call to the last of 10 services.
async fn node_start_ms(dir: &Path, cached: bool) -> anyhow::Result<f64> {
    let config = NodeConfig {
        cache_dir: Some(dir.join("cache")),
        compile_cache: cached,
        com: busbar::com::ComConfig::File {
            path: dir.join("com.jsonl"),
        },
        ..NodeConfig::default()
    };
    // Ten different components, so "uncached" compiles ten times, as a fresh gateway would.
    let components = [
        "echo",
        "raw_counter",
        "aggregator",
        "threshold_alert",
        "faulty",
        "bench_producer",
        "temperature_sensor",
        "echo",
        "raw_counter",
        "aggregator",
    ];
    let text: String = components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let extra = if *c == "temperature_sensor" {
                "config = { count = 0 }"
            } else {
                ""
            };
            service(&format!("s{i}"), c, extra)
        })
        .collect();
    let manifest = Manifest::parse(&text, false, "<bench>", dir)?;
    let t = Instant::now();
    let node = Node::start(&config, &manifest).await?;
    let bus = node.bus().clone();
    // `s0` (echo) answers once it runs; the message waits in its mailbox until then.
    let msg = new_message(
        bus.next_id(),
        "bench",
        "s0",
        "echo",
        "text/plain",
        b"hi".to_vec(),
    );
    bus.call(msg, Duration::from_secs(60)).await?;
    node.settled().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    node.shutdown().await;
    Ok(ms)
}

/// B3 rows.
pub async fn cold_start() -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("load-cache");
    let compile = load_us(None, 5)?;
    load_us(Some(&cache), 1)?; // fill the cache
    let cached = load_us(Some(&cache), 21)?;

    let mut uncached_ms = Vec::new();
    let mut cached_ms = Vec::new();
    for round in 0..3 {
        let d = dir.path().join(format!("node-{round}"));
        std::fs::create_dir_all(&d)?;
        uncached_ms.push(node_start_ms(&d, false).await?);
        node_start_ms(&d, true).await?; // fills this node's cache
        cached_ms.push(node_start_ms(&d, true).await?);
    }
    let (node_cached, node_uncached) = (median(cached_ms), median(uncached_ms));
    let instantiate = instantiate_us(201).await?;
    let process = process_us(51)?;
    Ok(vec![
        Row {
            id: "B3",
            what: "start one more service: store + instantiate + `start` (code loaded)".into(),
            busbar: format!("{instantiate:.0} µs"),
            baseline: format!("starting a native process (`true`): {process:.0} µs"),
            target: verdict("≤ 50 µs", instantiate <= 50.0),
        },
        Row {
            id: "B3",
            what: "load one component (echo, 155 KB) from the compile cache".into(),
            busbar: format!("{cached:.0} µs"),
            baseline: format!("compiling it from .wasm: {:.1} ms", compile / 1e3),
            target: verdict("≤ 50 µs", cached <= 50.0),
        },
        Row {
            id: "B3",
            what: "node start → all 10 services running, first call answered".into(),
            busbar: format!("{node_cached:.1} ms (cached)"),
            baseline: format!("uncached (compiling 10 components): {node_uncached:.1} ms"),
            target: verdict("≤ 50 ms", node_cached <= 50.0),
        },
    ])
}
