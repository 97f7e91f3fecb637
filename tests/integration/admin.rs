//! The admin API of a real `busbar run`, through a real HTTP client: JSON-RPC shapes and
//! error codes, batches, asynchronous jobs, tokens, the event stream, status and metrics.

use std::time::Duration;

use busbar_tests::admin::{AdminNode, Metrics, OPS_TOKEN, SCADA_TOKEN, VIEWER_TOKEN};
use busbar_tests::{guard, service};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn manifest() -> String {
    [
        service("echo", "echo", ""),
        service("faulty", "faulty", "limits = { deadline_ms = 300 }"),
    ]
    .concat()
}

fn call(id: Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rpc_success_and_every_error_code() {
    let node = AdminNode::start(&manifest());
    assert_eq!(
        node.rpc(&call(json!(1), "echo/echo", json!({ "text": "hi" })))
            .await,
        json!({ "jsonrpc": "2.0", "id": 1, "result": { "text": "hi" } })
    );
    assert_eq!(
        node.rpc(&call(json!("a"), "echo/upper", json!(["x"])))
            .await,
        json!({ "jsonrpc": "2.0", "id": "a", "result": "[\"X\"]" })
    );

    // -32700: not JSON.
    let resp = node
        .request(Method::POST, "/rpc", Some(&node.token))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let parse: Value = resp.json().await.unwrap();
    assert_eq!(parse["id"], Value::Null);
    assert_eq!(parse["error"]["code"], -32700, "{parse}");

    // -32600: not a JSON-RPC 2.0 request.
    let invalid = node.rpc(&json!({ "id": 2, "method": "echo/echo" })).await;
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
    assert_eq!(invalid["id"], 2);

    // -32601: unknown service, unknown action, a method that is not SERVICE/ACTION.
    let unknown = node.rpc(&call(json!(3), "nobody/echo", json!({}))).await;
    assert_eq!(
        unknown["error"]["data"],
        json!({ "code": "unknown-destination", "service": "nobody", "action": "echo" })
    );
    assert_eq!(unknown["error"]["code"], -32601);
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no service named `nobody`"),
        "{unknown}"
    );
    let action = node.rpc(&call(json!(4), "echo/nope", json!({}))).await;
    assert_eq!(action["error"]["code"], -32601, "{action}");
    assert_eq!(action["error"]["data"]["code"], "unknown-action");
    let method = node.rpc(&call(json!(5), "echo", json!({}))).await;
    assert_eq!(method["error"]["code"], -32601, "{method}");

    // -32602: params that are not structured, and a payload the service refused.
    let primitive = node.rpc(&call(json!(6), "echo/echo", json!(7))).await;
    assert_eq!(primitive["error"]["code"], -32602, "{primitive}");
    let refused = node
        .rpc(&call(json!(7), "echo/sleep", json!({ "ms": "soon" })))
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(refused["error"]["data"]["code"], "bad-payload");

    // -32001 timeout, -32002 service fault.
    let resp = node
        .request(Method::POST, "/rpc?timeout_ms=100", Some(&node.token))
        .json(&call(json!(8), "echo/sleep", json!({ "ms": 600 })))
        .send()
        .await
        .unwrap();
    let timeout: Value = resp.json().await.unwrap();
    assert_eq!(timeout["error"]["code"], -32001, "{timeout}");
    assert_eq!(timeout["error"]["data"]["code"], "timeout");
    let fault = node.rpc(&call(json!(9), "faulty/panic", json!({}))).await;
    assert_eq!(fault["error"]["code"], -32002, "{fault}");
    assert_eq!(fault["error"]["data"]["code"], "service-fault");
}

#[tokio::test(flavor = "multi_thread")]
async fn bus_failures_map_to_their_codes() {
    let manifest = [
        service(
            "tiny",
            "echo",
            r#"limits = { mailbox = 1, on_full = "refuse" }"#,
        ),
        "[[services]]\nname = \"gone\"\ncomponent = \"missing.wasm\"\n".to_owned(),
    ]
    .concat();
    let node = AdminNode::start(&manifest);
    // -32005: larger than the node's 256 KiB payload limit.
    let big = "x".repeat(300 * 1024);
    let too_large = node.rpc(&call(json!(1), "tiny/echo", json!([big]))).await;
    assert_eq!(too_large["error"]["code"], -32005, "{}", too_large["error"]);
    assert_eq!(too_large["error"]["data"]["code"], "too-large");
    // -32003: a service whose component could not be loaded is failed.
    let until = std::time::Instant::now() + guard();
    let unavailable = loop {
        let r = node.rpc(&call(json!(2), "gone/echo", json!({}))).await;
        if r["error"]["code"] == -32003 || std::time::Instant::now() > until {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        unavailable["error"]["data"]["code"], "unavailable",
        "{unavailable}"
    );
    // -32004: one message in `process`, one queued, the mailbox (1) is full.
    for _ in 0..3 {
        let notify = json!({ "jsonrpc": "2.0", "method": "tiny/sleep", "params": { "ms": 400 } });
        node.rpc_as(Some(&node.token), "/rpc", &notify).await;
    }
    let full = node.rpc(&call(json!(3), "tiny/echo", json!({}))).await;
    assert_eq!(full["error"]["code"], -32004, "{full}");
    assert_eq!(full["error"]["data"]["code"], "queue-full");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answers_each_request_and_skips_notifications() {
    let node = AdminNode::start(&manifest());
    let batch = json!([
        call(json!(1), "echo/echo", json!({ "n": 1 })),
        { "jsonrpc": "2.0", "method": "echo/echo", "params": { "n": 2 } },
        call(json!(2), "nobody/echo", json!({})),
        5,
        call(json!(3), "echo/echo", json!([3])),
    ]);
    let answers = node.rpc(&batch).await;
    assert_eq!(
        answers,
        json!([
            { "jsonrpc": "2.0", "id": 1, "result": { "n": 1 } },
            {
                "jsonrpc": "2.0", "id": 2,
                "error": {
                    "code": -32601,
                    "message": answers[1]["error"]["message"],
                    "data": { "code": "unknown-destination", "service": "nobody", "action": "echo" }
                }
            },
            {
                "jsonrpc": "2.0", "id": null,
                "error": { "code": -32600, "message": "invalid request: expected a JSON-RPC 2.0 request object" }
            },
            { "jsonrpc": "2.0", "id": 3, "result": [3] },
        ])
    );
    // The notification was delivered too: echo processed three messages.
    node.wait_processed("echo", 3).await;
    assert_eq!(node.processed("echo").await, 3);

    let (status, body) = node
        .rpc_as(
            Some(&node.token),
            "/rpc",
            &json!([{ "jsonrpc": "2.0", "method": "echo/echo", "params": {} }]),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "only notifications: no body"
    );
    assert_eq!(body, Value::Null);
    let (_, empty) = node.rpc_as(Some(&node.token), "/rpc", &json!([])).await;
    assert_eq!(empty["error"]["code"], -32600, "{empty}");
}

#[tokio::test(flavor = "multi_thread")]
async fn respond_async_gives_202_and_a_job_to_poll() {
    let node = AdminNode::start(&manifest());
    let resp = node
        .request(Method::POST, "/rpc", Some(SCADA_TOKEN))
        .header("Prefer", "respond-async")
        .json(&call(json!(1), "echo/sleep", json!({ "ms": 200 })))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let job = accepted["job"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{job}"));
    assert_eq!(accepted["status"], "running");

    let until = std::time::Instant::now() + guard();
    let done = loop {
        let view: Value = node
            .request(Method::GET, &location, Some(SCADA_TOKEN))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "done" {
            break view;
        }
        assert_eq!(view["status"], "running", "{view}");
        assert!(std::time::Instant::now() < until, "job never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        done["response"],
        json!({ "jsonrpc": "2.0", "id": 1, "result": { "slept_ms": 200 } })
    );

    // Another token does not see the job; an unknown job is 404.
    let other = node
        .request(Method::GET, &location, Some(&node.token))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let unknown = node
        .request(Method::GET, "/jobs/job-nope", Some(SCADA_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // An unknown service is reported at once, not as a job.
    let (status, body) = node
        .rpc_as(
            Some(SCADA_TOKEN),
            "/rpc",
            &call(json!(2), "echo-typo/echo", json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "scada may only call echo: {body}"
    );
    let resp = node
        .request(Method::POST, "/rpc", Some(&node.token))
        .header("Prefer", "respond-async")
        .json(&call(json!(2), "echo-typo/echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32601, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_tokens_are_refused_and_nothing_runs() {
    let node = AdminNode::start(&manifest());
    let request = call(json!(1), "echo/echo", json!({}));
    for token in [None, Some("not-a-token-of-this-node")] {
        let (status, body) = node.rpc_as(token, "/rpc", &request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let resp = node
        .request(Method::GET, "/status", None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"busbar\""
    );

    // Scoped tokens: scada may call echo only, and not read /status; viewer may not call.
    let (status, body) = node
        .rpc_as(
            Some(SCADA_TOKEN),
            "/rpc",
            &json!([request, call(json!(2), "faulty/count", json!({}))]),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`faulty`"),
        "{body}"
    );
    let (status, _) = node.rpc_as(Some(VIEWER_TOKEN), "/rpc", &request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let resp = node
        .request(Method::GET, "/status", Some(SCADA_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Internal services and /metrics see every service: naming them is not enough.
    let dead = call(json!(3), "orchestrator/dead-letters", json!({}));
    let (status, body) = node.rpc_as(Some(OPS_TOKEN), "/rpc", &dead).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let resp = node
        .request(Method::GET, "/metrics", Some(OPS_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    assert_eq!(node.processed("echo").await, 0, "nothing was executed");
    assert_eq!(node.processed("faulty").await, 0, "nothing was executed");
    let (status, body) = node.rpc_as(Some(SCADA_TOKEN), "/rpc", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(node.processed("echo").await, 1);
}

/// Reads server-sent events of `path` until `want` of them satisfied `keep`.
async fn read_events(
    node: &AdminNode,
    path: &str,
    want: usize,
    mut poke: impl AsyncFnMut(),
    keep: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let resp = node
        .request(Method::GET, path, Some(VIEWER_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut got = Vec::new();
    poke().await;
    let until = tokio::time::Instant::now() + guard();
    while got.len() < want {
        let chunk = tokio::time::timeout_at(until, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} events of {path}: {got:?}", got.len()))
            .expect("stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            if let (Some(kind), Some(data)) = (field("event:"), field("data:")) {
                let data: Value = serde_json::from_str(&data).unwrap();
                assert!(keep(&kind, &data), "unwanted event {kind} {data} on {path}");
                got.push((kind, data));
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_delivers_filtered_lines() {
    let node = AdminNode::start(&manifest());
    // Messages to and from echo only, actions matching `up*`.
    let messages = read_events(
        &node,
        "/events?kinds=message&service=echo&action=up*",
        2,
        async || {
            node.rpc(&call(json!(1), "faulty/count", json!({}))).await;
            node.rpc(&call(json!(2), "echo/echo", json!({}))).await;
            node.rpc(&call(json!(3), "echo/upper", json!(["a"]))).await;
            node.rpc(&call(json!(4), "echo/upper", json!(["b"]))).await;
        },
        |kind, t| kind == "message" && t["destination"] == "echo" && t["action"] == "upper",
    )
    .await;
    let t = &messages[0].1;
    assert_eq!(t["source"], "admin");
    assert_eq!(t["kind"], "call");
    assert_eq!(t["outcome"], "ok");
    assert_eq!(t["size"], 5);
    assert!(t["latency_us"].is_u64(), "{t}");

    // Log lines at warn or worse about echo: an unknown action is one.
    let logs = read_events(
        &node,
        "/events?kinds=log&service=echo&level=warn",
        1,
        async || {
            node.rpc(&call(json!(5), "faulty/nope", json!({}))).await;
            node.rpc(&call(json!(6), "echo/nope", json!({}))).await;
        },
        |kind, l| kind == "log" && l["service"] == "echo" && l["level"] == "WARN",
    )
    .await;
    assert_eq!(logs[0].1["fields"]["action"], "nope", "{:?}", logs[0]);

    // History without follow: the stream ends after the kept lines.
    let resp = node
        .request(
            Method::GET,
            "/events?kinds=log&history=1000&follow=false&service=faulty",
            Some(VIEWER_TOKEN),
        )
        .send()
        .await
        .unwrap();
    let text = tokio::time::timeout(guard(), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("\"service\":\"faulty\""), "{text}");
    assert!(!text.contains("\"service\":\"echo\""), "{text}");
    let bad = node
        .request(Method::GET, "/events?kinds=gossip", Some(VIEWER_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_prometheus_metrics() {
    let node = AdminNode::start(&manifest());
    node.rpc(&call(json!(1), "echo/echo", json!({}))).await;
    node.rpc(&call(json!(2), "faulty/panic", json!({}))).await;
    let status = node.get_json("/status").await;
    assert_eq!(status["node_id"], "admin-test");
    let services = status["services"].as_array().unwrap();
    let names: Vec<_> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "faulty"]);
    assert_eq!(services[0]["state"], "running");
    assert_eq!(services[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(services[0]["counters"]["processed"], 1);

    let resp = node
        .request(Method::GET, "/metrics", Some(VIEWER_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let metrics = Metrics::parse(text.clone());
    assert_eq!(
        metrics.number("busbar_messages_processed_total", &[("service", "echo")]),
        1.0
    );
    assert_eq!(
        metrics.number("busbar_messages_failed_total", &[("service", "faulty")]),
        1.0
    );
    assert_eq!(
        metrics.number(
            "busbar_messages_dead_lettered_total",
            &[("service", "faulty")]
        ),
        1.0
    );
    assert_eq!(
        metrics.number("busbar_service_up", &[("service", "echo")]),
        1.0
    );
    assert!(metrics.number("busbar_service_restarts_total", &[("service", "faulty")]) <= 1.0);
    assert!(
        text.contains("# TYPE busbar_messages_processed counter"),
        "{text}"
    );
    match metrics.sample("busbar_call_duration_seconds", &[("service", "echo")]) {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 1.0, "{text}");
        }
        other => panic!("call latency is not a histogram: {other:?}"),
    }
}
