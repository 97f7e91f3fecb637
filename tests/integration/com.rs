//! The MQTT Com against a real mosquitto: the Azure IoT Hub dialect (D2C properties, twin,
//! desired state, direct methods, C2D, SAS renewal), the plain dialect, the durable spool
//! across a broker outage and a SIGKILL, the spool quota, and the hub's size limit.

use std::collections::BTreeMap;
use std::time::Duration;

use busbar_tests::admin::Metrics;
use busbar_tests::mqtt::{Cloud, Mosquitto, Received};
use busbar_tests::process::Busbar;
use busbar_tests::{TestNode, eventually, service};
use serde_json::{Value, json};

const KEY: &str = "c2VjcmV0LWtleQ==";

fn probe() -> String {
    service(
        "probe",
        "cloud_probe",
        "[services.limits]\ndeadline_ms = 120000\nsubmit_per_sec = 0",
    )
}

fn azure_config(port: u16, extra: &str) -> String {
    format!(
        "max_payload_bytes = 1048576\n[com]\nkind = \"azure-iot-hub\"\n\
         connection_string = \"HostName=127.0.0.1;DeviceId=gw;SharedAccessKey={KEY}\"\n\
         tls = false\nport = {port}\nbackoff_max_ms = 500\ndefault_service = \"probe\"\n{extra}"
    )
}

fn plain_config(port: u16, extra: &str) -> String {
    format!(
        "[com]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\nbackoff_max_ms = 500\n{extra}"
    )
}

const D2C: &str = "devices/gw/messages/events/";

fn has_prop(r: &Received, prop: &str) -> bool {
    r.topic
        .split('/')
        .next_back()
        .unwrap_or("")
        .split('&')
        .any(|p| p == prop)
}

/// `n` of every burst message received, in arrival order, with its message id.
fn burst_numbers(msgs: &[Received], plain: bool) -> Vec<(u64, String)> {
    msgs.iter()
        .filter_map(|r| {
            let v = r.json();
            if plain {
                Some((v["payload"]["n"].as_u64()?, v["id"].as_str()?.to_owned()))
            } else {
                let id = r
                    .topic
                    .split("%24.mid=")
                    .nth(1)?
                    .split('&')
                    .next()?
                    .to_owned();
                Some((v["n"].as_u64()?, id))
            }
        })
        .collect()
}

/// Every number below `count` arrived; first arrivals are in order; a repeat carries the
/// same message id as the first (a resend, never a new message). Returns the repeats.
fn assert_complete_in_order(got: &[(u64, String)], count: u64) -> usize {
    let mut first: BTreeMap<u64, &str> = BTreeMap::new();
    let mut order = Vec::new();
    let mut repeats = 0;
    for (n, id) in got {
        match first.get(n) {
            Some(seen) => {
                assert_eq!(seen, id, "message {n} arrived twice with different ids");
                repeats += 1;
            }
            None => {
                first.insert(*n, id);
                order.push(*n);
            }
        }
    }
    let missing: Vec<u64> = (0..count)
        .filter(|n| !first.contains_key(n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lost messages, e.g. {missing:?}");
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "messages out of order"
    );
    repeats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_iot_hub_d2c_twin_methods_c2d_and_limits() {
    let broker = Mosquitto::start();
    let cloud = Cloud::connect(
        broker.port,
        &[
            "devices/gw/messages/events/#",
            "$iothub/twin/GET/#",
            "$iothub/twin/PATCH/properties/reported/#",
            "$iothub/methods/res/#",
        ],
    )
    .await;
    *cloud.twin.lock().unwrap() =
        json!({"msb-state": {"enabled": true, "debug": false}, "threshold": 5, "$version": 1});
    let node = TestNode::start_raw(&probe(), &azure_config(broker.port, ""))
        .await
        .unwrap();

    // Twin GET on connect → desired state → `state-update` in the guest, which submits it:
    // a D2C message with IoT Hub's properties.
    let state = cloud
        .wait_for("state D2C", 1, |r| {
            r.topic.starts_with(D2C) && has_prop(r, "kind=state")
        })
        .await;
    assert_eq!(state[0].json()["state"]["threshold"], 5);
    for prop in ["%24.ct=application%2Fjson", "%24.ce=utf-8", "source=probe"] {
        assert!(
            has_prop(&state[0], prop),
            "{prop} missing in {}",
            state[0].topic
        );
    }
    assert!(state[0].topic.contains("%24.mid="), "{}", state[0].topic);
    // Reported properties: the node's services and state.
    let reported = cloud
        .wait_for("a report", 1, |r| {
            r.topic
                .starts_with("$iothub/twin/PATCH/properties/reported/")
                && r.json()["services"]["probe"]["state"] == "running"
        })
        .await;
    assert_eq!(reported[0].json()["msb-state"]["enabled"], true);

    // C2D: to the named service, else to the default one.
    cloud
        .publish(
            "devices/gw/messages/devicebound/%24.mid=c1&service=probe&action=c2d",
            "hello",
            false,
        )
        .await;
    cloud
        .publish(
            "devices/gw/messages/devicebound/%24.mid=c2&action=c2d",
            "again",
            false,
        )
        .await;
    let c2d = cloud
        .wait_for("C2D echoes", 2, |r| {
            r.topic.starts_with(D2C) && has_prop(r, "kind=c2d")
        })
        .await;
    let texts: Vec<Value> = c2d.iter().map(|r| r.json()["c2d"].clone()).collect();
    assert_eq!(texts, vec![json!("hello"), json!("again")]);
    assert_eq!(c2d[0].json()["headers"]["$.mid"], "c1");

    // Direct methods.
    let method = |name: &str, rid: u32, body: Value| {
        let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
        let cloud = &cloud;
        async move {
            cloud.publish(&topic, body.to_string(), false).await;
            let suffix = format!("?$rid={rid}");
            let res = cloud
                .wait_for("a method response", 1, |r| {
                    r.topic.starts_with("$iothub/methods/res/") && r.topic.ends_with(&suffix)
                })
                .await;
            let status: u16 = res[0].topic.split('/').nth(3).unwrap().parse().unwrap();
            (status, res[0].json())
        }
    };
    let (status, body) = method(
        "call",
        1,
        json!({"service": "probe", "action": "ask", "payload": {"q": 1}}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"answer": {"q": 1}})));
    let (status, body) = method("restart", 2, json!({"service": "probe"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"]["restarted"], json!(["probe"]));
    let (status, body) = method("stop", 3, json!({"service": "nope"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown-destination");
    let (status, body) = method("dance", 4, json!({})).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("dance"));

    // A 300 KB message: refused with the hub's limit named, back to the service.
    let big = node
        .call_json("probe", "big", &json!({"bytes": 300_000}))
        .await;
    assert_eq!(big["error"]["code"], "too-large", "{big}");
    let text = big["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("262144") && text.contains("max_message_bytes"),
        "{text}"
    );

    // `enabled: false` stops the custom services, `true` starts them again.
    let is_enabled_state = |r: &Received| {
        r.topic.starts_with(D2C)
            && has_prop(r, "kind=state")
            && r.json()["state"]["msb-state"]["enabled"] == true
    };
    let enabled_states = cloud.on(D2C).iter().filter(|r| is_enabled_state(r)).count();
    cloud
        .publish(
            "$iothub/twin/PATCH/properties/desired/?$version=2",
            json!({"msb-state": {"enabled": false}}).to_string(),
            false,
        )
        .await;
    eventually("probe stopped", || {
        (!node.node.bus().knows("probe")).then_some(())
    })
    .await;
    cloud
        .wait_for("a report with enabled false", 1, |r| {
            r.topic
                .starts_with("$iothub/twin/PATCH/properties/reported/")
                && r.json()["msb-state"]["enabled"] == false
        })
        .await;
    cloud
        .publish(
            "$iothub/twin/PATCH/properties/desired/?$version=3",
            json!({"msb-state": {"enabled": true}}).to_string(),
            false,
        )
        .await;
    // The restarted probe gets the merged desired state through `state-update`.
    let states = cloud
        .wait_for(
            "state after re-enabling",
            enabled_states + 1,
            is_enabled_state,
        )
        .await;
    let last = states.last().unwrap().json();
    assert_eq!(last["state"]["threshold"], 5, "{last}");
    assert!(last["state"].get("$version").is_none(), "{last}");
    node.node
        .wait_for("probe", |s| s == busbar::service::State::Running)
        .await
        .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mqtt_topics_desired_commands_and_c2d() {
    let broker = Mosquitto::start();
    let cloud = Cloud::connect(
        broker.port,
        &[
            "busbar/test-node/d2c",
            "busbar/test-node/responses/#",
            "busbar/test-node/reported",
        ],
    )
    .await;
    // The desired state is retained: the node reads it when it subscribes.
    cloud
        .publish(
            "busbar/test-node/desired",
            json!({"msb-state": {"enabled": true}, "mode": "eco"}).to_string(),
            true,
        )
        .await;
    let node = TestNode::start_raw(&probe(), &plain_config(broker.port, ""))
        .await
        .unwrap();
    let state = cloud
        .wait_for("state envelope", 1, |r| r.topic == "busbar/test-node/d2c")
        .await;
    let env = state[0].json();
    assert_eq!(env["source"], "probe");
    assert_eq!(env["headers"]["kind"], "state");
    assert_eq!(env["payload"]["state"]["mode"], "eco");
    assert!(env["id"].is_string());

    cloud
        .publish("busbar/test-node/c2d/probe/c2d", "ping", false)
        .await;
    cloud
        .wait_for("c2d envelope", 1, |r| {
            r.topic == "busbar/test-node/d2c" && r.json()["payload"]["c2d"] == "ping"
        })
        .await;
    cloud
        .publish(
            "busbar/test-node/commands/call/r7",
            json!({"service": "probe", "action": "ask", "payload": [1, 2]}).to_string(),
            false,
        )
        .await;
    let res = cloud
        .wait_for("a command response", 1, |r| {
            r.topic == "busbar/test-node/responses/200/r7"
        })
        .await;
    assert_eq!(res[0].json(), json!({"answer": [1, 2]}));
    cloud
        .wait_for("a retained report", 1, |r| {
            r.topic == "busbar/test-node/reported"
        })
        .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_of_ten_seconds_during_a_burst_loses_nothing() {
    let mut broker = Mosquitto::start();
    let cloud = Cloud::connect(broker.port, &["busbar/test-node/d2c"]).await;
    let node = TestNode::start_raw(&probe(), &plain_config(broker.port, ""))
        .await
        .unwrap();
    node.node
        .wait_for("probe", |s| s == busbar::service::State::Running)
        .await
        .unwrap();
    let burst = {
        let bus = node.node.bus().clone();
        tokio::spawn(async move {
            let msg = busbar::message::new_message(
                bus.next_id(),
                "test",
                "probe",
                "burst",
                "application/json",
                json!({"count": 10_000, "every": 500, "pause_ms": 150})
                    .to_string()
                    .into_bytes(),
            );
            bus.call(msg, Duration::from_secs(120)).await
        })
    };
    cloud
        .wait_for("the first messages", 500, |r| {
            r.topic == "busbar/test-node/d2c"
        })
        .await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    broker.restart();
    let reply = burst.await.unwrap().unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["accepted"], 10_000, "{reply}");
    let got = cloud
        .wait_for("all 10,000", 10_000, |r| r.topic == "busbar/test-node/d2c")
        .await;
    let numbers = burst_numbers(&got, true);
    let repeats = assert_complete_in_order(&numbers, 10_000);
    eprintln!("outage: 10000 delivered, {repeats} resent duplicates");
    assert!(
        node.node
            .com_stats()
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_quota_refuses_or_drops_oldest_and_says_so() {
    // No broker on this port: everything stays in the spool.
    let port = Mosquitto::start().port; // started and dropped: a free port nobody listens on
    let refuse = plain_config(port, "[com.spool]\nmax_bytes = 20000\non_full = \"refuse\"");
    let node = TestNode::start_raw(&probe(), &refuse).await.unwrap();
    let out = node
        .call_json("probe", "burst", &json!({"count": 1000}))
        .await;
    let refused = out["refused"].as_u64().unwrap();
    assert!(
        refused > 0 && out["accepted"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert_eq!(out["last_error"]["code"], "queue-full");
    assert!(
        out["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("spool is full"),
        "{out}"
    );
    let stats = node.node.com_stats().spool();
    assert_eq!(stats.refused, refused);
    assert!(stats.pending_bytes <= 20_000);
    node.shutdown().await;

    let drop = plain_config(
        port,
        "[com.spool]\nmax_bytes = 20000\non_full = \"drop-oldest\"",
    );
    let node = TestNode::start_raw(&probe(), &drop).await.unwrap();
    let out = node
        .call_json("probe", "burst", &json!({"count": 1000}))
        .await;
    assert_eq!(out["accepted"], 1000, "{out}");
    let stats = node.node.com_stats().spool();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.pending + stats.dropped, 1000, "{stats:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_sas_token_is_renewed_without_loss() {
    let broker = Mosquitto::start();
    let cloud = Cloud::connect(broker.port, &["devices/gw/messages/events/#"]).await;
    let node = TestNode::start_raw(&probe(), &azure_config(broker.port, "sas_ttl_s = 2"))
        .await
        .unwrap();
    node.node
        .wait_for("probe", |s| s == busbar::service::State::Running)
        .await
        .unwrap();
    let out = node
        .call_json(
            "probe",
            "burst",
            &json!({"count": 3000, "every": 300, "pause_ms": 400}),
        )
        .await;
    assert_eq!(out["accepted"], 3000, "{out}");
    let got = cloud
        .wait_for("all 3000", 3000, |r| has_prop(r, "kind=burst"))
        .await;
    assert_complete_in_order(&burst_numbers(&got, false), 3000);
    let sessions = node
        .node
        .com_stats()
        .sessions
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sessions >= 3,
        "only {sessions} sessions: the token was not renewed"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_delivers_everything_it_accepted_after_restart() {
    let broker = Mosquitto::start();
    let cloud = Cloud::connect(broker.port, &["busbar/gw/d2c", "busbar/gw/debug"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.toml"), probe()).unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        format!("node_id = \"gw\"\n{}", plain_config(broker.port, "")),
    )
    .unwrap();
    let args = [
        "run",
        "--manifest",
        "manifest.toml",
        "--config",
        "node.toml",
    ];
    let mut first = Busbar::start(dir.path(), &args);
    first.wait_log(1, &["admin API listening"]);
    first.wait_log(1, &["service state", "running"]);
    let state = dir.path().join("state");
    let url = std::fs::read_to_string(state.join("admin-url")).unwrap();
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap();
    // A notification: the burst runs on while the test waits.
    let sent = busbar_base::net::http_client()
        .post(format!("{url}/rpc"))
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "method": "probe/burst",
                      "params": {"count": 20_000, "every": 200, "pause_ms": 20}}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success());
    first.wait_log(1, &["accepted 2999"]);
    first.signal("KILL");
    first.wait();
    let accepted = first
        .stderr()
        .iter()
        .filter_map(|l| {
            l.split("accepted ")
                .nth(1)?
                .split('"')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(accepted >= 2999);

    // The restarted node sends what the first one had accepted and not delivered.
    let mut second = Busbar::start(dir.path(), &args);
    second.wait_log(1, &["admin API listening"]);
    let got = cloud
        .wait_for("every accepted message", accepted as usize + 1, |r| {
            r.topic == "busbar/gw/d2c"
        })
        .await;
    let numbers = burst_numbers(&got, true);
    let repeats = assert_complete_in_order(&numbers, accepted + 1);
    eprintln!(
        "SIGKILL: {} accepted before the kill, all delivered, {repeats} resent",
        accepted + 1
    );

    // `/metrics` shows the MQTT connection state and the spool's depth.
    let http = busbar_base::net::http_client();
    let url = std::fs::read_to_string(state.join("admin-url")).unwrap();
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap();
    let text = http
        .get(format!("{url}/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = Metrics::parse(text);
    let metric = |name: &str| metrics.number(name, &[]);
    assert_eq!(metric("busbar_com_connected"), 1.0, "{}", metrics.text);
    assert!(metric("busbar_com_spool_messages") >= 0.0);
    assert!(metric("busbar_com_spool_bytes") >= 0.0);
    // The first node may have delivered everything before the kill: no count asserted.
    assert!(metric("busbar_com_delivered_total") >= 0.0);
    assert_eq!(metric("busbar_com_sessions_total"), 1.0);
    assert_eq!(metric("busbar_com_spool_refused_total"), 0.0);

    // `msb-state.debug` forwards the services' log lines to the hub.
    cloud
        .publish(
            "busbar/gw/desired",
            json!({"msb-state": {"enabled": true, "debug": true}}).to_string(),
            true,
        )
        .await;
    second.wait_log(1, &["debug forwarding"]);
    let said = http
        .post(format!("{url}/rpc"))
        .bearer_auth(&token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "probe/say", "params": {"text": "hello hub"}}))
        .send()
        .await
        .unwrap();
    assert!(said.status().is_success());
    let lines = cloud
        .wait_for("a forwarded log line", 1, |r| {
            r.topic == "busbar/gw/debug"
                && String::from_utf8_lossy(&r.payload).contains("hello hub")
        })
        .await;
    assert_eq!(lines[0].json()["service"], "probe");
    second.signal("TERM");
    assert!(second.wait().success());
}
