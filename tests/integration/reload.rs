//! SIGHUP: the node re-reads its manifest and restarts only the services that changed.

use busbar_tests::admin::AdminNode;
use busbar_tests::{guest, service};
use serde_json::{Value, json};

async fn count(node: &AdminNode, name: &str) -> Value {
    let r = node
        .rpc(&json!({ "jsonrpc": "2.0", "id": 1, "method": format!("{name}/count") }))
        .await;
    r.get("result")
        .cloned()
        .unwrap_or_else(|| r["error"].clone())
}

fn manifest(tweak: u32, swap: &std::path::Path, with_added: bool) -> String {
    let mut m = [
        service("keep", "faulty", ""),
        service("tweak", "faulty", &format!("config = {{ x = {tweak} }}")),
        format!(
            "[[services]]\nname = \"swap\"\ncomponent = {:?}\n",
            swap.display().to_string()
        ),
    ]
    .concat();
    if with_added {
        m.push_str(&service("added", "echo", ""));
    } else {
        m.push_str(&service("dropped", "echo", ""));
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_restarts_only_the_services_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let swap = dir.path().join("swap.wasm");
    std::fs::copy(guest("echo"), &swap).unwrap();
    let mut node = AdminNode::start(&manifest(1, &swap, false));
    node.process.wait_log(4, &["service state", "\"running\""]);
    for _ in 0..2 {
        count(&node, "keep").await;
    }
    assert_eq!(count(&node, "tweak").await, json!({ "processed": 1 }));
    assert_eq!(count(&node, "swap").await["code"], -32601, "swap runs echo");

    // New config for `tweak`, a new component behind `swap`'s path, `dropped` out, `added` in.
    std::fs::copy(guest("faulty"), &swap).unwrap();
    let manifest_path = node.dir.join("manifest.toml");
    std::fs::write(&manifest_path, manifest(2, &swap, true)).unwrap();
    node.process.signal("HUP");
    node.process.wait_log(1, &["manifest reloaded"]);
    let line = node
        .process
        .stderr()
        .into_iter()
        .find(|l| l.contains("manifest reloaded"))
        .unwrap();
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        line["fields"]["restarted"], "[\"tweak\", \"swap\"]",
        "{line}"
    );
    assert_eq!(line["fields"]["started"], "[\"added\"]", "{line}");
    assert_eq!(line["fields"]["stopped"], "[\"dropped\"]", "{line}");
    assert_eq!(line["fields"]["unchanged"], 1, "{line}");

    assert_eq!(
        count(&node, "keep").await,
        json!({ "processed": 3 }),
        "kept its instance"
    );
    assert_eq!(
        count(&node, "tweak").await,
        json!({ "processed": 1 }),
        "a fresh instance"
    );
    assert_eq!(
        count(&node, "swap").await,
        json!({ "processed": 1 }),
        "runs the new component"
    );
    let dropped = count(&node, "dropped").await;
    assert_eq!(dropped["data"]["code"], "unknown-destination", "{dropped}");
    let echo = node
        .rpc(&json!({ "jsonrpc": "2.0", "id": 2, "method": "added/echo", "params": [1] }))
        .await;
    assert_eq!(echo["result"], json!([1]));

    // A manifest naming a component that is not there is refused before anything changes.
    let broken = manifest(3, &node.dir.join("missing.wasm"), true);
    std::fs::write(&manifest_path, broken).unwrap();
    node.process.signal("HUP");
    node.process
        .wait_log(1, &["reload refused", "missing.wasm"]);
    assert_eq!(
        count(&node, "swap").await,
        json!({ "processed": 2 }),
        "swap still runs"
    );
    assert_eq!(count(&node, "keep").await, json!({ "processed": 4 }));

    // A manifest that does not parse is refused; everything keeps running.
    std::fs::write(&manifest_path, "[[services]]\nname = 7\n").unwrap();
    node.process.signal("HUP");
    node.process
        .wait_log(1, &["reload refused", "manifest.toml"]);
    assert_eq!(count(&node, "keep").await, json!({ "processed": 5 }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_service_finishes_its_queue_before_the_new_version_starts() {
    // Ten 300 ms messages queue up: 3 s of work, more than the 2 s shutdown drain.
    let slow = |n: u32| service("slow", "echo", &format!("config = {{ version = {n} }}"));
    let mut node = AdminNode::start(&slow(1));
    node.process.wait_log(1, &["service state", "\"running\""]);
    for _ in 0..10 {
        let sleep = json!({ "jsonrpc": "2.0", "method": "slow/sleep", "params": { "ms": 300 } });
        node.rpc_as(Some(&node.token), "/rpc", &sleep).await;
    }
    std::fs::write(node.dir.join("manifest.toml"), slow(2)).unwrap();
    node.process.signal("HUP");
    node.process.wait_log(1, &["manifest reloaded"]);
    node.process
        .wait_log(1, &["processed queued messages before stopping"]);
    node.process.wait_log(2, &["service state", "\"running\""]);
    let dead = node
        .rpc(&json!({ "jsonrpc": "2.0", "id": 1, "method": "orchestrator/dead-letters" }))
        .await;
    assert_eq!(
        dead["result"],
        json!([]),
        "nothing was dead-lettered: {dead}"
    );
    let echo = node
        .rpc(&json!({ "jsonrpc": "2.0", "id": 2, "method": "slow/echo", "params": [2] }))
        .await;
    assert_eq!(echo["result"], json!([2]), "the new version answers");
}

/// A new version that faults twice within its probation goes back to the version it
/// replaced, which answers again; the status says which version failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_faulting_twice_on_probation_is_rolled_back() {
    use busbar::manifest::Manifest;
    use busbar::service::State;
    use busbar_tests::{TestNode, eventually, guard};
    let manifest = |component: &str| {
        format!(
            "[[services]]\nname = \"svc\"\ncomponent = {:?}\n",
            guest(component).display().to_string()
        )
    };
    let node = TestNode::start(&manifest("echo")).await.unwrap();
    let echo_sha = node.wait_state("svc", State::Running).await.sha256;
    let next = Manifest::parse(&manifest("faulty"), false, "<test>", node.dir()).unwrap();
    node.node.apply(&next).await.unwrap();
    eventually("the faulty version running", || {
        let s = node
            .node
            .report()
            .into_iter()
            .find(|r| r.name == "svc")?
            .status;
        (s.state == State::Running && s.sha256 != echo_sha).then_some(())
    })
    .await;
    for _ in 0..2 {
        let e = node
            .call("svc", "panic", &json!(null), guard())
            .await
            .unwrap_err();
        assert_eq!(e.code, busbar::message::ErrorCode::ServiceFault, "{e}");
    }
    let status = eventually("the rollback", || {
        let s = node
            .node
            .report()
            .into_iter()
            .find(|r| r.name == "svc")?
            .status;
        (s.state == State::Running && s.sha256 == echo_sha).then_some(s)
    })
    .await;
    let rollback = status
        .rolled_back
        .expect("the status names the failed version");
    assert!(rollback.reason.contains("trapped"), "{rollback:?}");
    assert_ne!(rollback.sha256, echo_sha);
    let reply = node
        .call("svc", "echo", &json!("back"), guard())
        .await
        .unwrap();
    assert_eq!(reply.payload, b"\"back\"");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_checks_only_what_changed_so_a_full_engine_still_reloads() {
    use busbar::manifest::Manifest;
    use busbar_tests::TestNode;
    // Two instances in all, both in use: an unchanged manifest still reloads, and a changed
    // entry whose trial finds no free slot is only loaded (its own start instantiates it).
    let text = |x: u32| {
        [
            service("a", "echo", ""),
            service("b", "faulty", &format!("config = {{ x = {x} }}")),
        ]
        .concat()
    };
    let node = TestNode::start_with(&text(1), "[engine]\nmax_instances = 2\n")
        .await
        .unwrap();
    node.wait_state("a", busbar::service::State::Running).await;
    node.wait_state("b", busbar::service::State::Running).await;
    let parse = |t: &str| Manifest::parse(t, false, "<test>", node.dir()).unwrap();
    let applied = node.node.reload(&parse(&text(1))).await.unwrap();
    assert_eq!(applied.unchanged, ["a", "b"]);
    let applied = node.node.reload(&parse(&text(2))).await.unwrap();
    assert_eq!(applied.restarted, ["b"]);
    node.wait_state("b", busbar::service::State::Running).await;
    assert_eq!(
        node.call_json("a", "echo", &json!([1])).await,
        json!([1]),
        "the other service ran on"
    );
    node.shutdown().await;
}
