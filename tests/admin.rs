//! A `busbar run` process with its admin API, and an HTTP client for it.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::guard;
use crate::process::{Busbar, Finished};

/// A token in the test config allowed `/rpc` and `/jobs` for service `echo` only.
pub const SCADA_TOKEN: &str = "scada-token-0123456789";
/// A token in the test config allowed `/status`, `/metrics` and `/events` for every service.
pub const VIEWER_TOKEN: &str = "viewer-token-0123456789";

/// A token allowed `/rpc` and `/metrics`, naming `orchestrator` and `echo` only.
pub const OPS_TOKEN: &str = "ops-token-0123456789ab";

/// The admin part of the test node config.
const ADMIN_CONFIG: &str = r#"
[admin]
call_timeout_ms = 2000

[[admin.tokens]]
name = "scada"
token = "scada-token-0123456789"
routes = ["rpc", "jobs"]
services = ["echo"]

[[admin.tokens]]
name = "ops"
token = "ops-token-0123456789ab"
routes = ["rpc", "metrics"]
services = ["orchestrator", "echo"]

[[admin.tokens]]
name = "viewer"
token = "viewer-token-0123456789"
routes = ["status", "metrics", "events"]
"#;

/// A running node with its admin API.
#[derive(Debug)]
pub struct AdminNode {
    /// The node process.
    pub process: Busbar,
    /// Its folder (manifest, config, cache, `state/`).
    pub dir: PathBuf,
    /// Removes `dir` when the node is dropped, when the node made it.
    _owned: Option<tempfile::TempDir>,
    /// The admin API's base URL.
    pub url: String,
    /// The node's local all-access token.
    pub token: String,
    http: reqwest::Client,
}

impl AdminNode {
    /// Starts `busbar run` with `manifest` and the test tokens; returns once the admin API
    /// listens.
    pub fn start(manifest: &str) -> Self {
        Self::start_env(manifest, &[])
    }

    /// Like [`AdminNode::start`], with extra environment variables for the node.
    pub fn start_env(manifest: &str, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self::start_with(manifest, "", env)
    }

    /// Like [`AdminNode::start_env`], with `config` added to the node config.
    pub fn start_with(manifest: &str, config: &str, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self::start_named("admin-test", manifest, config, env)
    }

    /// Like [`AdminNode::start_with`], as node `node_id`.
    pub fn start_named(
        node_id: &str,
        manifest: &str,
        config: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
        std::fs::write(
            dir.path().join("node.toml"),
            format!("node_id = \"{node_id}\"\n{config}\n{ADMIN_CONFIG}"),
        )
        .unwrap();
        let mut process = Busbar::start_env(
            dir.path(),
            &[
                "run",
                "--manifest",
                "manifest.toml",
                "--config",
                "node.toml",
            ],
            env,
        );
        process.wait_log(1, &["admin API listening"]);
        let state = dir.path().join("state");
        let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
        Self {
            url: read("admin-url"),
            token: read("admin-token"),
            process,
            dir: dir.path().to_owned(),
            _owned: Some(dir),
            http: busbar_base::net::http_client(),
        }
    }

    /// Wraps a started `busbar run` in `dir` (not removed on drop) once its admin API
    /// listens.
    pub fn attach(mut process: Busbar, dir: &std::path::Path) -> Self {
        process.wait_log(1, &["admin API listening"]);
        let state = dir.join("state");
        let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
        Self {
            url: read("admin-url"),
            token: read("admin-token"),
            process,
            dir: dir.to_owned(),
            _owned: None,
            http: busbar_base::net::http_client(),
        }
    }

    /// The node's data dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A request to `path`, with `token` (none: no `Authorization` header).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /rpc` of `body` with `token`: the status and the JSON body (null when empty).
    pub async fn rpc_as(
        &self,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let resp = self
            .request(reqwest::Method::POST, path, token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
        };
        (status, body)
    }

    /// `POST /rpc` of `body` with the local token; expects 200 and returns the body.
    pub async fn rpc(&self, body: &Value) -> Value {
        let (status, body) = self.rpc_as(Some(&self.token), "/rpc", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// `GET path` with the local token, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .request(reqwest::Method::GET, path, Some(&self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.unwrap()
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let resp = self
            .request(reqwest::Method::GET, "/metrics", Some(&self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET /metrics");
        Metrics::parse(resp.text().await.unwrap())
    }

    /// The counters of `service` from `/status`.
    pub async fn processed(&self, service: &str) -> u64 {
        let status = self.get_json("/status").await;
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("no {service} in {status}"))["counters"]["processed"]
            .as_u64()
            .unwrap()
    }

    /// Waits until `service` has processed at least `n` messages; fails after [`guard`].
    pub async fn wait_processed(&self, service: &str, n: u64) {
        let until = std::time::Instant::now() + guard();
        while self.processed(service).await < n {
            assert!(
                std::time::Instant::now() < until,
                "{service} did not process {n} messages"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Runs `busbar ARGS` (an operator command) against this node, in its folder.
    pub fn cli(&self, args: &[&str]) -> Finished {
        Busbar::run(&self.dir, args)
    }

    /// Starts a long-running operator command (`logs --follow`, `monitor`).
    pub fn cli_start(&self, args: &[&str]) -> Busbar {
        Busbar::start(&self.dir, args)
    }
}

/// A `/metrics` page, parsed as Prometheus text.
#[derive(Debug)]
pub struct Metrics {
    /// The text, for assertion messages.
    pub text: String,
    scrape: prometheus_parse::Scrape,
}

impl Metrics {
    /// Parses `text`; panics showing it when it is not Prometheus text.
    pub fn parse(text: String) -> Self {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
        Self { text, scrape }
    }

    /// The first sample named `name` whose labels include `labels`.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> prometheus_parse::Value {
        self.scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
            .value
            .clone()
    }

    /// That sample as a number. OpenMetrics counters are typed under their family name
    /// (`busbar_messages_processed`), which the Prometheus parser reads as untyped `_total`
    /// samples: counters, gauges and untyped samples all count.
    pub fn number(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value as P;
        match self.sample(name, labels) {
            P::Counter(n) | P::Gauge(n) | P::Untyped(n) => n,
            other => panic!("{name}{labels:?} is not a number: {other:?}"),
        }
    }
}
