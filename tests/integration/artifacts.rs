//! Precompiled delivery end to end: `busbar hub publish` compiles the component on the
//! publisher's machine for every target and engine asked (or announced by the nodes), signs
//! each artifact and uploads it; a real node downloads the one for its engine and loads it
//! without compiling. Artifacts that are tampered with, signed by another key or made for
//! another engine are not used: the node says why and compiles the component instead.

use std::path::Path;

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, new_version, start_node};
use busbar_tests::{guest, until};
use serde_json::Value;

use super::fleet::{runs, sha256};

const TARGETS: [&str; 3] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
];

/// `busbar hub publish` of `component` as `echo` to gw1, with extra arguments; its output.
fn publish(hub: &Hub, component: &Path, extra: &[&str]) -> String {
    let component = component.to_str().unwrap();
    let mut args = vec![
        "publish",
        "--key",
        "signing.key",
        "--service",
        "echo",
        "--component",
        component,
    ];
    args.extend_from_slice(extra);
    let out = hub.cli(&args);
    assert!(out.status.success(), "publish failed: {}", out.all());
    out.stdout.join("\n")
}

/// Waits until the node runs `echo` at `sha` and returns where its code came from.
async fn code_of(node: &AdminNode, sha: &str) -> String {
    let status = runs(node, "echo", sha).await;
    status["code"].as_str().unwrap_or_default().to_owned()
}

/// The entry of `echo` the hub keeps in manifest `stem` (e.g. `node-spare`).
fn entry_in(hub: &Hub, stem: &str) -> Value {
    let path = hub.fleet_dir().join(format!("manifests/{stem}.json"));
    let services: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "echo")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_are_made_at_publish_loaded_without_compiling_and_refused_when_not_genuine() {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    // A node no one runs: publishing to it puts a version on the hub without gw1 seeing it.
    hub.add_node("spare");
    let work = tempfile::tempdir().unwrap();
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    let engine = until("gw1 announcing its engine", || async {
        let e = hub.node("gw1").await["identity"]["engine"].clone();
        (!e.is_null()).then_some(e)
    })
    .await;
    let fingerprint = engine["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(engine["compiler"], true, "{engine}");
    let listed = hub.cli(&["nodes"]);
    assert!(
        listed.stdout.join("\n").contains(&fingerprint),
        "{}",
        listed.all()
    );

    // One publish compiles for three targets; the x86_64 node loads its artifact.
    let v1 = guest("echo");
    let mut args = vec!["--node", "gw1"];
    for t in TARGETS {
        args.extend(["--target", t]);
    }
    let out = publish(&hub, &v1, &args);
    for t in TARGETS {
        assert!(out.contains(&format!("artifact for {t} ")), "{out}");
    }
    let artifacts = std::fs::read_dir(hub.fleet_dir().join("blobs"))
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(artifacts, 3);
    assert_eq!(code_of(&node, &sha256(&v1)).await, "precompiled");
    assert!(
        node.process
            .stderr()
            .iter()
            .any(|l| l.contains("using the precompiled artifact")),
        "{}",
        node.process.stderr().join("\n")
    );

    // Without --target: for the engines the nodes reached announced. Hot swap as usual.
    let v2 = new_version(&v1, work.path(), "v2");
    let out = publish(&hub, &v2, &["--node", "gw1"]);
    assert!(
        out.contains(&format!(
            "artifact for {} (engine {fingerprint})",
            TARGETS[0]
        )) && out.contains("for gw1"),
        "{out}"
    );
    assert_eq!(code_of(&node, &sha256(&v2)).await, "precompiled");

    // An artifact altered on the hub after it was signed: refused, the node compiles.
    let v3 = new_version(&v1, work.path(), "v3");
    publish(&hub, &v3, &["--node", "spare", "--target", TARGETS[0]]);
    let entry = entry_in(&hub, "node-spare");
    let blob = hub.fleet_dir().join(format!(
        "blobs/{}.cwasm",
        entry["artifacts"][0]["sha256"].as_str().unwrap()
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    hub.publish_uploaded(&entry, "gw1").await;
    assert_eq!(code_of(&node, &sha256(&v3)).await, "compiled");
    let log = node.process.stderr().join("\n");
    assert!(
        log.contains("artifact has sha256") && log.contains("compiling the component instead"),
        "{log}"
    );

    // Signed by another key: the hub refuses the publish, and a node given such an entry
    // all the same (by a hub that was broken into) does not use the artifact.
    let v4 = new_version(&v1, work.path(), "v4");
    publish(&hub, &v4, &["--node", "spare", "--target", TARGETS[0]]);
    let mut entry = entry_in(&hub, "node-spare");
    let mut artifact: busbar::fleet::protocol::Artifact =
        serde_json::from_value(entry["artifacts"][0].clone()).unwrap();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    busbar::fleet::protocol::sign_artifact(&stranger, &sha256(&v4).parse().unwrap(), &mut artifact);
    entry["artifacts"][0] = serde_json::to_value(&artifact).unwrap();
    let refused = busbar_base::net::http_client()
        .post(format!("{}/v1/admin/publish", hub.url))
        .bearer_auth(&hub.admin_token)
        .json(&serde_json::json!({ "service": entry, "nodes": ["gw1"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("artifacts[0]") && text.contains("does not match"),
        "{text}"
    );
    let mut hub = hub;
    hub.stop();
    let manifest = hub.fleet_dir().join("manifests/node-gw1.json");
    std::fs::write(&manifest, serde_json::to_vec(&vec![entry]).unwrap()).unwrap();
    hub.restart();
    assert_eq!(code_of(&node, &sha256(&v4)).await, "compiled");
    let log = node.process.stderr().join("\n");
    assert!(
        log.contains("artifact for x86_64-unknown-linux-gnu"),
        "{log}"
    );
    assert!(log.contains("signature does not match"), "{log}");

    // Made for another engine (other [engine] settings): not picked, the node compiles.
    std::fs::write(
        hub.dir.path().join("big.toml"),
        "[engine]\nmax_memory_mib = 64\n",
    )
    .unwrap();
    let v5 = new_version(&v1, work.path(), "v5");
    let out = publish(
        &hub,
        &v5,
        &[
            "--node",
            "gw1",
            "--target",
            TARGETS[0],
            "--node-config",
            "big.toml",
        ],
    );
    assert!(!out.contains(&fingerprint), "{out}");
    assert_eq!(code_of(&node, &sha256(&v5)).await, "compiled");
    let log = node.process.stderr().join("\n");
    assert!(log.contains("no artifact for this node"), "{log}");
}
