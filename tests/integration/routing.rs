//! Messages between real services: readings to Com, alerts, broadcast, calls, and what a
//! sender gets back when its message cannot be delivered.

use std::time::Duration;

use busbar::service::State;
use busbar_tests::{TestNode, eventually, service};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_readings_reach_com_and_the_alert_service_raises_alerts() {
    let manifest = [
        service(
            "temperature-sensor",
            "temperature_sensor",
            r#"config = { sensor_id = "boiler-1", interval_ms = 10, values = "20,25,21", count = 3, forward_to = "threshold-alert,aggregator" }
grants = { destinations = ["threshold-alert", "aggregator"] }"#,
        ),
        service("threshold-alert", "threshold_alert", "config = { threshold = 23.0 }"),
        service("aggregator", "aggregator", "config = { window = 3 }"),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();

    let readings = node
        .com_wait(3, "3 readings in Com", |l| {
            l["source"] == "temperature-sensor"
        })
        .await;
    let seqs: Vec<&Value> = readings.iter().map(|l| &l["payload"]["seq"]).collect();
    assert_eq!(seqs, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(readings[1]["payload"]["celsius"], json!(25.0));
    assert_eq!(readings[0]["content_type"], "application/json");
    assert_eq!(readings[0]["payload"]["sensor"], "boiler-1");

    let alerts = node
        .com_wait(1, "an alert in Com", |l| l["source"] == "threshold-alert")
        .await;
    assert_eq!(alerts[0]["headers"]["kind"], "alert");
    assert_eq!(alerts[0]["payload"]["seq"], 2);
    assert_eq!(alerts[0]["payload"]["threshold"], json!(23.0));

    let summary = node
        .com_wait(1, "a summary in Com", |l| l["source"] == "aggregator")
        .await;
    let s = &summary[0]["payload"]["summary"];
    assert_eq!(
        (s["count"].clone(), s["min"].clone(), s["max"].clone()),
        (json!(3), json!(20.0), json!(25.0))
    );

    let dir = node.shutdown().await;
    // Exactly one alert: 20 and 21 are under the threshold.
    let text = std::fs::read_to_string(dir.path().join("com.jsonl")).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("over-threshold"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_reaches_every_other_service_once() {
    let manifest = [
        service(
            "temperature-sensor",
            "temperature_sensor",
            r#"config = { interval_ms = 10, count = 4, forward_to = "*" }
grants = { destinations = ["*"] }"#,
        ),
        service("counter-a", "raw_counter", ""),
        service("counter-b", "raw_counter", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    node.com_wait(4, "4 readings", |l| l["source"] == "temperature-sensor")
        .await;
    // Once the sensor has processed its 4th tick, every `*` send is in the mailboxes, and a
    // mailbox is first in, first out: the `count` call comes after the 4 readings.
    eventually("the sensor to process 4 ticks", || {
        let report = node.node.report();
        let sensor = report.iter().find(|r| r.name == "temperature-sensor")?;
        (sensor.counters.processed == 4).then_some(())
    })
    .await;
    for name in ["counter-a", "counter-b"] {
        let reply = node.call_json(name, "count", &json!(null)).await;
        assert_eq!(
            reply,
            json!({ "count": 5, "service": name }),
            "4 readings + this call"
        );
    }
    let report = node.node.report();
    let sensor = report
        .iter()
        .find(|r| r.name == "temperature-sensor")
        .unwrap();
    assert_eq!(sensor.counters.sent, 4 + 4, "4 to Com, 4 broadcasts");
    assert_eq!(sensor.counters.failed, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_round_trip_and_timeout_between_guests() {
    let manifest = [
        service(
            "echo-a",
            "echo",
            r#"grants = { destinations = ["echo-b"] }"#,
        ),
        service("echo-b", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();

    // The test calls echo-a, which calls echo-b, which answers.
    let reply = node
        .call_json(
            "echo-a",
            "call",
            &json!({ "destination": "echo-b", "action": "echo", "payload": { "n": 7 }, "timeout_ms": 5000 }),
        )
        .await;
    assert_eq!(reply, json!({ "ok": { "n": 7 } }));

    // echo-b takes longer than echo-a is prepared to wait.
    let reply = node
        .call_json(
            "echo-a",
            "call",
            &json!({ "destination": "echo-b", "action": "sleep", "payload": { "ms": 400 }, "timeout_ms": 50 }),
        )
        .await;
    assert_eq!(reply["error"]["code"], "timeout", "{reply}");
    let text = reply["error"]["message"].as_str().unwrap();
    assert!(text.contains("echo-b") && text.contains("sleep"), "{text}");

    // A service may not call itself (it would wait for its own mailbox forever).
    let reply = node
        .call_json(
            "echo-a",
            "call",
            &json!({ "destination": "echo-a", "action": "echo", "timeout_ms": 1000 }),
        )
        .await;
    assert_eq!(reply["error"]["code"], "not-permitted", "{reply}");

    // Both keep working after the timeout.
    let reply = node
        .call("echo-b", "upper", &json!("hi"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reply.payload, br#""HI""#);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destination_and_action_come_back_to_the_sender() {
    let manifest = [
        service(
            "temperature-sensor",
            "temperature_sensor",
            r#"config = { interval_ms = 10, count = 2, forward_to = "nowhere,echo" }
grants = { destinations = ["nowhere", "echo"] }"#,
        ),
        service("echo", "echo", r#"grants = { destinations = ["nowhere"] }"#),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();

    // A call to a service that does not exist: the caller gets `unknown-destination`.
    let reply = node
        .call_json(
            "echo",
            "call",
            &json!({ "destination": "nowhere", "action": "x", "timeout_ms": 1000 }),
        )
        .await;
    assert_eq!(reply["error"]["code"], "unknown-destination", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere")
    );

    // From the test itself, through the bus.
    let e = node
        .call("nowhere", "x", &json!(null), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown-destination") && e.to_string().contains("nowhere"),
        "{e}"
    );
    let e = node
        .call(
            "echo",
            "no-such-action",
            &json!(null),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown-action") && e.to_string().contains("no-such-action"),
        "{e}"
    );
    let e = node
        .call(
            "orchestrator",
            "reboot",
            &json!(null),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown-action"), "{e}");

    // The sensor's readings to `nowhere` were refused at submit (counted), and echo's
    // `unknown-action` for `reading` came back as `$error` messages (counted as processed).
    eventually("the sensor to see 2 refusals and 2 $error notices", || {
        let report = node.node.report();
        let s = report.iter().find(|r| r.name == "temperature-sensor")?;
        (s.counters.refused == 2 && s.counters.processed >= 4).then_some(())
    })
    .await;
    let report = node.node.report();
    assert!(
        report.iter().all(|r| r.status.state == State::Running),
        "{report:?}"
    );
    let echo = report.iter().find(|r| r.name == "echo").unwrap();
    assert_eq!(
        echo.counters.failed,
        2 + 1,
        "2 readings + the unknown action"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_reports_every_service_and_its_state() {
    let manifest = [
        service("echo", "echo", ""),
        service("off", "echo", "enabled = false"),
        service("counter", "raw_counter", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    node.wait_state("echo", State::Running).await;
    node.wait_state("counter", State::Running).await;
    let status = node.call_json("orchestrator", "status", &json!(null)).await;
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter", "echo"], "disabled services are not run");
    assert_eq!(status[1]["state"], "running");
    assert_eq!(status[1]["restarts"], 0);
    assert!(status[1]["counters"]["processed"].is_u64());
    let ping = node
        .call("orchestrator", "ping", &json!(null), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ping.payload, b"pong");
    node.shutdown().await;
}
