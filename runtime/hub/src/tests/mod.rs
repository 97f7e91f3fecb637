//! The hub served in-process on a free port, driven over HTTP as nodes and an admin would.

use ed25519_dalek::SigningKey;

use super::config::{HubConfig, NodeEntry, token_sha256};
use super::files::FleetDir;
use crate::protocol::SignIn;

const ADMIN: &str = "admin-token-of-the-test";
const GW1: &str = "gw1-token-of-the-test";
const GW2: &str = "gw2-token-of-the-test";

/// A fleet dir with gw1 (tag `lab`) and gw2 (revoked), signed by `key`.
fn fleet_dir(key: &SigningKey) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = HubConfig::new(
        token_sha256(ADMIN),
        hex::encode(key.verifying_key().to_bytes()),
    );
    config.nodes.insert(
        "gw1".into(),
        NodeEntry {
            token_sha256: token_sha256(GW1),
            tags: vec!["lab".into()],
            ..NodeEntry::default()
        },
    );
    config.nodes.insert(
        "gw2".into(),
        NodeEntry {
            token_sha256: token_sha256(GW2),
            revoked: true,
            ..NodeEntry::default()
        },
    );
    config.save(tmp.path()).unwrap();
    FleetDir::new(tmp.path()).create_subdirs().unwrap();
    tmp
}

fn sign_in(node_id: &str) -> SignIn {
    SignIn {
        node_id: node_id.into(),
        hostname: "box".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        runtime_version: "0.1.0".into(),
        macs: vec![],
        engine: None,
    }
}

async fn error_of(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["error"].as_str().unwrap().to_owned()
}

mod admin_views;
mod round_trip;

mod store;
