//! The fleet control plane end to end: a real hub process set up with the `busbar hub` CLI,
//! real nodes following it, real components (`seq-sender`, `seq-receiver`, `bad-start`).

use std::path::Path;

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, new_version, ok, start_node};
use busbar_tests::{guest, until};
use serde_json::{Value, json};
use sha2::Digest as _;

/// A hub with node `gw1` and `seq-receiver` v1 published to it.
struct Fleet {
    hub: Hub,
    /// gw1's node token.
    token: String,
    /// gw1's folder.
    work: tempfile::TempDir,
    v1: std::path::PathBuf,
    v1_sha: String,
}

impl Fleet {
    fn with_v1() -> Self {
        let hub = Hub::start();
        let token = hub.add_node("gw1");
        let v1 = guest("seq_receiver");
        hub.publish("seq-receiver", &v1, "gw1", &[]);
        Fleet {
            token,
            work: tempfile::tempdir().unwrap(),
            v1_sha: sha256(&v1),
            v1,
            hub,
        }
    }
}

/// The sender may address the receiver.
const SENDER_GRANTS: &str = r#"--grants={"destinations":["seq-receiver"]}"#;

pub(crate) fn sha256(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Calls `service/action` through the node's admin API; `None` while it cannot answer.
pub(crate) async fn call(node: &AdminNode, method: &str) -> Option<Value> {
    let r = node
        .rpc_as(
            Some(&node.token),
            "/rpc",
            &json!({ "jsonrpc": "2.0", "id": 1, "method": method }),
        )
        .await
        .1;
    r.get("result").cloned()
}

/// The node's own status of service `name`.
async fn service_status(node: &AdminNode, name: &str) -> Option<Value> {
    let status = node.get_json("/status").await;
    status["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// Waits until the node runs `name` at version `sha` (by its own status).
pub(crate) async fn runs(node: &AdminNode, name: &str, sha: &str) -> Value {
    until(&format!("{name} running {sha}"), || async {
        service_status(node, name)
            .await
            .filter(|s| s["sha256"] == sha && s["state"] == "running")
    })
    .await
}

/// Waits until the hub has an event `kind` of node `id` for `sha`.
async fn hub_event(hub: &Hub, id: &str, kind: &str, sha: &str) -> Value {
    until(
        &format!("a `{kind}` event for {sha} at the hub"),
        || async {
            hub.node(id).await["events"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["kind"] == kind && e["sha256"] == sha)
                .cloned()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_is_hot_swapped_under_load_losing_nothing_and_keeping_its_state() {
    let Fleet {
        hub,
        token,
        work,
        v1,
        v1_sha,
    } = Fleet::with_v1();
    ok(
        hub.dir.path(),
        &["hub", "set-debug", "--dir", "fleet", "gw1", "on"],
    );
    let count = 6000;
    hub.publish(
        "seq-sender",
        &guest("seq_sender"),
        "gw1",
        &[&format!("count={count}"), "batch=20", SENDER_GRANTS],
    );
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;
    until("the receiver to get 1000 numbers", || async {
        call(&node, "seq-receiver/report")
            .await
            .filter(|r| r["received"].as_u64() >= Some(1000))
    })
    .await;

    // v2 while the sender keeps sending.
    let v2 = new_version(&v1, work.path(), "v2");
    let v2_sha = sha256(&v2);
    hub.publish("seq-receiver", &v2, "gw1", &[]);
    runs(&node, "seq-receiver", &v2_sha).await;
    let report = until("every number to arrive", || async {
        let sent = call(&node, "seq-sender/sent").await?;
        let report = call(&node, "seq-receiver/report").await?;
        (sent["sent"] == count && report["received"] == count).then_some(report)
    })
    .await;
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["missing"], json!([]), "{report}");
    assert_eq!(report["restored"], true, "{report}");
    assert_eq!(report["generation"], 1, "{report}");
    let swapped = until("the swap pause in the status", || async {
        let s = service_status(&node, "seq-receiver").await?;
        s["swap_pause_us"].as_u64().map(|_| s)
    })
    .await;
    let pause = swapped["swap_pause_us"].as_u64().unwrap();
    eprintln!("swap pause: {pause} µs");
    // The hub heard of it, and (debug is on) got the node's log lines.
    hub_event(&hub, "gw1", "swapped", &v2_sha).await;
    until("forwarded log lines at the hub", || async {
        let logs = hub.logs("gw1").await;
        logs.contains("new version swapped in").then_some(())
    })
    .await;
    let me = hub.node("gw1").await;
    assert_eq!(
        me["identity"]["target"],
        busbar::precompiled::HOST_TARGET,
        "{me}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_traps_in_start_is_rolled_back_and_reported() {
    let Fleet {
        hub,
        token,
        work,
        v1: _,
        v1_sha,
    } = Fleet::with_v1();
    hub.publish(
        "seq-sender",
        &guest("seq_sender"),
        "gw1",
        &["batch=5", SENDER_GRANTS],
    );
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;

    let bad = guest("bad_start");
    let bad_sha = sha256(&bad);
    hub.publish("seq-receiver", &bad, "gw1", &[]);
    let event = hub_event(&hub, "gw1", "rolled-back", &bad_sha).await;
    assert!(
        event["detail"].as_str().unwrap().contains("trapped"),
        "{event}"
    );
    let status = runs(&node, "seq-receiver", &v1_sha).await;
    assert_eq!(
        status["rolled_back"]["sha256"],
        bad_sha.as_str(),
        "{status}"
    );
    // The state went back with it, and nothing was lost or doubled.
    let before = call(&node, "seq-receiver/report").await.unwrap();
    assert_eq!(before["generation"], 1, "{before}");
    let seen = before["received"].as_u64().unwrap();
    let report = until("more numbers after the rollback", || async {
        call(&node, "seq-receiver/report")
            .await
            .filter(|r| r["received"].as_u64() > Some(seen + 200))
    })
    .await;
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["missing"], json!([]), "{report}");

    // A component that is not a busbar service (no `process` export...) is refused before
    // anything changes.
    let wrong = guest("not_a_service");
    let wrong_sha = sha256(&wrong);
    hub.publish("seq-receiver", &wrong, "gw1", &[]);
    let refused = hub_event(&hub, "gw1", "refused", &wrong_sha).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("is not a busbar service"),
        "{refused}"
    );
    runs(&node, "seq-receiver", &v1_sha).await;

    // A config change of the sender touches only the sender.
    let sender_sha = sha256(&guest("seq_sender"));
    let restarts = status["restarts"].clone();
    hub.publish(
        "seq-sender",
        &guest("seq_sender"),
        "gw1",
        &["batch=7", SENDER_GRANTS],
    );
    hub_event(&hub, "gw1", "swapped", &sender_sha).await;
    let receiver = service_status(&node, "seq-receiver").await.unwrap();
    assert_eq!(receiver["restarts"], restarts, "{receiver}");
    assert_eq!(receiver["sha256"], v1_sha.as_str());
    let after = call(&node, "seq-receiver/report").await.unwrap();
    assert_eq!(
        after["generation"], 1,
        "the receiver was not swapped: {after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_blobs_and_wrong_signatures_are_refused_and_the_old_version_keeps_running() {
    let Fleet {
        hub,
        token,
        work,
        v1,
        v1_sha,
    } = Fleet::with_v1();
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;

    // The hub's copy of v2 is altered after it was signed.
    let v2 = new_version(&v1, work.path(), "v2");
    let v2_sha = sha256(&v2);
    let entry = hub.upload("seq-receiver", &v2).await;
    let blob = hub.fleet_dir().join(format!("blobs/{v2_sha}.wasm"));
    let mut tampered = std::fs::read(&v2).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&blob, &tampered).unwrap();
    hub.publish_uploaded(&entry, "gw1").await;
    let event = hub_event(&hub, "gw1", "refused", &v2_sha).await;
    let detail = event["detail"].as_str().unwrap();
    assert!(detail.contains("tampered"), "{event}");
    runs(&node, "seq-receiver", &v1_sha).await;
    assert!(call(&node, "seq-receiver/report").await.is_some());

    // A node that trusts another key refuses every component.
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["hub", "keygen", "--out", "other.key"]);
    let token2 = hub.add_node("gw2");
    ok(
        hub.dir.path(),
        &["hub", "set-debug", "--dir", "fleet", "gw2", "off"],
    );
    hub.publish("seq-receiver", &v1, "gw2", &[]);
    let mut node2 = start_node(
        &other.path().join("."),
        "gw2",
        &hub.url,
        &token2,
        &other.path().join("other.key.pub"),
    );
    node2
        .process
        .wait_log(1, &["does not match the hub's public key"]);
    hub_event(&hub, "gw2", "refused", &v1_sha).await;
    assert!(service_status(&node2, "seq-receiver").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_starts_offline_from_its_cache_and_signs_in_when_the_hub_is_back() {
    let Fleet {
        mut hub,
        token,
        work,
        v1: _,
        v1_sha,
    } = Fleet::with_v1();
    let mut node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;
    node.process.signal("TERM");
    node.process.wait();
    drop(node);

    hub.stop();
    let mut node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    node.process
        .wait_log(1, &["starting offline from the last good manifest"]);
    runs(&node, "seq-receiver", &v1_sha).await;
    assert!(call(&node, "seq-receiver/report").await.is_some());

    hub.restart();
    node.process.wait_log(1, &["fleet: signed in"]);
    until("the node's status at the hub", || async {
        let me = hub.node("gw1").await;
        me["status"]["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["sha256"] == v1_sha.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_revoked_tokens_get_a_clear_error_on_the_node() {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    let work = tempfile::tempdir().unwrap();
    let mut node = start_node(
        work.path(),
        "gw1",
        &hub.url,
        "not-a-token",
        &hub.public_key_file(),
    );
    node.process
        .wait_log(1, &["refused the node token (401)", "unknown node token"]);
    drop(node);

    ok(
        hub.dir.path(),
        &["hub", "revoke-node", "--dir", "fleet", "gw1"],
    );
    let mut node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    node.process
        .wait_log(1, &["refused the node token (401)", "revoked"]);
}

/// A proxy in front of the hub that fails the first manifest request with 502, the first
/// component download with 503 and cuts the second one off halfway.
mod flaky {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::{Body, Bytes};
    use axum::extract::{Request, State};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};

    /// What the proxy saw.
    #[derive(Debug, Default)]
    pub struct Seen {
        pub manifests: AtomicUsize,
        pub blobs: AtomicUsize,
        /// The `Range` header of each blob request.
        pub ranges: Mutex<Vec<Option<String>>>,
    }

    struct Proxy {
        upstream: String,
        http: reqwest::Client,
        seen: Arc<Seen>,
    }

    /// Starts the proxy for `upstream`; returns its URL.
    pub async fn start(upstream: &str) -> (String, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let proxy = Arc::new(Proxy {
            upstream: upstream.to_owned(),
            http: busbar_base::net::http_client(),
            seen: seen.clone(),
        });
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
        let path = req.uri().path_and_query().unwrap().to_string();
        let blob = path.starts_with("/v1/blobs/");
        if path.starts_with("/v1/manifest") && p.seen.manifests.fetch_add(1, Ordering::SeqCst) == 0
        {
            return (StatusCode::BAD_GATEWAY, "{\"error\":\"upstream hiccup\"}").into_response();
        }
        let n = if blob {
            let range = req
                .headers()
                .get(header::RANGE)
                .map(|v| v.to_str().unwrap().to_owned());
            p.seen.ranges.lock().unwrap().push(range);
            p.seen.blobs.fetch_add(1, Ordering::SeqCst)
        } else {
            usize::MAX
        };
        if n == 0 {
            return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"busy\"}").into_response();
        }
        let mut out = p
            .http
            .request(req.method().clone(), format!("{}{path}", p.upstream));
        for name in [
            header::AUTHORIZATION,
            header::IF_NONE_MATCH,
            header::RANGE,
            header::CONTENT_TYPE,
        ] {
            if let Some(v) = req.headers().get(&name) {
                out = out.header(name.as_str(), v.as_bytes());
            }
        }
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap();
        let resp = out.body(body).send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in resp.headers() {
            if let (Ok(k), Ok(v)) = (
                header::HeaderName::from_bytes(k.as_str().as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.insert(k, v);
            }
        }
        let bytes = resp.bytes().await.unwrap();
        if n == 1 {
            // Promise everything, send half, then break the connection.
            let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
            let cut = async {
                // Let the first half reach the node before the connection breaks.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Err(std::io::Error::other("cut off by the test proxy"))
            };
            let stream = futures_util::StreamExt::chain(
                futures_util::stream::iter([Ok(half)]),
                futures_util::stream::once(cut),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            return (status, headers, Body::from_stream(stream)).into_response();
        }
        (status, headers, bytes).into_response()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_and_truncated_downloads_are_retried_and_resumed() {
    let Fleet {
        hub,
        token,
        work,
        v1: _,
        v1_sha,
    } = Fleet::with_v1();
    let (proxy, seen) = flaky::start(&hub.url).await;
    let mut node = start_node(work.path(), "gw1", &proxy, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;
    node.process
        .wait_log(1, &["resuming the component download"]);
    let ranges = seen.ranges.lock().unwrap().clone();
    assert!(ranges.len() >= 3, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert!(
        ranges[2]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "the third request resumes: {ranges:?}"
    );
    assert!(seen.manifests.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}
