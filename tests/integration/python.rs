//! Python services (built by componentize-py from `guests/python` with the SDK in
//! `guest-sdk/python`) on the real binary, beside Rust ones: the SDK end to end, faults with
//! their traceback, the sandbox, a hot swap through the hub, and `busbar check` naming a
//! limit that is too small.

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, start_node_env};
use busbar_tests::process::Busbar;
use busbar_tests::{python_env, python_guest, service, until, warm};
use serde_json::{Value, json};

use crate::fleet::{runs, sha256};

fn start(manifest: &str) -> AdminNode {
    AdminNode::start_env(manifest, &python_env())
}

/// Waits until `service/action` answers (a service restarting does not), and returns it.
async fn answered(node: &AdminNode, method: &str, params: Value) -> Value {
    until(&format!("{method} to answer"), || async {
        rpc(node, method, params.clone())
            .await
            .get("result")
            .cloned()
    })
    .await
}

/// `service/action` with `params` through the admin API: the JSON-RPC body.
async fn rpc(node: &AdminNode, method: &str, params: Value) -> Value {
    node.rpc(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
        .await
}

/// The result of `service/action`; panics with the error.
async fn ask(node: &AdminNode, method: &str, params: Value) -> Value {
    let body = rpc(node, method, params).await;
    assert!(body.get("error").is_none(), "{method}: {body}");
    body["result"].clone()
}

/// The Com lines (stdout, console Com) whose payload has `key`.
fn com_with(node: &AdminNode, key: &str) -> Vec<Value> {
    node.process
        .stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["payload"].get(key).is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_runs_beside_rust_ones() {
    python_guest("py_probe");
    let manifest = [
        service(
            "py",
            "py_probe",
            "config = { greeting = \"hej\", tick_ms = 50 }\ngrants = { destinations = [\"echo\"] }",
        ),
        service("echo", "echo", "grants = { destinations = [\"py\"] }"),
        service(
            "sensor",
            "temperature_sensor",
            "config = { interval_ms = 20, count = 3, forward_to = \"py\" }\n\
             grants = { destinations = [\"py\"] }",
        ),
    ]
    .concat();
    let node = start(&manifest);
    // Properties and the service's name.
    let info = answered(&node, "py/info", json!({})).await;
    assert_eq!(info["name"], "py");
    assert_eq!(info["greeting"], "hej");
    // Timers, and submit-message reaching Com.
    until("two ticks at Com", || async {
        (com_with(&node, "tick").len() >= 2).then_some(())
    })
    .await;
    let id = ask(&node, "py/submit", json!({ "hello": "hub" })).await["id"].clone();
    let line = until("the submitted message at Com", || async {
        com_with(&node, "hello").into_iter().next()
    })
    .await;
    assert_eq!(
        (&line["source"], &line["id"]),
        (&json!("py"), &id),
        "{line}"
    );
    // call, Python → Rust and Rust → Python.
    let asked = ask(
        &node,
        "py/ask",
        json!({ "destination": "echo", "action": "echo", "body": { "x": 1 } }),
    )
    .await;
    assert_eq!(asked, json!({ "ok": { "x": 1 } }));
    let called = ask(
        &node,
        "echo/call",
        json!({ "destination": "py", "action": "echo", "payload": { "y": 2 }, "timeout_ms": 5000 }),
    )
    .await;
    assert_eq!(called, json!({ "ok": { "y": 2 } }));
    // submit-action, Rust → Python (the sensor's readings) and Python → Rust (a failure at
    // the receiver comes back to Python's on_error).
    until("3 readings received by py", || async {
        (ask(&node, "py/count", json!({})).await["count"] == 3).then_some(())
    })
    .await;
    ask(
        &node,
        "py/send",
        json!({ "destination": "echo", "action": "nope" }),
    )
    .await;
    let failures = until("an $error back at py", || async {
        let f = ask(&node, "py/failures", json!({})).await;
        (f.as_array().is_some_and(|a| !a.is_empty())).then_some(f)
    })
    .await;
    assert_eq!(failures[0]["code"], "unknown-action", "{failures}");
    assert_eq!(failures[0]["destination"], "echo");
    // Grants: the sensor is not among py's destinations.
    let refused = ask(
        &node,
        "py/ask",
        json!({ "destination": "sensor", "action": "x" }),
    )
    .await;
    assert_eq!(refused["error"]["code"], "NOT_PERMITTED", "{refused}");
    // An error code from a Python handler reaches the caller.
    let failed = rpc(&node, "py/fail", json!({ "code": "BAD_PAYLOAD" })).await;
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{failed}"
    );
    // state-update: the desired state reaches the Python service.
    ask(
        &node,
        "orchestrator/desired-state",
        json!({ "msb-state": { "debug": true }, "threshold": 5 }),
    )
    .await;
    let info = until("the desired state at py", || async {
        let info = ask(&node, "py/info", json!({})).await;
        (info["desired"]["threshold"] == 5).then_some(info)
    })
    .await;
    assert_eq!(
        (&info["debug"], &info["enabled"]),
        (&json!(true), &json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_fault_is_logged_with_its_traceback_and_the_service_restarts() {
    python_guest("py_probe");
    let mut node = start(&service("py", "py_probe", ""));
    answered(&node, "py/info", json!({})).await;
    // An exception: the caller gets a fault, the log the traceback, and py comes back.
    let raised = rpc(&node, "py/raise", json!({})).await;
    assert!(
        raised["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited with status 1"),
        "{raised}"
    );
    node.process.wait_log(
        1,
        &["Traceback (most recent call last)", "py_probe.py", "raise_"],
    );
    node.process
        .wait_log(1, &["ValueError: py-probe was asked to raise"]);
    // MemoryError: the node says which limit refused the memory, the log has the error.
    answered(&node, "py/info", json!({})).await;
    rpc(&node, "py/hog", json!({})).await;
    node.process
        .wait_log(1, &["refused by limits.memory_mib = 16", "\"py\""]);
    node.process.wait_log(1, &["MemoryError"]);
    let info = answered(&node, "py/info", json!({})).await;
    assert_eq!(info["name"], "py");
    let status = node.get_json("/status").await;
    let py = &status["services"][0];
    assert_eq!(py["restarts"], 2, "{py}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_gets_errors_outside_its_grants_and_keeps_running() {
    python_guest("py_probe");
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = granted.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    let manifest = [
        service("py", "py_probe", "grants = { data = \"read-write\" }"),
        service(
            "field",
            "py_probe",
            &format!("grants = {{ network = [\"127.0.0.1:{port}\"] }}"),
        ),
    ]
    .concat();
    let mut node = start(&manifest);
    answered(&node, "py/info", json!({})).await;
    // Files: its own /data, nothing outside.
    let wrote = ask(
        &node,
        "py/write",
        json!({ "path": "/data/n.txt", "text": "kept" }),
    )
    .await;
    assert_eq!(wrote, json!({ "ok": true }));
    let read = ask(&node, "py/read", json!({ "path": "/data/n.txt" })).await;
    assert_eq!(read, json!({ "ok": true, "text": "kept" }));
    let passwd = ask(&node, "py/read", json!({ "path": "/etc/passwd" })).await;
    assert_eq!(passwd["ok"], false, "{passwd}");
    let escape = ask(&node, "py/read", json!({ "path": "/data/../../node.toml" })).await;
    assert_eq!(escape["ok"], false, "{escape}");
    // Sockets: an OSError without a grant, logged by the node.
    let denied = ask(
        &node,
        "py/connect",
        json!({ "host": "127.0.0.1", "port": port }),
    )
    .await;
    assert_eq!(denied["ok"], false, "{denied}");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .starts_with("PermissionError"),
        "{denied}"
    );
    node.process.wait_log(
        1,
        &[
            "network: creating a TCP socket denied: the service has no grants.network",
            "\"py\"",
        ],
    );
    // With the grant: the granted listener, and nothing else.
    let mut accepted = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut conn, _) = granted.accept().unwrap();
        let mut line = String::new();
        conn.read_to_string(&mut line).unwrap();
        line
    });
    let connected = ask(
        &node,
        "field/connect",
        json!({ "host": "127.0.0.1", "port": port }),
    )
    .await;
    assert_eq!(connected, json!({ "ok": true }));
    assert_eq!(
        std::mem::replace(&mut accepted, std::thread::spawn(String::new))
            .join()
            .unwrap(),
        "hello from python\n"
    );
    let refused = ask(
        &node,
        "field/connect",
        json!({ "host": "127.0.0.1", "port": other_port }),
    )
    .await;
    assert_eq!(refused["ok"], false, "{refused}");
    // Both still run, without a restart.
    let status = node.get_json("/status").await;
    for s in status["services"].as_array().unwrap() {
        assert_eq!(
            (&s["state"], &s["restarts"]),
            (&json!("running"), &json!(0)),
            "{s}"
        );
    }
    drop(other);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateful_python_service_is_hot_swapped_through_the_hub_with_its_state() {
    let v1 = python_guest("py_counter");
    let v2 = python_guest("py_counter_v2");
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    hub.publish("counter", &v1, "gw1", &[]);
    let node = start_node_env(
        work.path(),
        "gw1",
        &hub.url,
        &token,
        &hub.public_key_file(),
        &python_env(),
    );
    runs(&node, "counter", &sha256(&v1)).await;
    ask(&node, "counter/add", json!({ "n": 5 })).await;
    assert_eq!(
        ask(&node, "counter/add", json!({ "n": 2 })).await,
        json!({ "count": 7 })
    );
    hub.publish("counter", &v2, "gw1", &[]);
    runs(&node, "counter", &sha256(&v2)).await;
    assert_eq!(
        ask(&node, "counter/get", json!({})).await,
        json!({ "count": 7, "restored": 7, "version": 2 })
    );
}

#[test]
fn check_instantiates_python_services_and_names_a_limit_that_is_too_small() {
    python_guest("py_probe");
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        std::fs::write(dir.path().join("m.toml"), service("py", "py_probe", extra)).unwrap();
        let done = Busbar::start_env(
            dir.path(),
            &["check", "--manifest", "m.toml"],
            &python_env(),
        )
        .wait_finished();
        (done.status.success(), done.all())
    };
    let (ok, out) = check("");
    assert!(ok && out.contains("ok      py"), "{out}");
    let (ok, out) = check("limits = { instances = 8 }");
    assert!(!ok && out.contains("limits.instances = 8"), "{out}");
    let (ok, out) = check("limits = { memory_mib = 4 }");
    assert!(!ok && out.contains("limits.memory_mib = 4"), "{out}");
}

/// Copies the files of `from` into `to`, following links, leaving out `__pycache__`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            if !path.ends_with("__pycache__") {
                copy_tree(&path, &target);
            }
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The first ```python block of the README's "Writing a service in Python" section.
fn readme_example() -> String {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Writing a service in Python\n")
        .nth(1)
        .expect("the README has a section `Writing a service in Python`");
    let block = section.split("```python\n").nth(1).expect("a python block");
    block.split("```").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_builds_from_a_blank_folder_with_the_sdk_installed_by_pip() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    // A copy of the SDK (pip builds in its source tree; the WIT link becomes a file), installed
    // as a user would, without the network: no index, no build isolation.
    let sdk = dir.path().join("sdk");
    copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/python"),
        &sdk,
    );
    let pip = std::process::Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-index"])
        .args(["--no-build-isolation", "--target"])
        .arg(&site)
        .arg(&sdk)
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "pip: {}",
        String::from_utf8_lossy(&pip.stderr)
    );
    let work = dir.path().join("thermostat");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("thermostat.py"), readme_example()).unwrap();
    let built = std::process::Command::new(site.join("bin/busbar-py"))
        .args(["build", "thermostat.py"])
        .current_dir(&work)
        .env("PYTHONPATH", &site)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "busbar-py: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = work.join("thermostat.wasm");
    warm(&component);
    let manifest = format!(
        "[[services]]\nname = \"thermostat\"\ncomponent = {:?}\nconfig = {{ target = 21.5 }}\n",
        component.display().to_string()
    );
    let node = start(&manifest);
    let set = until("the thermostat to answer", || async {
        rpc(&node, "thermostat/set-target", json!({ "target": 23 }))
            .await
            .get("result")
            .cloned()
    })
    .await;
    assert_eq!(set, json!({ "target": 23.0 }));
    until("a report at Com", || async {
        com_with(&node, "target").into_iter().next()
    })
    .await;
}

#[test]
fn the_python_sdk_handles_topics_on_the_host() {
    // The SDK's topic matching and routing on CPython, against componentize-py's bindings
    // with the node's imports replaced by fakes (guest-sdk/python/tests/test_topics.py).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bindings = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("componentize-py")
        .current_dir(&root)
        .args(["-d", "wit", "-w", "service", "bindings"])
        .arg(bindings.path())
        .output()
        .expect("componentize-py runs (pip install componentize-py==0.25.0)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ran = std::process::Command::new("python3")
        .current_dir(&root)
        .arg("guest-sdk/python/tests/test_topics.py")
        .env("BUSBAR_PY_BINDINGS", bindings.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && out.contains("python sdk topics: ok"),
        "{out}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}
