//! Hostile input, one test per way in: out-of-range limits (check, SIGHUP, hub publish, the
//! fleet client), files that are not components, a huge JSON-RPC batch, slow-header
//! connections, a hub that widens grants or sends a bad digest or a huge manifest, and a
//! node token that tries to grow the hub or forge its log lines. Each once took a node or
//! a hub down or grew it without bound.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Instant;

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, start_node};
use busbar_tests::process::Busbar;
use busbar_tests::{guard, guest, service, until};
use serde_json::{Value, json};

fn check(dir: &Path, manifest: &str) -> String {
    std::fs::write(dir.join("m.toml"), manifest).unwrap();
    let done = Busbar::run(dir, &["check", "--manifest", "m.toml"]);
    assert_ne!(done.status.code(), Some(0), "{}", done.all());
    done.all()
}

#[test]
fn check_refuses_limits_out_of_range_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        dir.path(),
        &service("echo", "echo", "limits = { mailbox = 2305843009213693952 }"),
    );
    assert!(
        out.contains("(`echo`).limits.mailbox: 2305843009213693952 is out of range (1 to 100000)"),
        "{out}"
    );
    let out = check(
        dir.path(),
        &service("echo", "echo", "limits = { instances = 0 }"),
    );
    assert!(out.contains("limits.instances: 0 is out of range"), "{out}");
    // Above the engine's memory: `check` says so as `run` would.
    let out = check(
        dir.path(),
        &service("echo", "echo", "limits = { memory_mib = 64 }"),
    );
    assert!(
        out.contains("limits.memory_mib: 64 exceeds engine.max_memory_mib = 16"),
        "{out}"
    );
}

#[test]
fn check_refuses_fifos_devices_and_huge_files_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.wasm");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let sparse = dir.path().join("sparse.wasm");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut cases = vec![("/dev/zero".to_owned(), "not a regular file")];
    if made.is_ok_and(|s| s.success()) {
        cases.push((fifo.display().to_string(), "not a regular file"));
    }
    cases.push((
        sparse.display().to_string(),
        "1073741824 bytes, more than the 268435456",
    ));
    for (path, words) in cases {
        let manifest = format!("[[services]]\nname = \"x\"\ncomponent = \"{path}\"\n");
        let started = Instant::now();
        let out = check(dir.path(), &manifest);
        assert!(out.contains(words), "{path}: {out}");
        assert!(started.elapsed() < guard(), "{path} took too long");
    }
}

#[test]
fn sighup_refuses_limits_out_of_range_and_the_node_keeps_running() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = AdminNode::start(&service("echo", "echo", ""));
    std::fs::write(
        node.dir.join("manifest.toml"),
        service("echo", "echo", "limits = { mailbox = 2305843009213693952 }"),
    )
    .unwrap();
    node.process.signal("HUP");
    node.process.wait_log(
        1,
        &["reload refused", "limits.mailbox: 2305843009213693952"],
    );
    rt.block_on(async {
        let r = node
            .rpc(&json!({"jsonrpc": "2.0", "id": 1, "method": "echo/echo", "params": {"a": 1}}))
            .await;
        assert_eq!(r["result"], json!({"a": 1}), "{r}");
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_json_rpc_batch_is_refused_whole_and_tasks_are_watched() {
    let node = AdminNode::start(&service("echo", "echo", ""));
    let body = format!("[{}]", vec!["{}"; 190_000].join(","));
    let resp = node
        .request(reqwest::Method::POST, "/rpc", Some(&node.token))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("190000 requests; at most 100 (admin.max_batch"),
        "{message}"
    );
    // A batch within the bound runs.
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "echo/echo", "params": [i]}))
        .collect();
    let r = node.rpc(&Value::Array(batch)).await;
    assert_eq!(r.as_array().map(Vec::len), Some(100), "{r}");
    // The node's long-lived tasks are watched and shown.
    let status = node.get_json("/status").await;
    for task in ["com", "admin-api"] {
        assert_eq!(status["tasks"][task]["state"], "running", "{status}");
    }
    let metrics = busbar_tests::admin::Metrics::parse(
        node.request(reqwest::Method::GET, "/metrics", Some(&node.token))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(metrics.number("busbar_task_up", &[("task", "com")]), 1.0);
}

#[test]
fn a_flood_of_idle_connections_cannot_keep_the_operator_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), service("echo", "echo", "")).unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[admin]\nlisten = \"127.0.0.1:0\"\nheader_timeout_ms = 3000\n",
    )
    .unwrap();
    // The node may hold 1,024 files; the flood is larger.
    let mut shell = std::process::Command::new("sh");
    shell.args([
        "-c",
        "ulimit -n 1024 && exec \"$0\" \"$@\"",
        busbar_tests::busbar_bin().to_str().unwrap(),
    ]);
    let process = Busbar::spawn(
        shell,
        dir.path(),
        &["run", "--manifest", "m.toml", "--config", "node.toml"],
        &[],
    );
    let node = AdminNode::attach(process, dir.path());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.process.id())).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(files.contains("1024"), "{files}");
    let addr = node.url.trim_start_matches("http://").to_owned();
    // 1,100 connections held open, half of them with headers never finished.
    let mut flood: Vec<std::net::TcpStream> = (0..1100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    for s in flood.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n");
    }
    // While they are held, the operator is answered (after at most a few refusals).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(until(
        "the admin API to answer during the flood",
        || async {
            let r = node
                .request(reqwest::Method::GET, "/status", Some(&node.token))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    ));
    // And the server closed every one of them: by its header deadline, or with a 503
    // naming the setting for those over the cap.
    let mut refused = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(guard())).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        if text.contains("503") {
            assert!(text.contains("admin.max_connections"), "{text}");
            refused += 1;
        }
    }
    assert!(refused > 0, "1,100 connections should pass a cap of 128");
    assert!(
        node.process
            .stderr()
            .iter()
            .all(|l| !l.contains("cannot accept"))
    );
}

/// A fake hub: signs any node in and serves `manifest` as its manifest.
async fn fake_hub(manifest: Vec<u8>) -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/v1/sign-in",
            post(|| async {
                axum::Json(json!({"node_id": "gw1", "heartbeat_s": 30, "long_poll_s": 1}))
            }),
        )
        .route(
            "/v1/manifest",
            get(move || {
                let body = manifest.clone();
                async move { ([("etag", "\"fake\"")], body) }
            }),
        )
        .route(
            "/v1/status",
            post(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/v1/logs",
            post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_digest_or_a_huge_manifest_from_a_hub_leaves_the_node_running() {
    let key = tempfile::tempdir().unwrap();
    busbar_tests::fleet::ok(key.path(), &["hub", "keygen", "--out", "k"]);
    let public = key.path().join("k.pub");
    let entry = json!({"name": "echo", "sha256": "ü".repeat(32), "size": 10, "signature": "00"});
    let bad_digest = serde_json::to_vec(&json!({"services": [entry]})).unwrap();
    let huge = serde_json::to_vec(&json!({"services": [], "x": "y".repeat(5 << 20)})).unwrap();
    for (body, words) in [
        (bad_digest, "is not a sha256"),
        (huge, "larger than 4194304 bytes"),
    ] {
        let url = fake_hub(body).await;
        let work = tempfile::tempdir().unwrap();
        let mut node = start_node(work.path(), "gw1", &url, "token", &public);
        node.process.wait_log(1, &[words]);
        let status = node.get_json("/status").await;
        assert_eq!(status["tasks"]["fleet"]["state"], "running", "{status}");
        assert_eq!(status["services"], json!([]), "{status}");
    }
}

/// A proxy in front of the hub that widens every service's grants and config in the
/// manifests it passes on, as a compromised hub or a network attacker on `http://` would.
async fn widening_proxy(upstream: String) -> String {
    use axum::extract::Request;
    use axum::response::IntoResponse as _;
    let http = busbar_base::net::http_client();
    let forward = move |req: Request| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let path = req.uri().path_and_query().unwrap().to_string();
            let mut out = http.request(req.method().clone(), format!("{upstream}{path}"));
            for (k, v) in req.headers() {
                if k != "host" && k != "content-length" {
                    out = out.header(k.as_str(), v.as_bytes());
                }
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            let resp = out.body(body).send().await.unwrap();
            let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let etag = resp
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut bytes = resp.bytes().await.unwrap().to_vec();
            if path.starts_with("/v1/manifest") && status.is_success() {
                let mut m: Value = serde_json::from_slice(&bytes).unwrap();
                for s in m["services"].as_array_mut().unwrap() {
                    s["grants"] = json!({"privileged": true, "destinations": ["*"],
                        "data": "read-write", "env": ["HOME"]});
                    s["config"] = json!({"planted": "by the hub"});
                }
                bytes = serde_json::to_vec(&m).unwrap();
            }
            let mut response = (status, bytes).into_response();
            if let Some(etag) = etag {
                response.headers_mut().insert("etag", etag.parse().unwrap());
            }
            response
        }
    };
    let app = axum::Router::new().fallback(forward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_cannot_widen_what_the_publisher_signed() {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    hub.publish("echo", &guest("echo"), "gw1", &[]);
    let proxy = widening_proxy(hub.url.clone()).await;
    let work = tempfile::tempdir().unwrap();
    let mut node = start_node(work.path(), "gw1", &proxy, &token, &hub.public_key_file());
    node.process
        .wait_log(1, &["the hub's entry is refused", "does not match"]);
    let status = node.get_json("/status").await;
    assert_eq!(
        status["services"],
        json!([]),
        "the widened entry must not run: {status}"
    );
    let event = until("a `refused` event at the hub", || async {
        hub.node("gw1").await["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "refused")
            .cloned()
    })
    .await;
    assert!(
        event["detail"].as_str().unwrap().contains("entry refused"),
        "{event}"
    );
    // Straight from the hub, the same entry runs.
    drop(node);
    let work = tempfile::tempdir().unwrap();
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    until("echo running", || async {
        let status = node.get_json("/status").await;
        status["services"]
            .as_array()?
            .iter()
            .any(|s| s["name"] == "echo" && s["state"] == "running")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_token_cannot_grow_the_hub_forge_log_lines_or_crash_it() {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    let http = busbar_base::net::http_client();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", hub.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let sha = "a".repeat(64);
    let event = |detail: String, sha: &str| json!({"at_ms": 1, "service": "echo", "kind": "refused", "sha256": sha, "detail": detail});
    // A 2 MB event: refused by the body bound.
    let r = post(
        "/v1/status",
        json!({"services": [], "events": [event("x".repeat(2 << 20), &sha)]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    // Too many events, or a long detail: refused naming the field.
    let many: Vec<Value> = (0..101).map(|_| event("d".into(), &sha)).collect();
    let r = post("/v1/status", json!({"services": [], "events": many}))
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("events: 101 items, at most 100")
    );
    // A non-ASCII digest: refused at parsing, the hub stays up.
    let r = post(
        "/v1/status",
        json!({"services": [], "events": [event("d".into(), &"ü".repeat(32))]}),
    )
    .await
    .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // Newlines cannot forge lines in the node's log.
    let r = post(
        "/v1/logs",
        json!({"lines": ["first\n2026-01-01 ERROR forged by gw1"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let logs = hub.logs("gw1").await;
    assert_eq!(logs.lines().count(), 1, "{logs}");
    assert!(logs.contains("first\\n2026-01-01 ERROR forged"), "{logs}");
    // A bounded status is stored; `busbar hub nodes` lists it.
    let r = post(
        "/v1/status",
        json!({"services": [], "events": [event("ok".into(), &sha)]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let out = hub.cli(&["nodes"]);
    assert!(out.status.success(), "{}", out.all());
    assert!(out.all().contains("gw1"), "{}", out.all());
}
