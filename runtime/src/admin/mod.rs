//! The admin API: a small HTTP server (loopback by default) for operators and for other
//! systems on the gateway.
//!
//! | route            | what                                                          |
//! |------------------|---------------------------------------------------------------|
//! | `POST /rpc`      | JSON-RPC 2.0: call or notify a service action ([`rpc`])        |
//! | `GET /jobs/{id}` | an asynchronous request's status and response ([`jobs`])      |
//! | `GET /events`    | server-sent log lines and bus traffic, filtered ([`events`])   |
//! | `GET /status`    | the node and its services as JSON                              |
//! | `GET /metrics`   | Prometheus (OpenMetrics) text                                  |
//!
//! Every route wants `Authorization: Bearer TOKEN`; tokens are scoped per route and per
//! service ([`auth`]). The node writes a fresh all-access token and its URL to its data dir
//! for the `busbar` CLI on the same machine.

pub mod auth;
pub mod events;
mod fabric_metrics;
pub mod jobs;
pub mod jsonrpc;
pub mod rpc;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use crate::config::admin::{AdminConfig, ApiRoute, TokenGrant};

use crate::bus::Bus;
use crate::config::NodeConfig;
use crate::orchestrator::ServiceTable;

/// File in the data dir holding the admin API's URL.
pub const URL_FILE: &str = "admin-url";
/// File in the data dir holding the local all-access token.
pub const TOKEN_FILE: &str = "admin-token";

/// What the handlers share.
#[derive(Debug)]
struct App {
    bus: Bus,
    services: Arc<ServiceTable>,
    node_id: String,
    started: Instant,
    grants: auth::Tokens,
    jobs: jobs::Jobs,
    call_timeout: Duration,
    max_batch: usize,
    max_response_bytes: usize,
    cancel: CancellationToken,
    metrics: prometheus_client::registry::Registry,
    health: Arc<busbar_base::supervise::Health>,
    /// The links' counters (`/status` shows them to all-seeing tokens).
    links: Links,
    /// The node's engine, as it announces it to a hub (`/status` shows it).
    engine: crate::fleet::protocol::NodeEngine,
}

/// What the node's links report: Com, the broker connections, the fabric.
#[derive(Debug, Clone)]
pub struct Links {
    /// Com's link and spool.
    pub com: Arc<crate::com::ComStats>,
    /// Each broker connection.
    pub brokers: crate::topics::TopicsStats,
    /// The fabric, if the node is on one.
    pub fabric: Option<Arc<crate::fabric::FabricStats>>,
}

/// The running admin API.
#[derive(Debug)]
pub struct AdminServer {
    url: String,
    files: Vec<PathBuf>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `config.admin.listen` and serves until [`AdminServer::stop`].
    pub async fn start(
        config: &NodeConfig,
        bus: Bus,
        services: Arc<ServiceTable>,
        links: Links,
        health: Arc<busbar_base::supervise::Health>,
    ) -> anyhow::Result<Self> {
        let admin = &config.admin;
        let listener = tokio::net::TcpListener::bind(admin.listen)
            .await
            .with_context(|| {
                format!(
                    "admin API: cannot listen on {} (set admin.listen or --admin-listen, or \
                     admin.enabled = false)",
                    admin.listen
                )
            })?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the admin API listens beyond loopback, without TLS");
        }
        let url = format!("http://{addr}");
        let data_dir = config.data_dir();
        let mut files = Vec::new();
        let local = admin.local_token.then(auth::fresh_token);
        // Tokens are checked before any file is written, so a refused config leaves none.
        let grants = auth::Tokens::new(admin, local.as_deref())?;
        // Nothing at start needs free space: a node on a full disk runs without these files
        // (the CLI then needs --url and --token), and says so.
        let local_files = local
            .as_ref()
            .map(|token| (data_dir.join(TOKEN_FILE), token.as_str()))
            .into_iter()
            .chain([(data_dir.join(URL_FILE), url.as_str())]);
        for (path, text) in local_files {
            match auth::write_private(&path, text) {
                Ok(()) => files.push(path),
                Err(e) => tracing::error!(file = %path.display(), error = %e,
                    "admin API: cannot write this file; the busbar CLI on this machine needs --url and --token"),
            }
        }

        let cancel = CancellationToken::new();
        let app = Arc::new(App {
            metrics: status::registry(bus.clone(), services.clone(), links.clone(), health.clone()),
            health: health.clone(),
            links,
            bus,
            services,
            node_id: config.node_id.clone(),
            engine: crate::fleet::node_engine(&config.engine, crate::precompiled::HOST_TARGET),
            started: Instant::now(),
            grants,
            jobs: jobs::Jobs::new(admin.max_jobs),
            call_timeout: Duration::from_millis(admin.call_timeout_ms),
            max_batch: admin.max_batch.max(1),
            max_response_bytes: admin.max_response_bytes,
            cancel: cancel.clone(),
        });
        let router = Router::new()
            .route("/rpc", post(rpc::handle))
            .route("/jobs/{id}", get(job))
            .route("/events", get(events::handle))
            .route("/status", get(status::status))
            .route("/metrics", get(status::metrics))
            .layer(DefaultBodyLimit::max(
                config.max_payload_bytes.saturating_mul(2) + (64 << 10),
            ))
            .with_state(app);
        let bounds = busbar_base::serve::Bounds {
            name: "admin API",
            max_connections: admin.max_connections,
            setting: "admin.max_connections",
            header_timeout: Duration::from_millis(admin.header_timeout_ms.max(1)),
        };
        // Watched: should the server fail, it listens again on the same address.
        let first = std::sync::Mutex::new(Some(listener));
        let stop = cancel.clone();
        let task =
            busbar_base::supervise::restart(&health, "admin-api", cancel.clone(), move || {
                let listener = busbar_base::sync::lock(&first).take();
                let (router, bounds, stop) = (router.clone(), bounds.clone(), stop.clone());
                async move {
                    let listener = match listener {
                        Some(l) => l,
                        None => tokio::net::TcpListener::bind(addr)
                            .await
                            .with_context(|| format!("admin API: cannot listen on {addr} again"))?,
                    };
                    busbar_base::serve::serve(listener, router, bounds, stop).await;
                    Ok(())
                }
            });
        tracing::info!(%url, token_file = %data_dir.join(TOKEN_FILE).display(), "admin API listening");
        Ok(Self {
            url,
            files,
            cancel,
            task,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:7411`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends the event streams, gives requests in flight a moment to finish (calls still
    /// waiting after that are cut off), and removes the URL and token files.
    pub async fn stop(mut self) {
        const GRACE: Duration = Duration::from_secs(2);
        self.cancel.cancel();
        if tokio::time::timeout(GRACE, &mut self.task).await.is_err() {
            tracing::warn!("admin API requests still running at shutdown were cut off");
            self.task.abort();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// `GET /jobs/{id}`.
async fn job(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let grant = match app.grants.authorize(&headers, ApiRoute::Jobs) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    match app.jobs.view(&id, &grant.name) {
        Some(view) => axum::Json(view).into_response(),
        None => auth::ApiError::not_found(format!(
            "no job `{id}` for this token (the node keeps the last {} jobs)",
            app.jobs.capacity()
        ))
        .into_response(),
    }
}
