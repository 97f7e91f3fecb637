//! A misbehaving service is contained: its instance is thrown away and restarted, its
//! callers get an error, and its siblings keep working.

use std::time::Duration;

use busbar::service::State;
use busbar_tests::{TestNode, eventually, service};
use serde_json::json;

fn restarts_of(node: &TestNode, name: &str) -> Option<(State, u32)> {
    let report = node.node.report();
    let r = report.iter().find(|r| r.name == name)?;
    Some((r.status.state, r.status.restarts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_contained_and_the_service_restarts_fresh() {
    let manifest = [service("faulty", "faulty", ""), service("echo", "echo", "")].concat();
    let node = TestNode::start(&manifest).await.unwrap();
    assert_eq!(
        node.call_json("faulty", "count", &json!(null)).await,
        json!({ "processed": 1 })
    );
    assert_eq!(
        node.call_json("faulty", "count", &json!(null)).await,
        json!({ "processed": 2 })
    );

    let e = node
        .call("faulty", "panic", &json!(null), Duration::from_secs(30))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("service-fault") && text.contains("faulty") && text.contains("trapped"),
        "{text}"
    );

    // The sibling never noticed.
    assert_eq!(
        node.call_json("echo", "echo", &json!({ "still": "here" }))
            .await,
        json!({ "still": "here" })
    );

    eventually("faulty to be running again after 1 restart", || {
        (restarts_of(&node, "faulty")? == (State::Running, 1)).then_some(())
    })
    .await;
    // A fresh instance: its count starts again.
    assert_eq!(
        node.call_json("faulty", "count", &json!(null)).await,
        json!({ "processed": 1 })
    );
    let report = node.node.report();
    let faulty = report.iter().find(|r| r.name == "faulty").unwrap();
    assert!(
        faulty
            .status
            .last_fault
            .as_deref()
            .unwrap()
            .contains("trapped"),
        "{faulty:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_loop_is_cut_at_its_deadline() {
    let manifest = [
        service("faulty", "faulty", "limits = { deadline_ms = 200 }"),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let e = node
        .call("faulty", "spin", &json!(null), Duration::from_secs(30))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("service-fault") && text.contains("deadline of 200 ms"),
        "{text}"
    );
    assert_eq!(
        node.call_json("echo", "upper", &json!("ok")).await,
        json!("OK")
    );
    eventually("faulty to be running again", || {
        (restarts_of(&node, "faulty")? == (State::Running, 1)).then_some(())
    })
    .await;
    assert_eq!(
        node.call_json("faulty", "count", &json!(null)).await,
        json!({ "processed": 1 })
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_keeps_failing_is_marked_failed_and_answers_unavailable() {
    let manifest = [
        service("faulty", "faulty", r#"config = { fail_start = "true" }"#),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let status = node.wait_state("faulty", State::Failed).await;
    assert_eq!(
        status.restarts, 5,
        "more than 5 faults in the window: the 6th gives up"
    );
    assert!(
        status
            .last_fault
            .as_deref()
            .unwrap()
            .contains("asked to fail start"),
        "{status:?}"
    );
    let e = node
        .call("faulty", "count", &json!(null), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("unavailable") && e.to_string().contains("faulty"),
        "{e}"
    );
    assert_eq!(
        node.call_json("echo", "upper", &json!("ok")).await,
        json!("OK")
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_without_grants_sees_no_environment_or_files() {
    let node = TestNode::start(&service("faulty", "faulty", ""))
        .await
        .unwrap();
    let found = node.call_json("faulty", "probe", &json!(null)).await;
    assert_eq!(found["env"], json!([]), "{found}");
    assert_eq!(found["args"], json!([]), "{found}");
    assert_ne!(found["fs"], "ok", "{found}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_in_flight_at_a_fault_is_dead_lettered_with_the_fault() {
    let manifest = [
        service("faulty", "faulty", "limits = { deadline_ms = 200 }"),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let short = Duration::from_secs(10);
    node.call("faulty", "panic", &json!({ "n": 1 }), short)
        .await
        .unwrap_err();
    node.wait_state("faulty", State::Running).await;
    node.call("faulty", "spin", &json!({ "n": 2 }), short)
        .await
        .unwrap_err();
    node.call_json("echo", "echo", &json!({})).await;

    let dead = node
        .call_json(
            "orchestrator",
            "dead-letters",
            &json!({ "service": "faulty" }),
        )
        .await;
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["action"], "panic");
    assert_eq!(dead[0]["message"]["payload"], json!({ "n": 1 }));
    assert_eq!(dead[0]["message"]["source"], "test");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("trapped"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[1]["message"]["payload"], json!({ "n": 2 }));
    assert!(
        dead[1]["reason"].as_str().unwrap().contains("deadline"),
        "{}",
        dead[1]
    );
    let report = node.node.report();
    let counters = |name: &str| report.iter().find(|r| r.name == name).unwrap().counters;
    assert_eq!(counters("faulty").dead_lettered, 2);
    assert_eq!(counters("echo").dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_still_queued_when_the_node_stops_is_dead_lettered() {
    let node = TestNode::start_with(&service("echo", "echo", ""), "drain_ms = 0")
        .await
        .unwrap();
    node.wait_state("echo", State::Running).await;
    let bus = node.node.bus().clone();
    for n in 0..3 {
        let msg = busbar::message::new_message(
            bus.next_id(),
            "test",
            "echo",
            "sleep",
            "application/json",
            json!({ "ms": 300, "n": n }).to_string().into_bytes(),
        );
        bus.send(msg).await.unwrap();
    }
    let services = node.node.services();
    let dead_letters = node.node.dead_letters().clone();
    node.shutdown().await;
    // Nothing vanished: each message was processed or dead-lettered, in order.
    let dead = dead_letters.list(Some("echo"));
    let processed = services.report()[0].counters.processed;
    assert!(
        processed <= 1,
        "drain_ms = 0 processes at most the one in hand"
    );
    assert_eq!(processed as usize + dead.len(), 3, "{dead:?}");
    for (entry, n) in dead.iter().zip(processed..) {
        assert_eq!(entry["message"]["payload"]["n"], n);
        assert!(
            entry["reason"].as_str().unwrap().contains("node stopped"),
            "{entry}"
        );
    }
}
