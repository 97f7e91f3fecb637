//! Delivery: a broker restart, two connections at once, 10,000 filters.

use busbar_tests::field::Field;
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{TestNode, guard};
use serde_json::{Value, json};

use super::{act, field_config, probe, settle, subscribe, topics_of};

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

    // 2,000 on their way when the broker goes: in the outbox, partly in flight, partly sent.
    let out = act(
        &node,
        "p",
        "publish",
        json!({"topic": "out/flight", "payload": "f", "count": 2000}),
    )
    .await;
    assert_eq!(out, json!({"done": 2000}));
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
    assert!(stats.outbox().pending >= 200, "{:?}", stats.outbox());

    broker.restart();
    let got = field
        .wait_for(
            "the 200 publishes made while the broker was down",
            200,
            |g| g.topic == "site/test-node/p/out/burst",
        )
        .await;
    let payloads: Vec<String> = got.iter().map(|g| g.payload.clone()).collect();
    let expected: Vec<String> = (0..200).map(|i| format!("m-{i}")).collect();
    assert_eq!(
        payloads, expected,
        "all, in order, once (the broker was down when they were made)"
    );
    // Those in flight when it went: all there (some twice: at least once).
    let mut flight: Vec<String> = field
        .wait_for("the 2,000 in flight when the broker stopped", 2000, |g| {
            g.topic == "site/test-node/p/out/flight"
        })
        .await
        .into_iter()
        .map(|g| g.payload)
        .collect();
    flight.sort();
    flight.dedup();
    assert_eq!(flight.len(), 2000, "none lost");
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
    // The Com's connection opens when a service first uses it: a publish, which waits in its
    // outbox until then.
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
