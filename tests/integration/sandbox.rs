//! Grants (default deny) and adversarial guests: each is contained and reported, and its
//! siblings keep processing.

use std::time::Duration;

use busbar::service::State;
use busbar_tests::{TestNode, service};
use serde_json::{Value, json};

async fn ask(node: &TestNode, name: &str, action: &str, payload: Value) -> Value {
    node.call_json(name, action, &payload).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_denied_unless_granted_and_then_only_what_is_granted() {
    use busbar_tests::admin::AdminNode;
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let granted = granted.local_addr().unwrap().to_string();
    let other_addr = other.local_addr().unwrap().to_string();
    let manifest = [
        service("net", "net_probe", ""),
        service(
            "field",
            "net_probe",
            &format!("grants = {{ network = [\"{granted}\"] }}"),
        ),
        service("echo", "echo", ""),
    ]
    .concat();
    let mut node = AdminNode::start(&manifest);
    async fn connect(node: &AdminNode, svc: &str, addr: &str) -> Value {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": format!("{svc}/connect"),
            "params": { "addr": addr } });
        node.rpc(&body).await["result"].clone()
    }
    // A component importing wasi:sockets loads; without a grant, no socket can even be made.
    let denied = connect(&node, "net", &granted).await;
    assert_eq!(denied["ok"], false, "{denied}");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("ermission denied"),
        "{denied}"
    );
    // With the grant: that address, and nothing else.
    assert_eq!(
        connect(&node, "field", &granted).await,
        json!({ "ok": true })
    );
    let refused = connect(&node, "field", &other_addr).await;
    assert_eq!(refused["ok"], false, "{refused}");
    node.process.wait_log(
        1,
        &[
            "network: creating a TCP socket denied: the service has no grants.network",
            "\"net\"",
        ],
    );
    node.process
        .wait_log(1, &["network: connecting to", &other_addr, "\"field\""]);
    // Both keep running, and so do their siblings.
    let echo = json!({ "jsonrpc": "2.0", "id": 2, "method": "echo/echo", "params": [1] });
    assert_eq!(node.rpc(&echo).await["result"], json!([1]));
    assert_eq!(connect(&node, "net", &granted).await["ok"], false);
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_data_grants_give_exactly_what_they_name() {
    // SAFETY of the test: the variable is set before the node reads it, in this process.
    let marker = "BUSBAR_TEST_GRANTED_VALUE";
    assert!(std::env::var(marker).is_err());
    let manifest = [
        service(
            "writer",
            "intruder",
            r#"grants = { env = ["HOME", "NOT_SET_ANYWHERE_1234"], data = "read-write" }"#,
        ),
        service("reader", "intruder", r#"grants = { data = "read-only" }"#),
        service("nobody", "intruder", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let env = ask(&node, "writer", "env", json!({})).await;
    assert_eq!(
        env["vars"],
        json!({ "HOME": std::env::var("HOME").unwrap() }),
        "only the granted variable that is set"
    );
    assert_eq!(
        ask(&node, "nobody", "env", json!({})).await["vars"],
        json!({})
    );

    // The writer's folder is its own, under the node's data dir.
    let wrote = ask(
        &node,
        "writer",
        "write",
        json!({ "path": "/data/note.txt", "text": "hi" }),
    )
    .await;
    assert_eq!(wrote, json!({ "ok": true }));
    let on_host =
        std::fs::read_to_string(node.dir().join("state/services/writer/note.txt")).unwrap();
    assert_eq!(on_host, "hi");
    let read = ask(&node, "writer", "read", json!({ "path": "/data/note.txt" })).await;
    assert_eq!(read, json!({ "text": "hi" }));

    // Escapes fail: out of the folder, into a sibling's, or anywhere without a grant.
    for path in [
        "/data/../../node.toml",
        "/data/../writer/note.txt",
        "/etc/passwd",
        "../node.toml",
    ] {
        for who in ["writer", "reader", "nobody"] {
            let r = ask(&node, who, "read", json!({ "path": path })).await;
            assert!(r["error"].is_string(), "{who} read {path}: {r}");
        }
    }
    // Read-only is read-only.
    std::fs::write(node.dir().join("state/services/reader/seed.txt"), "seed").unwrap();
    let read = ask(&node, "reader", "read", json!({ "path": "/data/seed.txt" })).await;
    assert_eq!(read, json!({ "text": "seed" }));
    let w = ask(
        &node,
        "reader",
        "write",
        json!({ "path": "/data/seed.txt", "text": "x" }),
    )
    .await;
    assert!(w["error"].is_string(), "{w}");
    let w = ask(
        &node,
        "nobody",
        "write",
        json!({ "path": "/data/x", "text": "x" }),
    )
    .await;
    assert!(w["error"].is_string(), "{w}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_denied_unless_granted() {
    let manifest = [
        service(
            "granted",
            "intruder",
            r#"grants = { destinations = ["echo"] }"#,
        ),
        service("denied", "intruder", ""),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let ok = ask(
        &node,
        "granted",
        "send",
        json!({ "to": "echo", "action": "echo" }),
    )
    .await;
    assert!(ok["ok"].is_string(), "{ok}");
    for (who, to) in [
        ("granted", "denied"),
        ("granted", "*"),
        ("denied", "echo"),
        ("denied", "orchestrator"),
    ] {
        let r = ask(&node, who, "send", json!({ "to": to, "action": "x" })).await;
        assert_eq!(r["error"], "not-permitted", "{who} → {to}: {r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("grants.destinations"),
            "{r}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_actions_of_internal_services_are_for_privileged_services() {
    let manifest = [
        service(
            "plain",
            "echo",
            r#"grants = { destinations = ["orchestrator"] }"#,
        ),
        service(
            "operator",
            "echo",
            r#"grants = { destinations = ["orchestrator"], privileged = true }"#,
        ),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let call = |action: &str| json!({ "destination": "orchestrator", "action": action, "payload": {}, "timeout_ms": 5000 });
    let plain = ask(&node, "plain", "call", call("dead-letters")).await;
    assert_eq!(plain["error"]["code"], "not-permitted", "{plain}");
    assert!(
        plain["error"]["message"]
            .as_str()
            .unwrap()
            .contains("privileged"),
        "{plain}"
    );
    let status = ask(&node, "plain", "call", call("status")).await;
    assert!(
        status["ok"].is_array(),
        "reading the status is not a control action: {status}"
    );
    let operator = ask(&node, "operator", "call", call("dead-letters")).await;
    assert_eq!(operator, json!({ "ok": [] }));
    node.shutdown().await;
}

/// Calls `name`/`action`, expecting a service fault; returns the error text.
async fn faults(node: &TestNode, name: &str, action: &str, payload: Value) -> String {
    let e = node
        .call(name, action, &payload, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(busbar::message::code_name(e.code), "service-fault", "{e}");
    e.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_guests_are_contained_and_the_others_keep_processing() {
    let manifest = [
        service(
            "intruder",
            "intruder",
            r#"limits = { deadline_ms = 500 }
grants = { destinations = ["echo"] }"#,
        ),
        service(
            "spinner",
            "intruder",
            "config = { start = \"spin\" }\nlimits = { deadline_ms = 100 }",
        ),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let mut echoed = 0;
    let mut check_sibling = async || {
        echoed += 1;
        assert_eq!(
            ask(&node, "echo", "echo", json!([echoed])).await,
            json!([echoed])
        );
    };

    // A memory bomb hits its memory limit (16 MiB) and traps.
    let e = faults(&node, "intruder", "bomb", json!({})).await;
    assert!(e.contains("trapped"), "{e}");
    check_sibling().await;
    // Deep recursion overflows the guest's stack and traps; a shallow one is fine.
    node.wait_state("intruder", State::Running).await;
    let e = faults(&node, "intruder", "recurse", json!({ "depth": 10_000_000 })).await;
    assert!(e.contains("trapped"), "{e}");
    node.wait_state("intruder", State::Running).await;
    let fine = ask(&node, "intruder", "recurse", json!({ "depth": 100 })).await;
    assert!(fine["sum"].is_u64(), "{fine}");
    check_sibling().await;

    // A 10 MiB message is refused with `too-large` to the sender; nothing else notices.
    let huge = ask(
        &node,
        "intruder",
        "huge",
        json!({ "to": "echo", "mib": 10 }),
    )
    .await;
    assert_eq!(huge["error"], "too-large", "{huge}");
    check_sibling().await;

    // Submit spam: the default quota (10 000/s, bursts of as many) makes the spammer wait its
    // turn; nothing is refused, the sibling keeps answering.
    let spam = ask(
        &node,
        "intruder",
        "spam",
        json!({ "to": "echo", "n": 20_000 }),
    )
    .await;
    assert_eq!(spam["accepted"], 20_000, "{spam}");
    let report = node.node.report();
    let intruder = report.iter().find(|r| r.name == "intruder").unwrap();
    assert!(intruder.counters.throttled > 0, "{:?}", intruder.counters);
    check_sibling().await;

    // A loop in `start` is cut at the deadline, again and again, until the service is failed.
    let status = node.wait_state("spinner", State::Failed).await;
    assert!(
        status
            .last_fault
            .as_deref()
            .unwrap_or("")
            .contains("deadline"),
        "{status:?}"
    );
    let e = node
        .call("spinner", "env", &json!({}), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(busbar::message::code_name(e.code), "unavailable");
    check_sibling().await;

    let report = node.node.report();
    let echo = report.iter().find(|r| r.name == "echo").unwrap();
    assert_eq!(echo.status.state, State::Running);
    assert_eq!(echo.status.restarts, 0, "the sibling was never disturbed");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_loop_is_throttled_by_the_quota() {
    let manifest = [
        service(
            "intruder",
            "intruder",
            "limits = { submit_per_sec = 500 }\ngrants = { destinations = [\"echo\"] }",
        ),
        service("echo", "echo", "limits = { mailbox = 4096 }"),
    ]
    .concat();
    let node = TestNode::start(&manifest).await.unwrap();
    let spam = ask(
        &node,
        "intruder",
        "spam",
        json!({ "to": "echo", "n": 1500 }),
    )
    .await;
    assert_eq!(spam["accepted"], 1500, "throttled, not refused: {spam}");
    let report = node.node.report();
    let intruder = report.iter().find(|r| r.name == "intruder").unwrap();
    // A burst of 500 goes through at once; most of the rest had to wait for their turn.
    assert!(
        intruder.counters.throttled >= 500,
        "{:?}",
        intruder.counters
    );
    assert_eq!(intruder.status.restarts, 0, "slowed, not killed");
    assert_eq!(ask(&node, "echo", "echo", json!([1])).await, json!([1]));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_bounds_a_call_when_the_engine_counts_it() {
    let manifest = [
        service(
            "faulty",
            "faulty",
            "limits = { fuel = 20000000, deadline_ms = 60000 }",
        ),
        service("echo", "echo", ""),
    ]
    .concat();
    let node = TestNode::start_with(&manifest, "[engine]\nconsume_fuel = true")
        .await
        .unwrap();
    assert_eq!(
        ask(&node, "faulty", "count", json!({})).await,
        json!({ "processed": 1 }),
        "an ordinary call has fuel enough"
    );
    let e = faults(&node, "faulty", "spin", json!({})).await;
    assert!(e.contains("fuel"), "{e}");
    assert_eq!(ask(&node, "echo", "echo", json!([2])).await, json!([2]));
    node.shutdown().await;

    let refused = TestNode::start(&service("faulty", "faulty", "limits = { fuel = 1000 }"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("`faulty`") && refused.contains("engine.consume_fuel"),
        "{refused}"
    );
}

#[test]
fn a_hundred_services_run_in_a_4_gib_address_space() {
    use busbar_tests::process::Busbar;
    let dir = tempfile::tempdir().unwrap();
    let manifest: String = (0..100)
        .map(|i| service(&format!("c{i}"), "raw_counter", ""))
        .chain([service("echo", "echo", "")])
        .collect();
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[com]\nkind = \"file\"\npath = \"com.jsonl\"\n",
    )
    .unwrap();
    let mut shell = std::process::Command::new("sh");
    shell.args([
        "-c",
        "ulimit -v 4194304 && exec \"$0\" \"$@\"",
        busbar_tests::busbar_bin().to_str().unwrap(),
    ]);
    let mut node = Busbar::spawn(
        shell,
        dir.path(),
        &["run", "--manifest", "m.toml", "--config", "node.toml"],
        &[],
    );
    node.wait_log(101, &["service state", "\"running\""]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .unwrap();
    assert!(line.contains("4294967296"), "{line}");
    node.signal("TERM");
    let status = node.wait();
    let done = node.finished(status);
    assert!(done.status.success(), "{}", done.all());
    let stopped = done
        .stderr
        .iter()
        .filter(|l| l.contains("\"stopped\""))
        .count();
    assert_eq!(stopped, 101, "every service stopped cleanly");
}
