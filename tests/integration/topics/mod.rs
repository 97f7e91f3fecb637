//! Services on MQTT topics against a real mosquitto: static and runtime subscriptions,
//! wildcards, relative topics, grants, shared subscriptions and publishes from services
//! (here); a broker restart, two connections at once and 10,000 filters (`delivery`); the
//! example services, the binary's metrics, swaps and what `check` refuses (`lifecycle`).

mod delivery;
mod lifecycle;

use busbar_tests::field::Field;
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, service};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{Value, json};

/// A `[brokers.field]` on `port`, base topic `site/{node}`.
pub(super) fn field_config(port: u16, extra: &str) -> String {
    format!(
        "[brokers.field]\nhost = \"127.0.0.1\"\nport = {port}\nbase_topic = \"site/{{node}}\"\n\
         backoff_max_ms = 300\n{extra}\n"
    )
}

/// A topic-probe named `name` with `grants` (TOML inline table body) and `extra` lines.
pub(super) fn probe(name: &str, grants: &str, extra: &str) -> String {
    service(
        name,
        "topic_probe",
        &format!("grants.topics = {{ {grants} }}\n{extra}"),
    )
}

pub(super) async fn act(node: &TestNode, probe: &str, action: &str, body: Value) -> Value {
    node.call_json(probe, action, &body).await
}

/// Subscribes `probe` to `filters`; panics on an error.
pub(super) async fn subscribe(
    node: &TestNode,
    probe: &str,
    broker: Option<&str>,
    filters: &[&str],
) {
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
pub(super) async fn topics_of(node: &TestNode, probe: &str) -> Vec<String> {
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
pub(super) async fn settle(node: &TestNode, field: &Field, probes: &[&str], marker: &str) {
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
