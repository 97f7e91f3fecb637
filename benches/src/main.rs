//! `just bench`: every row is busbar's figure beside a baseline measured in the same run, so
//! the table compares ratios on a shared, noisy machine. See docs/BENCHMARKS.md.

mod bus;
mod memory;
mod mqtt;
mod start;

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
    } else {
        format!("{:.0} k msg/s", r / 1e3)
    }
}

/// Nearest-rank percentile of sorted nanoseconds, in µs.
pub fn pct_us(sorted: &[u64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1e3
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    eprintln!("B1 bus throughput ...");
    rows.extend(runtime.block_on(bus::throughput())?);
    eprintln!("B2 call round trip ...");
    rows.extend(runtime.block_on(bus::call_latency())?);
    eprintln!("B3 cold start ...");
    rows.extend(runtime.block_on(start::cold_start())?);
    rows.push(Row {
        id: "B4",
        what: "hot-swap pause under 10,000 msg/s".into(),
        busbar: "not measured: hot swap is not built yet (issue 5)".into(),
        baseline: "-".into(),
        target: "p99 ≤ 5 ms, 0 lost".into(),
    });
    eprintln!("B5 memory ...");
    rows.extend(memory::idle_memory()?);
    rows.push(Row {
        id: "B6",
        what: "D2C to mosquitto, QoS 1, durable spool".into(),
        busbar: "not measured: the MQTT Com is not built yet (issue 4)".into(),
        baseline: "-".into(),
        target: "≥ 50% of a bare rumqttc publisher".into(),
    });
    println!("{}", table(&rows));
    Ok(())
}
