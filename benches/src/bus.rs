//! B1 (bus throughput) and B2 (call round trip): guest to guest through the node, beside
//! native Rust services on the same bus and, for B1, two processes through mosquitto.

use std::time::{Duration, Instant};

use busbar::bus::{Delivery, OnFull, Route, RouteKind};
use busbar::message::{Reply, new_message};
use busbar_tests::{TestNode, service};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::{Row, pct_us, rate, verdict};

const BURST: u64 = 200_000;
const CALLS: u64 = 5_000;

fn manifest() -> String {
    let limits = "limits = { mailbox = 1024, deadline_ms = 600000, submit_per_sec = 0 }";
    [
        service(
            "producer",
            "bench_producer",
            &format!("{limits}\ngrants = {{ destinations = [\"sink\"] }}"),
        ),
        service("sink", "bench_producer", limits),
    ]
    .concat()
}

/// Guest → bus → guest: the time for `sink` to have processed `n` messages of `size` bytes.
async fn guest_burst(node: &TestNode, n: u64, size: usize) -> f64 {
    let t = Instant::now();
    let sent = node
        .call_json(
            "producer",
            "burst",
            &json!({ "destination": "sink", "count": n, "size": size }),
        )
        .await;
    assert_eq!(sent["sent"], n);
    // The sink's mailbox is first in, first out: its answer comes after every reading.
    node.call_json("sink", "count", &json!(null)).await;
    t.elapsed().as_secs_f64()
}

/// A native service on the same bus: counts deliveries, answers calls at once.
fn native_sink(node: &TestNode, name: &str, n: u64) -> oneshot::Receiver<()> {
    let (tx, mut rx) = mpsc::channel::<Delivery>(1024);
    node.node
        .bus()
        .register(
            name,
            Route::new(tx, OnFull::Block(Duration::from_secs(5)), RouteKind::Custom),
        )
        .unwrap();
    let (done_tx, done) = oneshot::channel();
    tokio::spawn(async move {
        let mut seen = 0;
        let mut done_tx = Some(done_tx);
        while let Some(d) = rx.recv().await {
            seen += 1;
            if seen == n
                && let Some(tx) = done_tx.take()
            {
                let _ = tx.send(());
            }
            d.answer(Ok(Some(Reply {
                content_type: String::new(),
                payload: Vec::new(),
            })));
        }
    });
    done
}

/// Native → bus → native, the in-process limit.
async fn native_burst(node: &TestNode, n: u64, size: usize, round: u32) -> f64 {
    let name = format!("native-sink-{size}-{round}");
    let done = native_sink(node, &name, n);
    let bus = node.node.bus().clone();
    let payload = vec![b'x'; size];
    let t = Instant::now();
    for _ in 0..n {
        let msg = new_message(
            bus.next_id(),
            "native-producer",
            &name,
            "reading",
            "application/octet-stream",
            payload.clone(),
        );
        bus.send(msg).await.unwrap();
    }
    done.await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    bus.unregister(&name);
    secs
}

/// B1 rows, one per payload size.
pub async fn throughput() -> anyhow::Result<Vec<Row>> {
    let node = TestNode::start(&manifest()).await?;
    guest_burst(&node, 10_000, 64).await; // warm up: compile, caches, allocator
    let mut rows = Vec::new();
    for size in [64usize, 1024] {
        // Best of 3 each: the machine is shared.
        let mut guest = f64::MAX;
        let mut native = f64::MAX;
        for round in 0..3 {
            guest = guest.min(guest_burst(&node, BURST, size).await);
            native = native.min(native_burst(&node, BURST, size, round).await);
        }
        let mqtt_n = 50_000;
        let ours = BURST as f64 / guest;
        let mqtt = match crate::mqtt::two_process_burst(mqtt_n, size) {
            Ok(s) => format!(
                "{} (busbar {:.1}× faster)",
                rate(mqtt_n, s),
                ours / (mqtt_n as f64 / s)
            ),
            Err(e) => format!("not measured ({e:#})"),
        };
        let ok = ours >= 500_000.0;
        rows.push(Row {
            id: "B1",
            what: format!("guest → guest, {size} B payloads"),
            busbar: rate(BURST, guest),
            baseline: format!(
                "native services: {} (busbar at {:.0}% of it); 2 processes via mosquitto: {mqtt}",
                rate(BURST, native),
                100.0 * native / guest,
            ),
            target: if size == 64 {
                verdict("≥ 500 k msg/s", ok)
            } else {
                "-".into()
            },
        });
    }
    node.shutdown().await;
    Ok(rows)
}

/// B2: `call` round trips between two guests (timed inside the caller) and between two
/// native services.
pub async fn call_latency() -> anyhow::Result<Vec<Row>> {
    let node = TestNode::start(&manifest()).await?;
    let calls = |n: u64| json!({ "destination": "sink", "count": n });
    node.call_json("producer", "calls", &calls(500)).await; // warm up
    let reply = node.call_json("producer", "calls", &calls(CALLS)).await;
    let mut guest: Vec<u64> = reply["nanos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    guest.sort_unstable();

    // It never sees u64::MAX messages: nobody waits for its "done".
    drop(native_sink(&node, "native-responder", u64::MAX));
    let bus = node.node.bus().clone();
    let mut native = Vec::with_capacity(CALLS as usize);
    for i in 0..CALLS + 500 {
        let msg = new_message(
            bus.next_id(),
            "native-caller",
            "native-responder",
            "ping",
            "application/octet-stream",
            vec![0; 16],
        );
        let t = Instant::now();
        bus.call(msg, Duration::from_secs(5)).await.unwrap();
        if i >= 500 {
            native.push(t.elapsed().as_nanos() as u64);
        }
    }
    native.sort_unstable();
    node.shutdown().await;
    Ok(vec![Row {
        id: "B2",
        what: format!("call round trip guest → guest, {CALLS} calls"),
        busbar: format!(
            "p50 {:.1} µs, p99 {:.1} µs",
            pct_us(&guest, 50.0),
            pct_us(&guest, 99.0)
        ),
        baseline: format!(
            "native → native on the bus: p50 {:.1} µs, p99 {:.1} µs",
            pct_us(&native, 50.0),
            pct_us(&native, 99.0)
        ),
        target: "-".into(),
    }])
}
