//! The operator commands (`busbar status`, `call`, `publish`, `logs`, `monitor`) against a
//! running node, with their output and exit codes.

use busbar_tests::admin::AdminNode;
use busbar_tests::process::Finished;
use busbar_tests::service;
use serde_json::{Value, json};

fn node() -> AdminNode {
    AdminNode::start(
        &[
            service("echo", "echo", ""),
            service("faulty", "faulty", "limits = { deadline_ms = 300 }"),
        ]
        .concat(),
    )
}

fn code(done: &Finished) -> i32 {
    done.status.code().expect("exited with a code")
}

fn stdout_json(done: &Finished) -> Value {
    let text = done.stdout.join("\n");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", done.all()))
}

#[tokio::test(flavor = "multi_thread")]
async fn call_prints_the_reply_for_json_and_cbor_payloads() {
    let node = node();
    let dir = node.dir.as_path();
    std::fs::write(dir.join("reading.json"), r#"{"celsius": 21.5}"#).unwrap();
    let mut cbor = Vec::new();
    ciborium::into_writer(&json!({ "celsius": 23.0, "tags": ["a", "b"] }), &mut cbor).unwrap();
    std::fs::write(dir.join("reading.cbor"), cbor).unwrap();

    let done = node.cli(&["call", "echo", "echo", "--payload", "reading.json"]);
    assert_eq!(code(&done), 0, "{}", done.all());
    assert_eq!(stdout_json(&done), json!({ "celsius": 21.5 }));
    let done = node.cli(&["call", "echo", "echo", "--payload", "reading.cbor"]);
    assert_eq!(code(&done), 0, "{}", done.all());
    assert_eq!(
        stdout_json(&done),
        json!({ "celsius": 23.0, "tags": ["a", "b"] })
    );
    // `-p -` reads JSON from stdin.
    let mut child = std::process::Command::new(busbar_tests::busbar_bin())
        .args(["call", "echo", "echo", "-p", "-"])
        .env("BUSBAR_DATA_DIR", node.state_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"from": "stdin"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply, json!({ "from": "stdin" }));

    let done = node.cli(&["call", "echo", "upper", "-p", "reading.json", "--json"]);
    assert_eq!(
        stdout_json(&done),
        json!({ "jsonrpc": "2.0", "id": 1, "result": "{\"CELSIUS\":21.5}" })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tell_failures_apart() {
    let node = node();
    let dir = node.dir.as_path();
    std::fs::write(dir.join("slow.json"), r#"{"ms": 600}"#).unwrap();
    std::fs::write(dir.join("broken.json"), "{oops").unwrap();
    let cases: [(&[&str], i32, &str); 7] = [
        (&["call", "echo", "nope"], 5, "action `nope`"),
        (&["call", "nobody", "echo"], 5, "no service named `nobody`"),
        (&["call", "faulty", "panic"], 6, "-32002"),
        (
            &[
                "call",
                "echo",
                "sleep",
                "-p",
                "slow.json",
                "--timeout",
                "100ms",
            ],
            7,
            "within 100 ms",
        ),
        (
            &["call", "echo", "echo", "--token", "not-the-token-at-all"],
            4,
            "401",
        ),
        (
            &["status", "--url", "http://127.0.0.1:9"],
            3,
            "cannot reach the node",
        ),
        (
            &["call", "echo", "echo", "-p", "broken.json"],
            1,
            "broken.json is not valid JSON",
        ),
    ];
    for (args, want, says) in cases {
        let done = node.cli(args);
        assert_eq!(code(&done), want, "{args:?}: {}", done.all());
        assert!(
            done.stderr.iter().any(|l| l.contains(says)),
            "{args:?} should say {says:?}: {}",
            done.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_publish() {
    let node = node();
    std::fs::write(node.dir.join("event.json"), r#"{"door": "open"}"#).unwrap();
    let done = node.cli(&["publish", "echo", "echo", "--payload", "event.json"]);
    assert_eq!(code(&done), 0, "{}", done.all());
    assert!(
        done.stdout[0].starts_with("published to echo/echo: job job-"),
        "{}",
        done.all()
    );
    node.wait_processed("echo", 1).await;
    let done = node.cli(&["publish", "nobody", "echo", "--payload", "event.json"]);
    assert_eq!(
        code(&done),
        5,
        "an unknown service is reported: {}",
        done.all()
    );

    let done = node.cli(&["status"]);
    assert_eq!(code(&done), 0, "{}", done.all());
    assert!(
        done.stdout[0].starts_with("node admin-test"),
        "{}",
        done.all()
    );
    let echo = done
        .stdout
        .iter()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("{}", done.all()));
    let cols: Vec<_> = echo.split_whitespace().collect();
    assert_eq!(&cols[..4], ["echo", "running", "0", "1"], "{echo}");
    let done = node.cli(&["status", "--json"]);
    let status = stdout_json(&done);
    assert_eq!(status["services"][0]["name"], "echo");
    assert_eq!(status["services"][1]["name"], "faulty");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_monitor_follow_the_node() {
    let node = node();
    // Something for the log: a refused action on echo, a fault on faulty.
    node.cli(&["call", "echo", "nope"]);
    node.cli(&["call", "faulty", "panic"]);
    let done = node.cli(&["logs", "--service", "echo", "--level", "warn"]);
    assert_eq!(code(&done), 0, "{}", done.all());
    assert!(!done.stdout.is_empty(), "{}", done.all());
    for line in &done.stdout {
        assert!(line.contains(" WARN echo: "), "{line}");
    }
    assert!(
        done.stdout.iter().any(|l| l.contains("action=nope")),
        "{}",
        done.all()
    );
    let done = node.cli(&["logs", "-n", "3", "--json"]);
    assert_eq!(done.stdout.len(), 3, "{}", done.all());
    for line in &done.stdout {
        let line: Value = serde_json::from_str(line).unwrap();
        assert!(
            line["ts_ms"].is_u64() && line["level"].is_string(),
            "{line}"
        );
    }

    std::fs::write(node.dir.join("up.json"), r#"["a"]"#).unwrap();
    let mut logs = node.cli_start(&["logs", "--follow", "-n", "0", "--service", "echo"]);
    let mut monitor = node.cli_start(&["monitor", "--service", "echo", "--action", "up*"]);
    // Both are connected once a call shows up in each; poke until it does.
    let until = std::time::Instant::now() + busbar_tests::guard();
    loop {
        node.cli(&["call", "echo", "upper", "-p", "up.json"]);
        node.cli(&["call", "echo", "nope"]);
        node.cli(&["call", "faulty", "nope"]);
        let seen_log = logs.stdout().iter().any(|l| l.contains("action=nope"));
        let seen_msg = monitor
            .stdout()
            .iter()
            .any(|l| l.contains("admin → echo:upper call"));
        if seen_log && seen_msg {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "logs: {:?}\nmonitor: {:?}",
            logs.stdout().first(),
            monitor.stdout().first()
        );
    }
    assert!(
        logs.stdout().iter().all(|l| l.contains("echo: ")),
        "{:?}",
        logs.stdout()
    );
    assert!(
        monitor.stdout().iter().all(|l| l.contains("→ echo:up")),
        "{:?}",
        monitor.stdout()
    );
    for p in [&mut logs, &mut monitor] {
        p.signal("INT");
        assert!(p.wait().success());
    }
}
