//! The example services, a Python service and the metrics on the binary, subscriptions
//! across swaps and grants, and what `check` and `run` refuse.

use busbar_tests::field::Field;
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, guard, service};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::json;

use super::{act, field_config, probe, settle, subscribe, topics_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zigbee_bridge_and_mqtt_echo_examples() {
    let broker = Mosquitto::start();
    let field = Field::connect(
        broker.port,
        "outside",
        &["site/test-node/echo/replies/#", "clients/#"],
    )
    .await;
    let manifest = [
        service(
            "zigbee",
            "zigbee_bridge",
            "grants.topics = { subscribe = [\"/zigbee2mqtt/#\"] }\n",
        ),
        service(
            "echo",
            "mqtt_echo",
            "grants.topics = { subscribe = [\"requests/+\"], publish = [\"replies/+\", \"/clients/#\"] }\n",
        ),
        // Built against busbar:service@0.1.0, before topics: still loads and runs.
        service("legacy", "legacy_echo", ""),
    ]
    .concat();
    let node = TestNode::start_with(&manifest, &field_config(broker.port, "default = true"))
        .await
        .unwrap();
    for s in ["zigbee", "echo", "legacy"] {
        node.wait_state(s, busbar::service::State::Running).await;
    }
    let reply = node
        .call("legacy", "echo", &json!("old"), guard())
        .await
        .expect("a 0.1.0 component answers");
    assert_eq!(reply.payload, b"\"old\"");

    field
        .publish(
            "zigbee2mqtt/kitchen",
            r#"{"temperature":21.5,"humidity":48,"battery":97,"linkquality":120,"update":{"state":"idle"}}"#,
        )
        .await;
    field
        .publish("zigbee2mqtt/bridge", r#"{"state":"online"}"#)
        .await;
    field.publish("zigbee2mqtt/hall", "not json").await;
    let lines = node
        .com_wait(1, "a normalised reading towards the hub", |l| {
            l["source"] == "zigbee"
        })
        .await;
    assert_eq!(
        lines[0]["payload"],
        json!({"device": "kitchen", "temperature_c": 21.5, "humidity_pct": 48.0,
               "battery_pct": 97.0, "link_quality": 120.0})
    );
    let stats = busbar_tests::until("the bridge to count the bad payload", || async {
        let s = act(&node, "zigbee", "stats", json!({})).await;
        (s["skipped"] == 1).then_some(s)
    })
    .await;
    assert_eq!(stats["readings"], 1);

    // Requests on its relative topic come back on `replies/{id}`, or on the MQTT 5 response
    // topic the requester names.
    field
        .publish("site/test-node/echo/requests/7", "ping")
        .await;
    let got = field
        .wait_for("the echo reply", 1, |g| {
            g.topic == "site/test-node/echo/replies/7"
        })
        .await;
    assert_eq!(got[0].payload, "ping");
    let props = PublishProperties {
        response_topic: Some("clients/me/inbox".into()),
        ..Default::default()
    };
    field
        .publish_with("site/test-node/echo/requests/8", "pong", false, props)
        .await;
    let got = field
        .wait_for("the reply on the response topic", 1, |g| {
            g.topic == "clients/me/inbox"
        })
        .await;
    assert_eq!(got[0].payload, "pong");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_on_topics_and_what_metrics_say_on_the_binary() {
    busbar_tests::python_guest("py_mqtt_echo");
    let broker = Mosquitto::start();
    let field = Field::connect(
        broker.port,
        "outside",
        &["site/admin-test/py/replies/#", "site/admin-test/slow/busy"],
    )
    .await;
    let manifest = [
        service(
            "py",
            "py_mqtt_echo",
            "grants.topics = { subscribe = [\"requests/+\"], publish = [\"replies/+\"] }\n",
        ),
        // A subscriber that is busy and refuses what does not fit its mailbox of 2.
                // Beside it, one that keeps up: the slow one holds up only its own publishes.
        probe("fast", "subscribe = [\"/burst/#\"]", "subscribe = [{ filter = \"/burst/#\" }]\n"),
        probe(
            "slow",
            "subscribe = [\"/burst/#\"], publish = [\"busy\"]",
            "subscribe = [{ filter = \"/burst/#\" }]\nlimits = { mailbox = 2, on_full = \"refuse\", deadline_ms = 5000 }\n",
        ),
    ]
    .concat();
    let node = busbar_tests::admin::AdminNode::start_with(
        &manifest,
        &field_config(broker.port, ""),
        &busbar_tests::python_env(),
    );
    busbar_tests::until("py to subscribe", || async {
        let m = node.metrics().await;
        (m.number("busbar_broker_filters", &[("broker", "field")]) >= 2.0).then_some(())
    })
    .await;
    let status = node.cli(&["status"]);
    let text = status.stdout.join("\n");
    assert!(text.contains("BROKER") && text.contains("field"), "{text}");
    field.publish("site/admin-test/py/requests/7", "ping").await;
    let got = field
        .wait_for("the Python echo", 1, |g| {
            g.topic == "site/admin-test/py/replies/7"
        })
        .await;
    assert_eq!(got[0].payload, "ping");

    // Keep `slow` busy, then publish more than its mailbox holds.
    let busy = {
        let (url, token) = (node.url.clone(), node.token.clone());
        tokio::spawn(async move {
            busbar_base::net::http_client()
                .post(format!("{url}/rpc"))
                .bearer_auth(token)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "slow/sleep", "params": {"ms": 1500, "announce": "busy"}}))
                .send()
                .await
        })
    };
    field
        .wait_for("slow to say it is busy", 1, |g| {
            g.topic == "site/admin-test/slow/busy"
        })
        .await;
    for i in 0..30 {
        field.publish(&format!("burst/{i}"), "x").await;
    }
    let fast = busbar_tests::until("fast to get the whole burst", || async {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "fast/count", "params": {}});
        let n = node.rpc(&body).await["result"]["count"]
            .as_u64()
            .unwrap_or(0);
        (n >= 30).then_some(n)
    })
    .await;
    assert_eq!(fast, 30);
    let _ = busy.await;
    let m = busbar_tests::until("the drops to be counted", || async {
        let m = node.metrics().await;
        let dropped = m.number(
            "busbar_broker_dropped_total",
            &[("broker", "field"), ("service", "slow")],
        );
        let delivered = m.number("busbar_broker_delivered_total", &[("broker", "field")]);
        (dropped + delivered >= 61.0).then_some(m)
    })
    .await;
    assert!(
        m.number(
            "busbar_broker_dropped_total",
            &[("broker", "field"), ("service", "slow")]
        ) > 0.0
    );
    assert_eq!(
        m.number("busbar_broker_connected", &[("broker", "field")]),
        1.0
    );
    assert_eq!(
        m.number("busbar_broker_received_total", &[("broker", "field")]),
        31.0
    );
    assert_eq!(
        m.number(
            "busbar_broker_dropped_total",
            &[("broker", "field"), ("service", "slow")]
        ) + m.number("busbar_broker_delivered_total", &[("broker", "field")]),
        61.0,
        "each copy delivered or counted dropped: 1 echo request, 30 to fast, 30 to slow"
    );
    assert!(m.number("busbar_broker_published_total", &[("broker", "field")]) >= 1.0);
    let status = node.get_json("/status").await;
    assert_eq!(status["brokers"]["field"]["connected"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_outlive_restarts_and_swaps_and_end_with_the_service() {
    let broker = Mosquitto::start();
    let field = Field::connect(broker.port, "outside", &[]).await;
    let entry = |version: u32| {
        probe(
            "p",
            "subscribe = [\"/x/#\", \"/marker\"]",
            &format!(
                "config = {{ version = {version} }}\nsubscribe = [{{ filter = \"/marker\" }}]\n"
            ),
        )
    };
    let node = TestNode::start_with(&entry(1), &field_config(broker.port, ""))
        .await
        .unwrap();
    node.wait_state("p", busbar::service::State::Running).await;
    subscribe(&node, "p", None, &["/x/1"]).await;
    settle(&node, &field, &["p"], "marker").await;

    // A new entry (another config) replaces the instance: the subscription made at run time
    // by the old one still delivers to the new one.
    let dir = node.dir().to_owned();
    let manifest = busbar::manifest::Manifest::parse(&entry(2), false, "<v2>", &dir).unwrap();
    let applied = node.node.apply(&manifest).await.unwrap();
    assert_eq!(applied.restarted, ["p"]);
    node.wait_state("p", busbar::service::State::Running).await;
    field.publish("x/1", "after the swap").await;
    settle(&node, &field, &["p"], "marker").await;
    assert_eq!(
        topics_of(&node, "p").await,
        ["x/1", "marker"],
        "the new instance got it"
    );

    // A version whose grants no longer cover `/x/1`: the subscription ends before it starts.
    let narrow = probe(
        "p",
        "subscribe = [\"/marker\"]",
        "config = { version = 3 }\nsubscribe = [{ filter = \"/marker\" }]\n",
    );
    let manifest = busbar::manifest::Manifest::parse(&narrow, false, "<v3>", &dir).unwrap();
    node.node.apply(&manifest).await.unwrap();
    node.wait_state("p", busbar::service::State::Running).await;
    let before = topics_of(&node, "p").await.len();
    field.publish("x/1", "outside the new grants").await;
    settle(&node, &field, &["p"], "marker").await;
    assert_eq!(topics_of(&node, "p").await[before..], ["marker"]);

    // Removed: its subscriptions end at the broker.
    let stats = node.node.topics_stats()["field"].clone();
    assert_eq!(stats.filters.load(std::sync::atomic::Ordering::Relaxed), 1);
    node.node
        .apply(&busbar::manifest::Manifest::default())
        .await
        .unwrap();
    busbar_tests::eventually("p's filters to be released", || {
        (stats.filters.load(std::sync::atomic::Ordering::Relaxed) == 0).then_some(())
    })
    .await;
    node.shutdown().await;
}

#[test]
fn check_and_run_refuse_a_declared_subscription_outside_the_grants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "node_id = \"gw\"\ndata_dir = \"state\"\ncache_dir = \"cache\"\n\
         [brokers.field]\nhost = \"127.0.0.1\"\nport = 1\n",
    )
    .unwrap();
    for (manifest, words) in [
        (
            probe(
                "p",
                "subscribe = [\"/a/#\"]",
                "subscribe = [{ filter = \"/b/#\" }]\n",
            ),
            "subscribe[0] `/b/#`: no filter of grants.topics.subscribe covers it",
        ),
        (
            probe(
                "p",
                "subscribe = [\"/a/#\"]",
                "subscribe = [{ filter = \"/a/#\", broker = \"cloud\" }]\n",
            ),
            "this node has no broker connection `cloud`",
        ),
    ] {
        std::fs::write(dir.path().join("services.toml"), manifest).unwrap();
        for command in ["check", "run"] {
            let done = busbar_tests::process::Busbar::run(
                dir.path(),
                &[
                    command,
                    "--manifest",
                    "services.toml",
                    "--config",
                    "node.toml",
                ],
            );
            let text = [done.stdout.join("\n"), done.stderr.join("\n")].join("\n");
            assert!(!done.status.success(), "{command}: {text}");
            assert!(
                text.contains(words) && text.contains("subscribe[0]"),
                "{command}: {text}"
            );
        }
    }
}
