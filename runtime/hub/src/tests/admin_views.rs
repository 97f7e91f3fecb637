//! The admin listings and actions the console uses, against a hub served in process: pages
//! that neither skip nor repeat a node, filters, bounds, tokens, unknown nodes, log tails,
//! debug and revoke taking effect at once, the summary and the rollout's flags.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN, GW1, error_of, fleet_dir, sign_in};
use crate::config::{HubConfig, NodeEntry, token_sha256};
use crate::server::HubServer;
use crate::views::NEXT_HEADER;

/// Adds `sim-00` .. `sim-{n-1}` (tag `even` or `odd`) to the fleet dir's hub.toml.
fn add_nodes(dir: &std::path::Path, n: usize) {
    HubConfig::edit(dir, |config| {
        for i in 0..n {
            config.nodes.insert(
                format!("sim-{i:02}"),
                NodeEntry {
                    token_sha256: token_sha256(&format!("sim-token-{i}")),
                    tags: vec![if i % 2 == 0 { "even" } else { "odd" }.into()],
                    ..NodeEntry::default()
                },
            );
        }
        Ok(())
    })
    .unwrap();
}

/// `GET {url}{path}` with `token`, as JSON.
async fn get_json(http: &reqwest::Client, url: &str, path: &str, token: &str) -> Value {
    let resp = http
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.json().await.unwrap()
}

/// Every page of `GET /v1/admin/nodes?{query}&limit={limit}`: the ids, in order.
async fn all_pages(http: &reqwest::Client, url: &str, query: &str, limit: usize) -> Vec<String> {
    let (mut ids, mut after, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let resp = http
            .get(format!(
                "{url}/v1/admin/nodes?{query}&limit={limit}&after={after}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let next = resp
            .headers()
            .get(NEXT_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= limit);
        ids.extend(
            page.iter()
                .map(|r| r["node_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        assert!(pages < 100, "pages never end");
        match next {
            Some(n) => {
                assert_eq!(
                    Some(&n),
                    ids.last(),
                    "the next page starts after the last id"
                );
                after = n;
            }
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_filter_and_bound_and_actions_take_effect_at_once() {
    let key = SigningKey::from_bytes(&[6; 32]);
    let tmp = fleet_dir(&key);
    add_nodes(tmp.path(), 25);
    let server = HubServer::start(tmp.path(), "127.0.0.1:0".parse().unwrap(), 64)
        .await
        .unwrap();
    let url = server.url();
    let http = busbar_base::net::http_client();

    // Ten sim nodes report; sim-03 rolled a version back.
    for i in 0..10 {
        let token = format!("sim-token-{i}");
        let id = format!("sim-{i:02}");
        let resp = http
            .post(format!("{url}/v1/sign-in"))
            .bearer_auth(&token)
            .json(&sign_in(&id))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let sha = if i < 6 { "a" } else { "b" }.repeat(64);
        let mut status = json!({"services": [
            {"name": "echo", "sha256": sha, "state": "running", "restarts": 0, "processed": 10}
        ]});
        if i == 3 {
            status["events"] = json!([{"at_ms": 5, "service": "echo", "kind": "rolled-back",
                "sha256": "c".repeat(64), "detail": "trapped in start"}]);
        }
        let resp = http
            .post(format!("{url}/v1/status"))
            .bearer_auth(&token)
            .json(&status)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    // Pages of 4 cover all 27 nodes once, in order; filters page the same way.
    let all = all_pages(&http, &url, "", 4).await;
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..25).map(|i| format!("sim-{i:02}")).collect();
        v.extend(["gw1".to_owned(), "gw2".to_owned()]);
        v.sort();
        v
    };
    assert_eq!(all, expected);
    let odd = all_pages(&http, &url, "tag=odd", 3).await;
    assert_eq!(odd.len(), 12);
    assert!(odd.iter().all(|id| id.ends_with(['1', '3', '5', '7', '9'])));
    let online = all_pages(&http, &url, "state=online", 3).await;
    assert_eq!(online.len(), 10);
    let never = all_pages(&http, &url, "state=never", 5).await;
    assert_eq!(never.len(), 16, "{never:?}");
    assert_eq!(all_pages(&http, &url, "state=revoked", 5).await, ["gw2"]);
    assert_eq!(all_pages(&http, &url, "state=trouble", 5).await, ["sim-03"]);
    assert_eq!(all_pages(&http, &url, "q=sim-1", 5).await.len(), 10);
    assert_eq!(all_pages(&http, &url, "q=SIM-1", 5).await.len(), 10);
    assert!(all_pages(&http, &url, "q=g%25_", 5).await.is_empty());

    // Bounds and bad queries are refused, naming what is wrong.
    let long_q = format!("q={}", "x".repeat(65));
    for (query, words) in [
        ("limit=0", "limit"),
        ("limit=2001", "limit"),
        ("events=21", "events"),
        (long_q.as_str(), "q:"),
        ("state=sleeping", "state"),
        ("sort=id", "sort"),
    ] {
        let resp = http
            .get(format!("{url}/v1/admin/nodes?{query}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let e = error_of(resp).await;
        assert!(e.contains(words), "{query}: {e}");
    }

    // Every admin route wants the admin token (a node's does not do); unknown nodes are
    // named.
    let gw1 = format!("{url}/v1/admin/nodes/sim-01");
    let nope = format!("{url}/v1/admin/nodes/nope");
    for (method, path, token, status) in [
        (
            "GET",
            format!("{url}/v1/admin/nodes"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        ("GET", gw1.clone(), GW1, StatusCode::UNAUTHORIZED),
        ("GET", format!("{gw1}/logs"), GW1, StatusCode::UNAUTHORIZED),
        (
            "POST",
            format!("{gw1}/debug"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            format!("{gw1}/revoke"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            format!("{url}/v1/admin/summary"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            format!("{url}/v1/admin/rollout"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            format!("{url}/v1/admin/entries?service=echo"),
            GW1,
            StatusCode::UNAUTHORIZED,
        ),
        ("GET", nope.clone(), ADMIN, StatusCode::NOT_FOUND),
        ("GET", format!("{nope}/logs"), ADMIN, StatusCode::NOT_FOUND),
        (
            "POST",
            format!("{nope}/debug"),
            ADMIN,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("{nope}/revoke"),
            ADMIN,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let req = http.request(method.parse().unwrap(), &path);
        let resp = req
            .bearer_auth(token)
            .json(&json!({"on": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            assert!(error_of(resp).await.contains("`nope`"));
        }
    }

    // One node: its record, its rate, its events.
    let one = get_json(&http, &url, "/v1/admin/nodes/sim-03", ADMIN).await;
    assert_eq!(one["events"][0]["kind"], "rolled-back", "{one}");
    assert_eq!(one["trouble"], true);
    assert_eq!(one["status"]["services"][0]["processed"], 10);

    // The summary counts and the rollout flags.
    let summary = get_json(&http, &url, "/v1/admin/summary", ADMIN).await;
    assert_eq!(
        summary["nodes"],
        json!({"total": 27, "online": 10, "offline": 0, "never": 16, "revoked": 1, "trouble": 1})
    );
    let rollout = get_json(&http, &url, "/v1/admin/rollout", ADMIN).await;
    let echo = &rollout["services"][0];
    assert_eq!(echo["service"], "echo");
    let counts: BTreeSet<u64> = echo["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, BTreeSet::from([4, 6]));
    assert_eq!(echo["flagged"][0]["node"], "sim-03");
    assert_eq!(echo["flagged_count"], 1);

    // Log tails start at a whole line.
    let lines: Vec<String> = (0..50).map(|i| format!("line number {i:03}")).collect();
    let resp = http
        .post(format!("{url}/v1/logs"))
        .bearer_auth("sim-token-1")
        .json(&json!({ "lines": lines }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let tail = http
        .get(format!("{url}/v1/admin/nodes/sim-01/logs?tail_bytes=40"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // 40 bytes reach into line 047: it is cut, the two whole lines after it stay.
    assert_eq!(tail, "line number 048\nline number 049\n", "{tail:?}");

    // Debug on shows in the node's manifest at once; a revoked token is refused at once.
    let resp = http
        .post(format!("{url}/v1/admin/nodes/sim-01/debug"))
        .bearer_auth(ADMIN)
        .json(&json!({"on": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let manifest = get_json(&http, &url, "/v1/manifest", "sim-token-1").await;
    assert_eq!(manifest["settings"]["debug"], true, "{manifest}");
    assert!(
        HubConfig::load(tmp.path()).unwrap().nodes["sim-01"].debug,
        "written to hub.toml"
    );
    let resp = http
        .post(format!("{url}/v1/admin/nodes/sim-01/revoke"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .get(format!("{url}/v1/manifest"))
        .bearer_auth("sim-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}
