//! B11: services across gateways, through a local mosquitto. A call from one node to a
//! service on another (round trip) beside a bare rumqttc MQTT 5 request/response in the same
//! run; and a group of 1 and of 3 consumer nodes taking messages with 2 ms of work each,
//! beside bare rumqttc consumers on a shared subscription doing the same work.

use std::time::{Duration, Instant};

use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, service};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;

use crate::{Row, pct_us, rate, verdict};

const ROUND_TRIPS: usize = 1_000;
/// Messages per throughput run.
const JOBS: u64 = 600;
/// Work per message.
const WORK_MS: u64 = 2;
/// Sends in flight from the sending node.
const SENDERS: u64 = 32;

fn config(port: u16) -> String {
    format!("[brokers.site]\nhost = \"127.0.0.1\"\nport = {port}\n\n[fabric]\nbroker = \"site\"\n")
}

/// A node on the fabric of the broker on `port`.
async fn node(port: u16, id: &str, manifest: &str) -> anyhow::Result<TestNode> {
    let node = TestNode::start_as(
        id,
        manifest,
        &format!(
            "{}\n[com]\nkind = \"file\"\npath = \"com.jsonl\"\n",
            config(port)
        ),
    )
    .await?;
    Ok(node)
}

/// Waits until `from` reaches `destination`.
async fn reachable(from: &TestNode, destination: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = from
            .call(destination, "echo", &json!({}), Duration::from_secs(2))
            .await;
        if r.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{destination} never answered: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Round trips (ns, sorted) of calls from `from` to `destination`.
async fn call_round_trips(from: &TestNode, destination: &str) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 50 {
        let t = Instant::now();
        from.call(
            destination,
            "echo",
            &json!({ "i": i }),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| anyhow::anyhow!("call {i}: {e}"))?;
        if i >= 50 {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// An MQTT 5 client whose publishes arrive on a channel, with TCP_NODELAY.
async fn client(
    port: u16,
    id: &str,
    filter: Option<&str>,
) -> anyhow::Result<(
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
)> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    o.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(o, 4096);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_) | Packet::SubAck(_))) => {
                    let _ = ready_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _ = ready.recv().await;
    if let Some(f) = filter {
        client.subscribe(f, QoS::AtLeastOnce).await?;
        let _ = ready.recv().await;
    }
    Ok((client, rx))
}

/// Round trips (ns, sorted) of a bare MQTT 5 request/response: response topic and
/// correlation data, a bare responder echoing the payload.
async fn bare_round_trips(port: u16) -> anyhow::Result<Vec<u64>> {
    let (responder, mut requests) =
        client(port, "bench-bare-responder", Some("bare/requests")).await?;
    let serve = tokio::spawn(async move {
        while let Some(p) = requests.recv().await {
            let props = p.properties.clone().unwrap_or_default();
            let Some(to) = props.response_topic.clone() else {
                continue;
            };
            let reply = PublishProperties {
                correlation_data: props.correlation_data,
                ..Default::default()
            };
            let _ = responder
                .publish_with_properties(to, QoS::AtLeastOnce, false, p.payload.to_vec(), reply)
                .await;
        }
    });
    let (requester, mut replies) =
        client(port, "bench-bare-requester", Some("bare/replies")).await?;
    let mut out = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 50 {
        let id = format!("{i}");
        let props = PublishProperties {
            response_topic: Some("bare/replies".into()),
            correlation_data: Some(id.clone().into_bytes().into()),
            ..Default::default()
        };
        let t = Instant::now();
        requester
            .publish_with_properties(
                "bare/requests",
                QoS::AtLeastOnce,
                false,
                json!({ "i": i }).to_string(),
                props,
            )
            .await?;
        loop {
            let p = tokio::time::timeout(Duration::from_secs(30), replies.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the bare requester stopped"))?;
            let corr = p
                .properties
                .as_ref()
                .and_then(|p| p.correlation_data.clone());
            if corr.as_deref() == Some(id.as_bytes()) {
                break;
            }
        }
        if i >= 50 {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    serve.abort();
    out.sort_unstable();
    Ok(out)
}

/// Messages processed by `service` on `nodes`.
fn processed(nodes: &[TestNode], service: &str) -> u64 {
    nodes
        .iter()
        .flat_map(|n| n.node.report())
        .filter(|s| s.name == service)
        .map(|s| s.counters.processed)
        .sum()
}

/// Seconds for the group `echo@workers` on `workers` to process `JOBS` sends from `from`,
/// `SENDERS` at a time, each `WORK_MS` of work.
async fn group_run(from: &TestNode, workers: &[TestNode]) -> anyhow::Result<f64> {
    let before = processed(workers, "echo");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let bus = from.node.bus().clone();
        tasks.push(tokio::spawn(async move {
            let mut i = s;
            while i < JOBS {
                let msg = busbar::message::new_message(
                    bus.next_id(),
                    "bench",
                    "echo@workers",
                    "sleep",
                    "application/json",
                    json!({ "ms": WORK_MS }).to_string().into_bytes(),
                );
                match bus.send(msg).await {
                    Ok(_) => i += SENDERS,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let until = Instant::now() + Duration::from_secs(120);
    while processed(workers, "echo") < before + JOBS {
        anyhow::ensure!(
            Instant::now() < until,
            "the group processed {} of {JOBS}",
            processed(workers, "echo") - before
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds for `consumers` bare MQTT 5 clients on a shared subscription to take `JOBS`
/// publishes with `WORK_MS` of work each.
async fn bare_group_run(port: u16, consumers: usize, round: usize) -> anyhow::Result<f64> {
    let filter = format!("$share/bare{round}/bare/jobs/{round}");
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for c in 0..consumers {
        let (_client, mut rx) = client(
            port,
            &format!("bench-bare-worker-{round}-{c}"),
            Some(&filter),
        )
        .await?;
        let done_tx = done_tx.clone();
        handles.push(tokio::spawn(async move {
            let _keep = _client;
            while rx.recv().await.is_some() {
                tokio::time::sleep(Duration::from_millis(WORK_MS)).await;
                let _ = done_tx.send(());
            }
        }));
    }
    let (publisher, _) = client(port, &format!("bench-bare-jobs-{round}"), None).await?;
    let t = Instant::now();
    for i in 0..JOBS {
        publisher
            .publish(
                format!("bare/jobs/{round}"),
                QoS::AtLeastOnce,
                false,
                format!("{i}"),
            )
            .await?;
    }
    for _ in 0..JOBS {
        tokio::time::timeout(Duration::from_secs(120), done.recv()).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    for h in handles {
        h.abort();
    }
    Ok(secs)
}

/// B11.
pub async fn fabric() -> anyhow::Result<Vec<Row>> {
    let broker = Mosquitto::try_start()?;
    let port = broker.port;
    let echo = service(
        "echo",
        "echo",
        "shared = \"workers\"\nlimits = { mailbox = 4096 }\n",
    );
    let sender = node(port, "gw0", "").await?;
    let mut workers = vec![node(port, "gw1", &echo).await?];
    for w in &workers {
        w.wait_state("echo", busbar::service::State::Running).await;
    }
    reachable(&sender, "echo@gw1").await?;
    let rt = call_round_trips(&sender, "echo@gw1").await?;
    let base = bare_round_trips(port).await?;
    let one = group_run(&sender, &workers).await?;
    for id in ["gw2", "gw3"] {
        let w = node(port, id, &echo).await?;
        w.wait_state("echo", busbar::service::State::Running).await;
        reachable(&sender, &format!("echo@{id}")).await?;
        workers.push(w);
    }
    let three = group_run(&sender, &workers).await?;
    let bare_one = bare_group_run(port, 1, 1).await?;
    let bare_three = bare_group_run(port, 3, 3).await?;
    for w in workers {
        w.shutdown().await;
    }
    sender.shutdown().await;
    let work = format!("{JOBS} sends, {WORK_MS} ms of work each, {SENDERS} in flight");
    Ok(vec![
        Row {
            id: "B11",
            what: format!(
                "call to a service on another node through mosquitto ({ROUND_TRIPS} sequential, `echo`)"
            ),
            busbar: format!(
                "p50 {:.0} µs, p99 {:.0} µs",
                pct_us(&rt, 50.0),
                pct_us(&rt, 99.0)
            ),
            baseline: format!(
                "bare rumqttc MQTT 5 request/response: p50 {:.0} µs, p99 {:.0} µs",
                pct_us(&base, 50.0),
                pct_us(&base, 99.0)
            ),
            target: verdict(
                "p50 ≤ 3× the bare request/response's",
                pct_us(&rt, 50.0) <= 3.0 * pct_us(&base, 50.0),
            ),
        },
        Row {
            id: "B11",
            what: format!("a group of 1 consumer node ({work})"),
            busbar: rate(JOBS, one),
            baseline: format!(
                "1 bare rumqttc consumer on a shared subscription: {}",
                rate(JOBS, bare_one)
            ),
            target: verdict("≥ 50% of the bare consumer's", bare_one / one >= 0.5),
        },
        Row {
            id: "B11",
            what: format!("a group of 3 consumer nodes ({work})"),
            busbar: format!("{} ({:.1}× one node)", rate(JOBS, three), one / three),
            baseline: format!(
                "3 bare rumqttc consumers on a shared subscription: {}",
                rate(JOBS, bare_three)
            ),
            target: verdict("≥ 2× one consumer node", one / three >= 2.0),
        },
    ])
}
