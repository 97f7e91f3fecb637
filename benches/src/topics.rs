//! B10: services on MQTT topics. Publishes from a device through a local mosquitto to a
//! service (throughput; round trip through `mqtt-echo`), beside a bare rumqttc MQTT 5 client
//! doing the same in the same run; and the topic trie's match time at 10, 1,000 and 10,000
//! filters beside a linear scan of the same filters.

use std::time::{Duration, Instant};

use busbar::topics::trie::Trie;
use busbar_base::topic::{TopicFilter, TopicName};
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, service};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{Row, pct_us, rate, verdict};

const N: u64 = 20_000;
const ROUND_TRIPS: usize = 1_000;

fn config(port: u16) -> String {
    format!(
        "[brokers.field]\nhost = \"127.0.0.1\"\nport = {port}\nbase_topic = \"site\"\ndefault = true\n"
    )
}

/// A client on the broker whose publishes arrive on a channel.
async fn client(
    port: u16,
    id: &str,
    filters: &[&str],
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    o.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(o, 4096);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_) | Packet::SubAck(_))) => {
                    let _ = ready_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let _ = tx.send((topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _ = ready.recv().await;
    for f in filters {
        let _ = client.subscribe(*f, QoS::AtLeastOnce).await;
        let _ = ready.recv().await;
    }
    (client, rx)
}

/// Publishes `N` QoS 1 messages on `bench/{i % 10}`.
async fn burst(publisher: &AsyncClient) -> anyhow::Result<()> {
    for i in 0..N {
        publisher
            .publish(
                format!("bench/{}", i % 10),
                QoS::AtLeastOnce,
                false,
                json!({ "n": i }).to_string(),
            )
            .await?;
    }
    Ok(())
}

/// Seconds for a bare subscriber to get `N` publishes.
async fn bare_throughput(port: u16, publisher: &AsyncClient) -> anyhow::Result<f64> {
    let (_sub, mut rx) = client(port, "bench-bare-sub", &["bench/#"]).await;
    let t = Instant::now();
    burst(publisher).await?;
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the bare subscriber stopped"))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// How many publishes the probe has counted (0 while its mailbox is too full to ask).
async fn probe_count(node: &TestNode) -> anyhow::Result<u64> {
    Ok(
        match node
            .call("probe", "count", &json!({}), Duration::from_secs(30))
            .await
        {
            Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)?["count"]
                .as_u64()
                .unwrap_or(0),
            Err(_) => 0,
        },
    )
}

/// Seconds for a service subscribed to `/bench/#` to have `N` more publishes.
async fn busbar_throughput(node: &TestNode, publisher: &AsyncClient) -> anyhow::Result<f64> {
    // It also got the bare subscriber's burst: once all of it is in, count from there.
    let until = Instant::now() + Duration::from_secs(300);
    let mut before = probe_count(node).await?;
    while before < N {
        anyhow::ensure!(
            Instant::now() < until,
            "the probe got {before} of the first {N}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        before = probe_count(node).await?;
    }
    let t = Instant::now();
    burst(publisher).await?;
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        // Refused while its mailbox is full of publishes: asked again.
        let count = probe_count(node).await?;
        if count >= before + N {
            break;
        }
        anyhow::ensure!(Instant::now() < until, "the probe got {count} of {N}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Round trips (ns, sorted) of a request on `request` answered on `reply`.
async fn round_trips(port: u16, request: &str, reply: &str) -> anyhow::Result<Vec<u64>> {
    let (c, mut rx) = client(port, "bench-requester", &[reply]).await;
    let mut out = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 50 {
        let t = Instant::now();
        c.publish(request, QoS::AtLeastOnce, false, format!("{i}"))
            .await?;
        loop {
            let (_, payload) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the requester stopped"))?;
            if payload == format!("{i}").as_bytes() {
                break;
            }
        }
        // The first 50 warm up.
        if i >= 50 {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A bare MQTT 5 echo: answers `bench/echo/requests/+` on `bench/echo/replies/{id}`.
async fn bare_echo(port: u16) -> tokio::task::JoinHandle<()> {
    let (c, mut rx) = client(port, "bench-bare-echo", &["bench/echo/requests/+"]).await;
    tokio::spawn(async move {
        while let Some((topic, payload)) = rx.recv().await {
            let id = topic.rsplit('/').next().unwrap_or("0").to_owned();
            let _ = c
                .publish_with_properties(
                    format!("bench/echo/replies/{id}"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                    PublishProperties::default(),
                )
                .await;
        }
    })
}

/// The MQTT part of B10.
async fn through_mosquitto() -> anyhow::Result<Vec<Row>> {
    let broker = Mosquitto::try_start()?;
    let (publisher, _) = client(broker.port, "bench-publisher", &[]).await;
    let manifest = [
        service(
            "probe",
            "topic_probe",
            "grants.topics = { subscribe = [\"/bench/#\"] }\nsubscribe = [{ filter = \"/bench/#\" }]\n\
             config = { keep = false }\nlimits = { mailbox = 4096, deadline_ms = 600000 }\n",
        ),
        service(
            "echo",
            "mqtt_echo",
            "grants.topics = { subscribe = [\"requests/+\"], publish = [\"replies/+\"] }\n",
        ),
    ]
    .concat();
    let node = TestNode::start_with(&manifest, &config(broker.port)).await?;
    for s in ["probe", "echo"] {
        node.wait_state(s, busbar::service::State::Running).await;
    }
    let bare = bare_throughput(broker.port, &publisher).await?;
    let ours = busbar_throughput(&node, &publisher).await?;
    let ratio = bare / ours;
    let echo = bare_echo(broker.port).await;
    let base = round_trips(broker.port, "bench/echo/requests/1", "bench/echo/replies/1").await?;
    echo.abort();
    let rt = round_trips(broker.port, "site/echo/requests/1", "site/echo/replies/1").await?;
    node.shutdown().await;
    let goal = "≥ 50% of a bare rumqttc subscriber";
    Ok(vec![
        Row {
            id: "B10",
            what: format!("topic → service, QoS 1 through mosquitto ({N} publishes, 10 topics)"),
            busbar: format!(
                "{} ({:.0}% of the bare subscriber)",
                rate(N, ours),
                ratio * 100.0
            ),
            baseline: format!("bare rumqttc MQTT 5 subscriber: {}", rate(N, bare)),
            target: verdict(goal, ratio >= 0.5),
        },
        Row {
            id: "B10",
            what: format!(
                "request → service → reply through mosquitto ({ROUND_TRIPS} sequential, `mqtt-echo`)"
            ),
            busbar: format!(
                "p50 {:.0} µs, p99 {:.0} µs",
                pct_us(&rt, 50.0),
                pct_us(&rt, 99.0)
            ),
            baseline: format!(
                "bare rumqttc echo client: p50 {:.0} µs, p99 {:.0} µs",
                pct_us(&base, 50.0),
                pct_us(&base, 99.0)
            ),
            target: verdict(
                "p50 ≤ 2× the bare echo's",
                pct_us(&rt, 50.0) <= 2.0 * pct_us(&base, 50.0),
            ),
        },
    ])
}

/// Filters of a gateway: per-device exact topics, a few single-level wildcards and prefixes.
fn filters(n: usize) -> Vec<TopicFilter> {
    (0..n)
        .map(|i| match i % 10 {
            0 => format!("site/{}/+/state", i / 10),
            1 => format!("site/{}/#", i / 10),
            _ => format!("site/{}/dev{}/temperature", i / 10, i),
        })
        .map(|f| TopicFilter::parse(&f).expect("a valid filter"))
        .collect()
}

/// ns per match of `topics` against `n` filters: the trie, and a linear scan.
fn match_times(n: usize, topics: &[TopicName]) -> (f64, f64, usize) {
    let filters = filters(n);
    let mut trie = Trie::new();
    for (i, f) in filters.iter().enumerate() {
        trie.insert(f.pattern(), i);
    }
    let rounds = 200;
    let mut hits = 0usize;
    let t = Instant::now();
    for _ in 0..rounds {
        for topic in topics {
            trie.for_each_match(topic.as_str(), |_| hits += 1);
        }
    }
    let trie_ns = t.elapsed().as_nanos() as f64 / (rounds * topics.len()) as f64;
    let mut scanned = 0usize;
    let scan_rounds = (rounds * 10 / n.max(10)).max(1);
    let t = Instant::now();
    for _ in 0..scan_rounds {
        for topic in topics {
            scanned += filters.iter().filter(|f| f.matches(topic)).count();
        }
    }
    let scan_ns = t.elapsed().as_nanos() as f64 / (scan_rounds * topics.len()) as f64;
    assert_eq!(
        hits / rounds,
        scanned / scan_rounds,
        "the trie and the scan agree"
    );
    (trie_ns, scan_ns, hits / rounds / topics.len().max(1))
}

/// The trie part of B10.
fn trie_rows() -> Vec<Row> {
    let topics: Vec<TopicName> = (0..100)
        .map(|i| {
            let text = format!("site/{}/dev{}/temperature", i % 100, i * 7);
            TopicName::parse(&text).expect("a valid topic")
        })
        .collect();
    let mut rows = Vec::new();
    let (t10, _, _) = match_times(10, &topics);
    for n in [10usize, 1_000, 10_000] {
        let (trie, scan, _) = match_times(n, &topics);
        rows.push(Row {
            id: "B10",
            what: format!("topic trie: match one topic against {n} filters"),
            busbar: format!("{trie:.0} ns"),
            baseline: format!("linear scan of the same filters: {scan:.0} ns"),
            target: verdict(
                "independent of the number of filters (≤ 4× the time at 10)",
                trie <= 4.0 * t10.max(50.0),
            ),
        });
    }
    rows
}

/// B10 rows.
pub async fn topics() -> anyhow::Result<Vec<Row>> {
    let mut rows = match through_mosquitto().await {
        Ok(rows) => rows,
        Err(e) => vec![Row {
            id: "B10",
            what: "topic → service through mosquitto".into(),
            busbar: format!("not measured: {e:#}"),
            baseline: "-".into(),
            target: "≥ 50% of a bare rumqttc subscriber".into(),
        }],
    };
    rows.extend(trie_rows());
    Ok(rows)
}
