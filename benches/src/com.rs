//! B6: device-to-cloud throughput of the MQTT Com (QoS 1, every message in the durable spool
//! before it is accepted) to a local mosquitto, beside a bare rumqttc QoS 1 publisher sending
//! the same payloads in the same run. Both are timed until a subscriber has every message.

use std::time::{Duration, Instant};

use busbar_tests::mqtt::{Cloud, Mosquitto};
use busbar_tests::{TestNode, service};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

use crate::{Row, rate, verdict};

const N: u64 = 20_000;
const D2C: &str = "busbar/test-node/d2c";
const BARE: &str = "bench/bare";

async fn wait_received(cloud: &Cloud, topic: &str, n: u64) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(300);
    while (cloud.on(topic).len() as u64) < n {
        anyhow::ensure!(Instant::now() < until, "{topic}: not every message arrived");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Seconds for the Com to deliver `N` messages submitted by a guest.
async fn through_com(port: u16, cloud: &Cloud) -> anyhow::Result<f64> {
    let manifest = service(
        "probe",
        "cloud_probe",
        "[services.limits]\ndeadline_ms = 600000\nsubmit_per_sec = 0",
    );
    let config = format!("[com]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n");
    let node = TestNode::start_raw(&manifest, &config).await?;
    node.wait_state("probe", busbar::service::State::Running)
        .await;
    let t = Instant::now();
    let reply = node
        .call(
            "probe",
            "burst",
            &json!({ "count": N }),
            Duration::from_secs(600),
        )
        .await?;
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(reply["accepted"] == N, "the Com refused some: {reply}");
    wait_received(cloud, D2C, N).await?;
    let secs = t.elapsed().as_secs_f64();
    node.shutdown().await;
    Ok(secs)
}

/// Seconds for a bare rumqttc client to deliver `N` QoS 1 messages of the same payloads.
async fn bare(port: u16, cloud: &Cloud) -> anyhow::Result<f64> {
    let mut o = MqttOptions::new("bench-bare", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(o, 1024);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let t = Instant::now();
    for n in 0..N {
        client
            .publish(BARE, QoS::AtLeastOnce, false, json!({ "n": n }).to_string())
            .await?;
    }
    wait_received(cloud, BARE, N).await?;
    let secs = t.elapsed().as_secs_f64();
    driver.abort();
    Ok(secs)
}

/// B6 row.
pub async fn throughput() -> anyhow::Result<Vec<Row>> {
    let what = format!("D2C to mosquitto, QoS 1, durable spool ({N} messages)");
    let broker = match Mosquitto::try_start() {
        Ok(b) => b,
        Err(e) => {
            return Ok(vec![Row {
                id: "B6",
                what,
                busbar: format!("not measured: {e:#}"),
                baseline: "-".into(),
                target: "≥ 50% of a bare rumqttc publisher".into(),
            }]);
        }
    };
    let cloud = Cloud::connect(broker.port, &[D2C, BARE]).await;
    let base = bare(broker.port, &cloud).await?;
    let com = through_com(broker.port, &cloud).await?;
    let ratio = base / com;
    Ok(vec![Row {
        id: "B6",
        what,
        busbar: format!(
            "{} ({:.0}% of the bare publisher)",
            rate(N, com),
            ratio * 100.0
        ),
        baseline: format!("bare rumqttc QoS 1 publisher: {}", rate(N, base)),
        target: verdict("≥ 50% of a bare rumqttc publisher", ratio >= 0.5),
    }])
}
