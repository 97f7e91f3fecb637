//! `[admin]` in the node config: where the admin API listens and who may use it.

use std::net::SocketAddr;

use serde::Deserialize;

/// Default address of the admin API: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

/// The admin API's settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Set to false to run without the admin API.
    pub enabled: bool,
    /// Address to listen on (port 0 picks a free port; the node writes the URL it got to
    /// `admin-url` in its data dir).
    pub listen: SocketAddr,
    /// Write a fresh all-access token to `admin-token` in the data dir at every start (mode
    /// 0600), for the `busbar` CLI on the same machine.
    pub local_token: bool,
    /// How long a JSON-RPC call waits for the service's reply unless the request says.
    pub call_timeout_ms: u64,
    /// Finished asynchronous jobs kept for `GET /jobs/{id}`; the oldest go first.
    pub max_jobs: usize,
    /// Most requests in one JSON-RPC batch; a longer batch is refused whole.
    pub max_batch: usize,
    /// Largest JSON-RPC response body; answers past it are replaced by `-32005` errors.
    pub max_response_bytes: usize,
    /// Most connections open at once; one more is answered `503` and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open) and its body, in ms.
    pub header_timeout_ms: u64,
    /// Tokens for other systems, each limited to some routes and services.
    pub tokens: Vec<TokenGrant>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            local_token: true,
            call_timeout_ms: 5000,
            max_jobs: 1000,
            max_batch: 100,
            max_response_bytes: 1 << 20,
            max_connections: 128,
            header_timeout_ms: 10_000,
            tokens: Vec::new(),
        }
    }
}

/// One bearer token and what it may do.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenGrant {
    /// Who holds it (shown in logs, never the token itself).
    pub name: String,
    /// The secret, sent as `Authorization: Bearer TOKEN`.
    pub token: String,
    /// Routes it may use (default: all).
    #[serde(default = "ApiRoute::all")]
    pub routes: Vec<ApiRoute>,
    /// Services it may call and see, or `*` for all (default).
    #[serde(default = "every_service")]
    pub services: Vec<String>,
}

fn every_service() -> Vec<String> {
    vec!["*".into()]
}

/// A part of the admin API a token can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiRoute {
    /// `POST /rpc`.
    Rpc,
    /// `GET /jobs/{id}`.
    Jobs,
    /// `GET /events`.
    Events,
    /// `GET /status`.
    Status,
    /// `GET /metrics`.
    Metrics,
}

impl ApiRoute {
    /// Every route.
    pub fn all() -> Vec<ApiRoute> {
        vec![
            ApiRoute::Rpc,
            ApiRoute::Jobs,
            ApiRoute::Events,
            ApiRoute::Status,
            ApiRoute::Metrics,
        ]
    }

    /// The route's path, for messages.
    pub fn path(self) -> &'static str {
        match self {
            ApiRoute::Rpc => "/rpc",
            ApiRoute::Jobs => "/jobs",
            ApiRoute::Events => "/events",
            ApiRoute::Status => "/status",
            ApiRoute::Metrics => "/metrics",
        }
    }
}
