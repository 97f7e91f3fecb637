//! A node signs in, long-polls, downloads (ranged) and is refused, against a real hub server
//! in process.

//! The hub served in-process on a free port, driven over HTTP as nodes and an admin would.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::config::HubConfig;
use crate::protocol::{
    self, FleetManifest, FleetService, NodeEvent, NodeRecord, NodeStatus, Publish, Published,
    SignedIn,
};
use crate::server::HubServer;

const ADMIN: &str = "admin-token-of-the-test";
const GW1: &str = "gw1-token-of-the-test";
const GW2: &str = "gw2-token-of-the-test";

/// A fleet dir with gw1 (tag `lab`) and gw2 (revoked), signed by `key`.
use super::{error_of, fleet_dir, sign_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sign_in_long_poll_download_and_get_refused() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let tmp = fleet_dir(&key);
    let server = HubServer::start(tmp.path(), "127.0.0.1:0".parse().unwrap(), 64)
        .await
        .unwrap();
    let url = server.url();
    let http = busbar_base::net::http_client();

    // Sign-in: its own id, not another's.
    let resp = http
        .post(format!("{url}/v1/sign-in"))
        .bearer_auth(GW1)
        .json(&sign_in("gw1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let signed: SignedIn = resp.json().await.unwrap();
    assert_eq!((signed.node_id.as_str(), signed.long_poll_s), ("gw1", 25));
    let resp = http
        .post(format!("{url}/v1/sign-in"))
        .bearer_auth(GW1)
        .json(&sign_in("gw9"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let e = error_of(resp).await;
    assert!(e.contains("gw1") && e.contains("gw9"), "{e}");

    // The empty manifest and its ETag.
    let resp = http
        .get(format!("{url}/v1/manifest"))
        .bearer_auth(GW1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let etag0 = resp.headers()["etag"].to_str().unwrap().to_owned();
    let m: FleetManifest = resp.json().await.unwrap();
    assert!(m.services.is_empty());
    let resp = http
        .get(format!("{url}/v1/manifest?wait=0"))
        .bearer_auth(GW1)
        .header("if-none-match", &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // A long poll, woken by a publish to the node's tag.
    let poll = tokio::spawn({
        let (http, url, etag0) = (http.clone(), url.clone(), etag0.clone());
        async move {
            let resp = http
                .get(format!("{url}/v1/manifest?wait=20"))
                .bearer_auth(GW1)
                .header("if-none-match", etag0)
                .send()
                .await
                .unwrap();
            (Instant::now(), resp)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished());

    let wasm: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&wasm));
    let signature = protocol::sign(&key, &sha);
    let resp = http
        .put(format!("{url}/v1/admin/blobs/{}", "0".repeat(64)))
        .bearer_auth(ADMIN)
        .header(protocol::SIGNATURE_HEADER, &signature)
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains(&sha));
    let other_key = SigningKey::from_bytes(&[6; 32]);
    let resp = http
        .put(format!("{url}/v1/admin/blobs/{sha}"))
        .bearer_auth(ADMIN)
        .header(protocol::SIGNATURE_HEADER, protocol::sign(&other_key, &sha))
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains("does not match"));
    for _ in 0..2 {
        let resp = http
            .put(format!("{url}/v1/admin/blobs/{sha}"))
            .bearer_auth(ADMIN)
            .header(protocol::SIGNATURE_HEADER, &signature)
            .body(wasm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = http
        .put(format!("{url}/v1/admin/blobs/{sha}"))
        .bearer_auth(GW1)
        .header(protocol::SIGNATURE_HEADER, &signature)
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let mut service = FleetService {
        name: "echo".into(),
        sha256: sha.parse().unwrap(),
        size: wasm.len() as u64,
        signature: signature.clone(),
        enabled: true,
        config: Default::default(),
        limits: Default::default(),
        grants: Default::default(),
        subscribe: Vec::new(),
        shared: None,
        artifacts: Vec::new(),
    };
    // Signed as a component only, or as an entry and then widened: refused.
    let mut widened = service.clone();
    protocol::sign_entry(&key, &mut widened);
    widened.grants.privileged = true;
    // Limits out of range: refused naming the field, as a node's manifest would be.
    let mut huge = service.clone();
    huge.limits.mailbox = 1 << 61;
    protocol::sign_entry(&key, &mut huge);
    let too_big = "service.limits.mailbox: 2305843009213693952 is out of range";
    for (entry, words) in [
        (&service, "service.signature"),
        (&widened, "does not match"),
        (&huge, too_big),
    ] {
        let resp = http
            .post(format!("{url}/v1/admin/publish"))
            .bearer_auth(ADMIN)
            .json(&Publish {
                service: entry.clone(),
                nodes: vec![],
                tags: vec!["lab".into()],
            })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let e = error_of(resp).await;
        assert!(e.contains(words), "{e}");
    }
    protocol::sign_entry(&key, &mut service);
    let bad = Publish {
        service: FleetService {
            size: 1,
            ..service.clone()
        },
        nodes: vec![],
        tags: vec!["lab".into()],
    };
    let resp = http
        .post(format!("{url}/v1/admin/publish"))
        .bearer_auth(ADMIN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains("size"));
    let published_at = Instant::now();
    let resp = http
        .post(format!("{url}/v1/admin/publish"))
        .bearer_auth(ADMIN)
        .json(&Publish {
            service,
            nodes: vec![],
            tags: vec!["lab".into()],
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let published: Published = resp.json().await.unwrap();
    assert_eq!(published.manifests, ["tag:lab"]);
    let (answered_at, resp) = poll.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(answered_at.duration_since(published_at) < Duration::from_secs(1));
    let etag1 = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag1, etag0);
    let m: FleetManifest = resp.json().await.unwrap();
    assert_eq!(m.services[0].name, "echo");
    assert!(tmp.path().join("manifests/tag-lab.json").is_file());

    // The blob, resumed from byte 1000.
    let resp = http
        .get(format!("{url}/v1/blobs/{sha}"))
        .bearer_auth(GW1)
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 1000-4999/5000");
    assert_eq!(resp.headers()["content-type"], "application/wasm");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &wasm[1000..]);
    let resp = http
        .get(format!("{url}/v1/blobs/{sha}"))
        .bearer_auth(GW1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), wasm.as_slice());
    for (range, status, content_range) in [
        (
            "bytes=1000-1999",
            StatusCode::PARTIAL_CONTENT,
            "bytes 1000-1999/5000",
        ),
        (
            "bytes=5000-",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "bytes */5000",
        ),
    ] {
        let resp = http
            .get(format!("{url}/v1/blobs/{sha}"))
            .bearer_auth(GW1)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{range}");
        assert_eq!(resp.headers()["content-range"], content_range, "{range}");
        if !status.is_success() {
            assert!(error_of(resp).await.contains("not satisfiable"), "{range}");
        }
    }
    let resp = http
        .get(format!("{url}/v1/blobs/{}", "1".repeat(64)))
        .bearer_auth(GW1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(error_of(resp).await.contains("no blob"));

    // Unknown and revoked tokens.
    let resp = http
        .get(format!("{url}/v1/manifest"))
        .bearer_auth("no-such-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(resp).await, "unknown node token");
    let resp = http
        .get(format!("{url}/v1/blobs/{sha}"))
        .bearer_auth(GW2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(resp).await, "node token for `gw2` is revoked");

    // Status, events and logs reach the admin.
    let status = NodeStatus {
        services: vec![],
        events: vec![NodeEvent {
            at_ms: 1,
            service: "echo".into(),
            kind: protocol::EventKind::RolledBack,
            sha256: sha.parse().unwrap(),
            detail: "crashed at start".into(),
        }],
    };
    let resp = http
        .post(format!("{url}/v1/status"))
        .bearer_auth(GW1)
        .json(&status)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .post(format!("{url}/v1/logs"))
        .bearer_auth(GW1)
        .json(&serde_json::json!({"lines": ["hello from gw1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let records: Vec<NodeRecord> = http
        .get(format!("{url}/v1/admin/nodes"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].events.len(), 1);
    assert_eq!(records[0].identity.as_ref().unwrap().hostname, "box");
    assert!(records[1].revoked && records[1].last_seen_ms.is_none());
    let logs = http
        .get(format!("{url}/v1/admin/nodes/gw1/logs"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(logs, "hello from gw1\n");

    // Editing hub.toml (debug on) changes the manifest and wakes a long poll.
    let poll = tokio::spawn({
        let (http, url, etag1) = (http.clone(), url.clone(), etag1.clone());
        async move {
            http.get(format!("{url}/v1/manifest?wait=10"))
                .bearer_auth(GW1)
                .header("if-none-match", etag1)
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut config = HubConfig::load(tmp.path()).unwrap();
    config.node_mut("gw1").unwrap().debug = true;
    config.save(tmp.path()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let m: FleetManifest = resp.json().await.unwrap();
    assert!(m.settings.debug);

    // Removal.
    let resp = http
        .post(format!("{url}/v1/admin/remove"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"service": "echo", "tags": ["lab"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let m: FleetManifest = http
        .get(format!("{url}/v1/manifest"))
        .bearer_auth(GW1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(m.services.is_empty());

    server.stop().await;
}
