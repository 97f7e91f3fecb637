//! Services on MQTT topics against a real mosquitto: static and runtime subscriptions,
//! wildcards, relative topics, grants, shared subscriptions, publishes from services, a
//! broker restart, two connections at once, 10,000 filters, and the example services.

use busbar_tests::field::Field;
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, guard, service};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{Value, json};

/// A `[brokers.field]` on `port`, base topic `site/{node}`.
fn field_config(port: u16, extra: &str) -> String {
    format!(
        "[brokers.field]\nhost = \"127.0.0.1\"\nport = {port}\nbase_topic = \"site/{{node}}\"\n\
         backoff_max_ms = 300\n{extra}\n"
    )
}

/// A topic-probe named `name` with `grants` (TOML inline table body) and `extra` lines.
fn probe(name: &str, grants: &str, extra: &str) -> String {
    service(
        name,
        "topic_probe",
        &format!("grants.topics = {{ {grants} }}\n{extra}"),
    )
}

async fn act(node: &TestNode, probe: &str, action: &str, body: Value) -> Value {
    node.call_json(probe, action, &body).await
}

/// Subscribes `probe` to `filters`; panics on an error.
async fn subscribe(node: &TestNode, probe: &str, broker: Option<&str>, filters: &[&str]) {
    let out = act(
        node,
        probe,
        "subscribe",
        json!({ "broker": broker, "filters": filters }),
    )
    .await;
    assert_eq!(out, json!({ "done": filters.len() }), "{probe}: {out}");
}

/// The topics `probe` received, in order.
async fn topics_of(node: &TestNode, probe: &str) -> Vec<String> {
    let out = act(node, probe, "received", json!({})).await;
    out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap().to_owned())
        .collect()
}

/// Publishes `marker` from the field and waits until each of `probes` has one more of it:
/// everything published before it has been dispatched.
async fn settle(node: &TestNode, field: &Field, probes: &[&str], marker: &str) {
    let mut seen = Vec::new();
    for p in probes {
        let n = topics_of(node, p)
            .await
            .iter()
            .filter(|t| *t == marker)
            .count();
        seen.push(n);
    }
    field.publish(marker, "marker").await;
    for (p, n) in probes.iter().zip(seen) {
        let p = p.to_string();
        busbar_tests::until(&format!("{p} to get {marker}"), || async {
            let now = topics_of(node, &p).await;
            (now.iter().filter(|t| *t == marker).count() > n).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_wildcards_relative_topics_grants_and_publishes() {
    let broker = Mosquitto::start();
    let field = Field::connect(broker.port, "outside", &["site/test-node/+/out/#", "all/#"]).await;
    let manifest = [
        probe(
            "a",
            "subscribe = [\"/static/#\", \"cmd/+\", \"/marker\"], publish = [\"out/#\"], brokers = [\"field\"]",
            "subscribe = [{ filter = \"/static/#\", broker = \"field\" }]\n",
        ),
        probe(
            "b",
            "subscribe = [\"/static/+/x\", \"/marker\", \"/jobs/#\"]",
            "",
        ),
        probe("c", "subscribe = [\"/jobs/#\", \"/marker\"]", ""),
    ]
    .concat();
    let node = TestNode::start_with(&manifest, &field_config(broker.port, ""))
        .await
        .unwrap();
    for p in ["a", "b", "c"] {
        node.wait_state(p, busbar::service::State::Running).await;
    }
    // a: static `/static/#` (the manifest) and relative `cmd/+` at run time.
    subscribe(&node, "a", Some("field"), &["cmd/+", "/marker"]).await;
    subscribe(&node, "b", None, &["/static/+/x", "/marker"]).await;
    subscribe(&node, "c", None, &["/marker"]).await;
    for (topic, payload) in [
        ("static/1/x", "to a and b"),
        ("static/1/y", "to a"),
        ("static", "to a (# matches the parent)"),
        ("site/test-node/a/cmd/go", "to a"),
        ("site/test-node/b/cmd/go", "to nobody"),
        ("other", "to nobody"),
    ] {
        field.publish(topic, payload).await;
    }
    settle(&node, &field, &["a", "b", "c"], "marker").await;
    assert_eq!(
        topics_of(&node, "a").await,
        [
            "static/1/x",
            "static/1/y",
            "static",
            "site/test-node/a/cmd/go",
            "marker"
        ]
    );
    assert_eq!(topics_of(&node, "b").await, ["static/1/x", "marker"]);
    assert_eq!(topics_of(&node, "c").await, ["marker"]);

    // What arrives carries the topic, broker, retain flag and user properties.
    let got = act(&node, "a", "received", json!({})).await;
    assert_eq!(got["messages"][0]["broker"], "field");
    assert_eq!(got["messages"][0]["payload"], "to a and b");
    let props = PublishProperties {
        user_properties: vec![("unit".into(), "C".into())],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    field
        .publish_with("static/kept", "{\"t\":1}", true, props)
        .await;
    settle(&node, &field, &["a"], "marker").await;
    let got = act(&node, "a", "received", json!({ "since": 5 })).await;
    let m = &got["messages"][0];
    assert_eq!(m["topic"], "static/kept");
    assert_eq!(m["headers"]["unit"], "C");
    assert_eq!(m["content_type"], "application/json");

    // Unsubscribe: `cmd/+` no longer reaches a.
    let out = act(
        &node,
        "a",
        "unsubscribe",
        json!({"broker": "field", "filters": ["cmd/+"]}),
    )
    .await;
    assert_eq!(out, json!({"done": 1}));
    let before = topics_of(&node, "a").await.len();
    field.publish("site/test-node/a/cmd/go", "after").await;
    settle(&node, &field, &["a"], "marker").await;
    assert_eq!(topics_of(&node, "a").await[before..], ["marker"]);

    // A service's publish reaches an outside subscriber, relative to its base topic, with
    // retain and user properties.
    let out = act(
        &node,
        "a",
        "publish",
        json!({"broker": "field", "topic": "out/1", "payload": "hello", "retain": true,
               "properties": {"k": "v"}}),
    )
    .await;
    assert_eq!(out, json!({"done": 1}));
    let got = field
        .wait_for("a's publish", 1, |g| g.topic == "site/test-node/a/out/1")
        .await;
    assert_eq!(got[0].payload, "hello");
    assert_eq!(got[0].properties, vec![("k".to_owned(), "v".to_owned())]);
    assert_eq!(got[0].content_type.as_deref(), Some("text/plain"));
    let out = act(
        &node,
        "a",
        "publish",
        json!({"broker": "field", "topic": "out/0", "payload": "once", "qos": 0}),
    )
    .await;
    assert_eq!(out, json!({"done": 1}));
    field
        .wait_for("a's at-most-once publish", 1, |g| {
            g.topic == "site/test-node/a/out/0"
        })
        .await;

    // Outside the grants: refused, naming the grant.
    let out = act(
        &node,
        "a",
        "subscribe",
        json!({"broker": "field", "filters": ["/secret/#"]}),
    )
    .await;
    assert_eq!(out["error"]["code"], "not-permitted", "{out}");
    let text = out["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("grants.topics.subscribe") && text.contains("secret/#"),
        "{text}"
    );
    let out = act(
        &node,
        "a",
        "subscribe",
        json!({"broker": "field", "filters": ["/static/#/x"]}),
    )
    .await;
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last level"),
        "{out}"
    );
    let out = act(
        &node,
        "a",
        "publish",
        json!({"broker": "field", "topic": "/all/x"}),
    )
    .await;
    assert_eq!(out["error"]["code"], "not-permitted", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("grants.topics.publish")
    );
    let out = act(
        &node,
        "a",
        "subscribe",
        json!({"broker": "nowhere", "filters": ["x"]}),
    )
    .await;
    assert_eq!(out["error"]["code"], "unknown-destination", "{out}");
    let out = act(&node, "b", "publish", json!({"topic": "anything"})).await;
    assert_eq!(out["error"]["code"], "not-permitted", "{out}");

    // A shared subscription: b and c split the publishes, each taken exactly once.
    subscribe(&node, "b", None, &["$share/workers//jobs/+"]).await;
    subscribe(&node, "c", None, &["$share/workers//jobs/+"]).await;
    for i in 0..40 {
        field.publish(&format!("jobs/{i}"), "job").await;
    }
    let jobs = |t: &Vec<String>| t.iter().filter(|t| t.starts_with("jobs/")).count();
    let (b, c) = busbar_tests::until("40 jobs split between b and c", || async {
        let (b, c) = (topics_of(&node, "b").await, topics_of(&node, "c").await);
        (jobs(&b) + jobs(&c) >= 40).then_some((b, c))
    })
    .await;
    assert!(
        jobs(&b) > 0 && jobs(&c) > 0,
        "both take a share: b {b:?} c {c:?}"
    );
    let mut all: Vec<&String> = b
        .iter()
        .chain(&c)
        .filter(|t| t.starts_with("jobs/"))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "every job once: b {b:?} c {c:?}");
    assert_eq!(jobs(&b) + jobs(&c), 40, "none twice");

    let stats = node.node.topics_stats()["field"].clone();
    assert!(stats.connected.load(std::sync::atomic::Ordering::Relaxed));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_restores_subscriptions_and_loses_no_publish_at_least_once() {
    let mut broker = Mosquitto::start();
    let field = Field::connect(broker.port, "outside", &["site/test-node/p/out/#"]).await;
    let manifest = probe(
        "p",
        "subscribe = [\"/in/#\", \"/marker\"], publish = [\"out/#\"]",
        "subscribe = [{ filter = \"/in/#\" }, { filter = \"/marker\" }]\n",
    );
    let node = TestNode::start_with(&manifest, &field_config(broker.port, ""))
        .await
        .unwrap();
    node.wait_state("p", busbar::service::State::Running).await;
    settle(&node, &field, &["p"], "marker").await;

    broker.stop();
    let stats = node.node.topics_stats()["field"].clone();
    busbar_tests::eventually("the node to see the broker gone", || {
        (!stats.connected.load(std::sync::atomic::Ordering::Relaxed)).then_some(())
    })
    .await;
    // At least once: accepted into the outbox while the broker is away.
    let out = act(
        &node,
        "p",
        "publish",
        json!({"topic": "out/burst", "payload": "m", "count": 200}),
    )
    .await;
    assert_eq!(out, json!({"done": 200}));
    // At most once: refused while disconnected, saying so.
    let out = act(&node, "p", "publish", json!({"topic": "out/q0", "qos": 0})).await;
    assert_eq!(out["error"]["code"], "unavailable", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not connected")
    );
    assert_eq!(stats.outbox().pending, 200);

    broker.restart();
    let got = field
        .wait_for(
            "the 200 publishes made while the broker was down",
            200,
            |g| g.topic == "site/test-node/p/out/burst",
        )
        .await;
    let mut payloads: Vec<String> = got.iter().map(|g| g.payload.clone()).collect();
    assert_eq!(
        payloads[..5],
        ["m-0", "m-1", "m-2", "m-3", "m-4"],
        "in order"
    );
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 200, "none lost");
    // The static subscriptions are back.
    let before = topics_of(&node, "p").await.len();
    field.publish("in/again", "back").await;
    settle(&node, &field, &["p"], "marker").await;
    assert_eq!(
        topics_of(&node, "p").await[before..],
        ["in/again", "marker"]
    );
    busbar_tests::eventually("the outbox to empty", || {
        (stats.outbox().pending == 0).then_some(())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_com_broker_and_a_field_broker_at_once() {
    let cloud_broker = Mosquitto::start();
    let field_broker = Mosquitto::start();
    let cloud = Field::connect(cloud_broker.port, "cloud", &["busbar/test-node/#"]).await;
    let field = Field::connect(field_broker.port, "device", &[]).await;
    let config = format!(
        "{}\n[com]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {}\n",
        field_config(field_broker.port, ""),
        cloud_broker.port
    );
    let manifest = probe(
        "p",
        "subscribe = [\"cmd\", \"/sensors/#\"], publish = [\"status\"]",
        "",
    );
    let node = TestNode::start_raw(&manifest, &config).await.unwrap();
    node.wait_state("p", busbar::service::State::Running).await;
    // The default connection is the Com's broker; relative topics sit under its services topic.
    subscribe(&node, "p", None, &["cmd"]).await;
    subscribe(&node, "p", Some("field"), &["/sensors/#"]).await;
    cloud
        .publish("busbar/test-node/services/p/cmd", "from the cloud")
        .await;
    field.publish("sensors/t1", "from a device").await;
    let got = busbar_tests::until("a publish from each broker", || async {
        let out = act(&node, "p", "received", json!({})).await;
        (out["count"] == 2).then_some(out)
    })
    .await;
    let mut by_broker: Vec<(String, String)> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["broker"].as_str().unwrap().to_owned(),
                m["topic"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_broker.sort();
    assert_eq!(
        by_broker,
        [
            (
                "com".to_owned(),
                "busbar/test-node/services/p/cmd".to_owned()
            ),
            ("field".to_owned(), "sensors/t1".to_owned())
        ]
    );
    let out = act(
        &node,
        "p",
        "publish",
        json!({"topic": "status", "payload": "up"}),
    )
    .await;
    assert_eq!(out, json!({"done": 1}));
    cloud
        .wait_for("p's status on the Com's broker", 1, |g| {
            g.topic == "busbar/test-node/services/p/status" && g.payload == "up"
        })
        .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_filters_are_matched_exactly() {
    let broker = Mosquitto::start();
    let field = Field::connect(broker.port, "outside", &[]).await;
    let manifest = [
        probe(
            "many",
            "subscribe = [\"/f/#\", \"/marker\"]",
            "limits.deadline_ms = 60000\n",
        ),
        probe("wild", "subscribe = [\"/f/#\", \"/marker\"]", ""),
    ]
    .concat();
    let node = TestNode::start_with(&manifest, &field_config(broker.port, "max_filters = 20000"))
        .await
        .unwrap();
    node.wait_state("many", busbar::service::State::Running)
        .await;
    let filters: Vec<String> = (0..10_000).map(|i| format!("/f/{i}/t")).collect();
    let out = node
        .call(
            "many",
            "subscribe",
            &json!({ "filters": filters }),
            guard() * 4,
        )
        .await
        .expect("10,000 subscriptions");
    let out: Value = serde_json::from_slice(&out.payload).unwrap();
    assert_eq!(out, json!({ "done": 10_000 }));
    subscribe(&node, "many", None, &["/marker"]).await;
    subscribe(&node, "wild", None, &["/f/+/t", "/marker"]).await;
    assert_eq!(
        node.node.topics_stats()["field"]
            .filters
            .load(std::sync::atomic::Ordering::Relaxed),
        10_002
    );
    // 100 subscribed topics spread over the range, and 3 no exact filter matches.
    let hits: Vec<String> = (0..100).map(|i| format!("f/{}/t", i * 97 + 3)).collect();
    for t in hits
        .iter()
        .chain(&["f/10000/t".to_owned(), "f/x/t".to_owned()])
    {
        field.publish(t, "v").await;
    }
    field.publish("f/1/other", "v").await;
    settle(&node, &field, &["many", "wild"], "marker").await;
    let mut many = topics_of(&node, "many").await;
    assert_eq!(many.pop().as_deref(), Some("marker"));
    assert_eq!(
        many, hits,
        "exactly the subscribed topics, once each, in order"
    );
    let mut wild = topics_of(&node, "wild").await;
    assert_eq!(wild.pop().as_deref(), Some("marker"));
    assert_eq!(wild.len(), 102, "f/+/t matches all but f/1/other");
    node.shutdown().await;
}

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
    let _ = busy.await;
    let m = busbar_tests::until("the drops to be counted", || async {
        let m = node.metrics().await;
        let dropped = m.number(
            "busbar_broker_dropped_total",
            &[("broker", "field"), ("service", "slow")],
        );
        let delivered = m.number("busbar_broker_delivered_total", &[("broker", "field")]);
        (dropped + delivered >= 31.0).then_some(m)
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

    // Removed: its subscriptions end at the broker.
    let stats = node.node.topics_stats()["field"].clone();
    assert_eq!(stats.filters.load(std::sync::atomic::Ordering::Relaxed), 2);
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
            "no filter of its grants.topics.subscribe covers it (granted here: `a/#`)",
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
