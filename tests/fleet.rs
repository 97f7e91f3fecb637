//! A real fleet hub (`busbar hub serve`) in a temp folder, set up with the `busbar hub` CLI
//! like an operator would, and nodes (`busbar run` with a `[hub]` section) that follow it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::admin::AdminNode;
use crate::process::{Busbar, Finished};

/// A running hub and its folder.
#[derive(Debug)]
pub struct Hub {
    /// The `busbar hub serve` process (None while stopped).
    pub process: Option<Busbar>,
    /// Holds the signing key (`signing.key`, `signing.key.pub`) and the fleet dir (`fleet/`).
    pub dir: tempfile::TempDir,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The admin token `busbar hub init` printed.
    pub admin_token: String,
    http: reqwest::Client,
}

/// The value after `label` on a line of `out` (e.g. `admin token: X` → `X`).
fn printed(out: &Finished, label: &str) -> String {
    out.stdout
        .iter()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line: {}", out.all()))
        .trim()
        .to_owned()
}

/// Runs a `busbar` command in `dir` and expects it to succeed.
pub fn ok(dir: &Path, args: &[&str]) -> Finished {
    let out = Busbar::run(dir, args);
    assert!(
        out.status.success(),
        "busbar {args:?} failed: {}",
        out.all()
    );
    out
}

impl Hub {
    /// Makes a signing key and a fleet dir, then serves it on a free loopback port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        ok(dir.path(), &["hub", "keygen", "--out", "signing.key"]);
        let init = ok(
            dir.path(),
            &[
                "hub",
                "init",
                "--dir",
                "fleet",
                "--public-key",
                "signing.key.pub",
            ],
        );
        let mut hub = Self {
            process: None,
            admin_token: printed(&init, "admin token: "),
            dir,
            url: String::new(),
            http: busbar_base::net::http_client(),
        };
        hub.serve("127.0.0.1:0");
        hub
    }

    fn serve(&mut self, listen: &str) {
        let mut process = Busbar::start(
            self.dir.path(),
            &["hub", "serve", "--dir", "fleet", "--listen", listen],
        );
        process.wait_log(1, &["hub listening on "]);
        let line = process
            .stderr()
            .into_iter()
            .find(|l| l.contains("hub listening on "))
            .unwrap();
        let at = line.find("http://").unwrap();
        let url: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ":/.".contains(*c))
            .collect();
        self.url = url;
        self.process = Some(process);
    }

    /// Stops the hub (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal("TERM");
            p.wait();
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        let addr = self.url.trim_start_matches("http://").to_owned();
        self.serve(&addr);
    }

    /// The fleet dir.
    pub fn fleet_dir(&self) -> PathBuf {
        self.dir.path().join("fleet")
    }

    /// The public key file nodes trust.
    pub fn public_key_file(&self) -> PathBuf {
        self.dir.path().join("signing.key.pub")
    }

    /// `busbar hub add-node ID`: returns the node's token.
    pub fn add_node(&self, id: &str) -> String {
        let out = ok(self.dir.path(), &["hub", "add-node", "--dir", "fleet", id]);
        printed(&out, "node token: ")
    }

    /// `busbar hub ARGS` with the hub's URL and admin token, e.g. `publish ...`.
    pub fn cli(&self, args: &[&str]) -> Finished {
        let mut all = vec!["hub"];
        all.extend_from_slice(args);
        let env = [
            ("BUSBAR_HUB_ADMIN_TOKEN", OsStr::new(&self.admin_token)),
            ("BUSBAR_HUB_URL", OsStr::new(&self.url)),
        ];
        Busbar::start_env(self.dir.path(), &all, &env).wait_finished()
    }

    /// Publishes `component` as `service` for node `node`, with `key=value` config pairs
    /// (and `--grants`/`--limits` JSON given as `--grants={...}`).
    pub fn publish(&self, service: &str, component: &Path, node: &str, config: &[&str]) {
        let component = component.to_str().unwrap();
        let mut args = vec![
            "publish",
            "--hub",
            &self.url,
            "--key",
            "signing.key",
            "--service",
            service,
            "--component",
            component,
            "--node",
            node,
        ];
        for c in config {
            if c.starts_with("--") {
                args.push(c);
            } else {
                args.extend_from_slice(&["--config", c]);
            }
        }
        let out = self.cli(&args);
        assert!(out.status.success(), "publish failed: {}", out.all());
    }

    /// Uploads `component` (signed with the hub's key) without publishing it; returns the
    /// service entry a publish would send, signed whole.
    pub async fn upload(&self, service: &str, component: &Path) -> Value {
        use busbar::fleet::protocol::{
            FleetService, SIGNATURE_HEADER, parse_secret_key, sign, sign_entry,
        };
        use sha2::Digest as _;
        let bytes = std::fs::read(component).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let key = std::fs::read_to_string(self.dir.path().join("signing.key")).unwrap();
        let key = parse_secret_key(&key).unwrap();
        let signature = sign(&key, &sha);
        let resp = self
            .http
            .put(format!("{}/v1/admin/blobs/{sha}", self.url))
            .bearer_auth(&self.admin_token)
            .header(SIGNATURE_HEADER, &signature)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "upload: {}", resp.status());
        let mut entry = FleetService {
            name: service.into(),
            sha256: sha.parse().unwrap(),
            size: bytes.len() as u64,
            signature: String::new(),
            enabled: true,
            config: Default::default(),
            limits: Default::default(),
            grants: Default::default(),
            subscribe: Vec::new(),
            shared: None,
            artifacts: Vec::new(),
        };
        sign_entry(&key, &mut entry);
        serde_json::to_value(entry).unwrap()
    }

    /// Publishes an uploaded `entry` to node `node` through the admin API.
    pub async fn publish_uploaded(&self, entry: &Value, node: &str) {
        let resp = self
            .http
            .post(format!("{}/v1/admin/publish", self.url))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({ "service": entry, "nodes": [node] }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "publish: {status} {}",
            resp.text().await.unwrap()
        );
    }

    /// `GET /v1/admin/nodes`.
    pub async fn nodes(&self) -> Value {
        self.admin_get(&format!("{}/v1/admin/nodes", self.url))
            .await
            .json()
            .await
            .unwrap()
    }

    /// What node `id` last reported (`GET /v1/admin/nodes/{id}`): its services, all the
    /// events the hub keeps, its message rate.
    pub async fn node(&self, id: &str) -> Value {
        self.admin_get(&format!("{}/v1/admin/nodes/{id}", self.url))
            .await
            .json()
            .await
            .unwrap()
    }

    /// The log lines node `id` forwarded.
    pub async fn logs(&self, id: &str) -> String {
        self.admin_get(&format!("{}/v1/admin/nodes/{id}/logs", self.url))
            .await
            .text()
            .await
            .unwrap()
    }

    async fn admin_get(&self, url: &str) -> reqwest::Response {
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp
    }
}

/// A copy of `component` in `dir` with a custom section appended: the same code under
/// another sha256, i.e. a new version.
pub fn new_version(component: &Path, dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(component).unwrap();
    let name = b"busbar-test-version";
    let body_len = 1 + name.len() + tag.len();
    assert!(body_len < 128 && name.len() < 128);
    bytes.extend_from_slice(&[0, body_len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    let stem = component.file_stem().unwrap().to_str().unwrap();
    let out = dir.join(format!("{stem}-{tag}.wasm"));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// Starts `busbar run` for node `id` of `hub` (via `hub_url`, normally `hub.url`) with
/// `token`, trusting `public_key_file`, in `dir` (kept across restarts: same cache).
pub fn start_node(
    dir: &Path,
    id: &str,
    hub_url: &str,
    token: &str,
    public_key_file: &Path,
) -> AdminNode {
    start_node_env(dir, id, hub_url, token, public_key_file, &[])
}

/// Like [`start_node`], with extra environment variables for the node.
pub fn start_node_env(
    dir: &Path,
    id: &str,
    hub_url: &str,
    token: &str,
    public_key_file: &Path,
    env: &[(&str, &OsStr)],
) -> AdminNode {
    write_node_toml(dir, id, hub_url, token, public_key_file);
    let process = Busbar::start_env(dir, &["run", "--config", "node.toml"], env);
    AdminNode::attach(process, dir)
}

/// Writes `dir/node.toml` for node `id` following the hub at `hub_url` with `token`.
pub fn write_node_toml(dir: &Path, id: &str, hub_url: &str, token: &str, public_key_file: &Path) {
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "node_id = \"{id}\"\n\n[hub]\nurl = \"{hub_url}\"\ntoken = \"{token}\"\n\
             public_key_file = \"{}\"\nboot_wait_ms = 3000\nbackoff_max_ms = 500\n",
            public_key_file.display()
        ),
    )
    .unwrap();
}
