//! `just bench`: every row is busbar's figure beside a baseline measured in the same run, so
//! the table compares ratios on a shared, noisy machine. See docs/BENCHMARKS.md.

mod bus;
mod com;
mod delivery;
mod fabric;
mod hub_scale;
mod memory;
mod mqtt;
mod python;
mod spool;
mod start;
mod swap;
mod topics;

use std::fmt::Write as _;

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    /// B1, B2, ...
    pub id: &'static str,
    /// What is measured.
    pub what: String,
    /// busbar's figure.
    pub busbar: String,
    /// The baseline's figure and what it is.
    pub baseline: String,
    /// The target from the issue, and whether it was met.
    pub target: String,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| row | measured | busbar | baseline (same run) | target |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.id, r.what, r.busbar, r.baseline, r.target
        );
    }
    out
}

/// The target column: the goal and whether this run met it.
pub fn verdict(goal: &str, met: bool) -> String {
    format!("{goal}: {}", if met { "met" } else { "missed" })
}

/// Messages per second, readable.
pub fn rate(n: u64, secs: f64) -> String {
    let r = n as f64 / secs;
    if r >= 1e6 {
        format!("{:.2} M msg/s", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.0} k msg/s", r / 1e3)
    } else {
        format!("{r:.0} msg/s")
    }
}

/// The middle value (upper middle for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile of sorted nanoseconds, in µs.
pub fn pct_us(sorted: &[u64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1e3
}

/// Whether row `id` is to run: all of them, or those `BUSBAR_BENCH_ROWS` lists (e.g. `B4,B6`).
fn selected(id: &str) -> bool {
    std::env::var("BUSBAR_BENCH_ROWS").map_or(true, |rows| rows.split(',').any(|r| r.trim() == id))
}

fn main() -> anyhow::Result<()> {
    // A child of row B12: simulated fleet nodes, not the table.
    if let Ok(spec) = std::env::var(hub_scale::SIM_ENV) {
        return hub_scale::simulate(&spec);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    if selected("B1") {
        eprintln!("B1 bus throughput ...");
        rows.extend(runtime.block_on(bus::throughput())?);
    }
    if selected("B2") {
        eprintln!("B2 call round trip ...");
        rows.extend(runtime.block_on(bus::call_latency())?);
    }
    if selected("B3") {
        eprintln!("B3 cold start ...");
        rows.extend(runtime.block_on(start::cold_start())?);
    }
    if selected("B4") {
        eprintln!("B4 hot swap ...");
        rows.extend(runtime.block_on(swap::hot_swap())?);
    }
    if selected("B5") {
        eprintln!("B5 memory ...");
        rows.extend(memory::idle_memory()?);
    }
    if selected("B6") {
        eprintln!("B6 Com throughput ...");
        rows.extend(runtime.block_on(com::throughput())?);
    }
    if selected("B7") {
        eprintln!("B7 spool under storage faults ...");
        rows.extend(spool::faults()?);
    }
    if selected("B8") {
        eprintln!("B8 Python services ...");
        rows.extend(runtime.block_on(python::python())?);
    }
    if selected("B9") {
        eprintln!("B9 precompiled delivery ...");
        rows.extend(runtime.block_on(delivery::delivery())?);
    }
    if selected("B10") {
        eprintln!("B10 services on MQTT topics ...");
        rows.extend(runtime.block_on(topics::topics())?);
    }
    if selected("B11") {
        eprintln!("B11 services across gateways ...");
        rows.extend(runtime.block_on(fabric::fabric())?);
    }
    if selected("B12") {
        eprintln!("B12 one hub for 20,000 gateways ...");
        rows.extend(runtime.block_on(hub_scale::hub_scale())?);
    }
    println!("{}", table(&rows));
    Ok(())
}
