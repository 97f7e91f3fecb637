//! The hub's HTTP server (`busbar hub serve`): its routes, and the task that re-reads
//! `hub.toml` when it changes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;

use super::admin_api::{self, MAX_BLOB_BYTES};
use super::error::HubApiError;
use super::files::FleetDir;
use super::node_api;
use super::state::Hub;
use super::{console, node_admin, rollout, summary, views};
use crate::bounds::{MAX_LOG_BATCH_BYTES, MAX_SIGN_IN_BYTES, MAX_STATUS_BYTES};

/// Default for `busbar hub serve --max-connections` (the open-files limit lowers it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Time a client has to send a request's headers (also the idle keep-alive time).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the fleet is sampled (nodes online, for the console's plot).
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// How often `hub.toml` is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_millis(250);

/// A running hub.
#[derive(Debug)]
pub struct HubServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    health: std::sync::Arc<busbar_base::supervise::Health>,
}

/// The hub's routes, as `protocol.rs` lists them.
fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(
            "/v1/sign-in",
            post(node_api::sign_in).layer(DefaultBodyLimit::max(MAX_SIGN_IN_BYTES)),
        )
        .route("/v1/manifest", get(node_api::manifest))
        .route("/v1/blobs/{sha}", get(node_api::blob))
        .route(
            "/v1/status",
            post(node_api::status).layer(DefaultBodyLimit::max(MAX_STATUS_BYTES)),
        )
        .route(
            "/v1/logs",
            post(node_api::logs).layer(DefaultBodyLimit::max(MAX_LOG_BATCH_BYTES)),
        )
        .route(
            "/v1/admin/blobs/{sha}",
            put(admin_api::put_blob).layer(DefaultBodyLimit::max(MAX_BLOB_BYTES)),
        )
        .route(
            "/v1/admin/artifacts/{sha}",
            put(admin_api::put_artifact).layer(DefaultBodyLimit::max(
                usize::try_from(crate::bounds::MAX_ARTIFACT_BYTES).unwrap_or(usize::MAX),
            )),
        )
        .route("/v1/admin/engines", post(admin_api::engines))
        .route("/v1/admin/publish", post(admin_api::publish))
        .route("/v1/admin/remove", post(admin_api::remove))
        .route("/v1/admin/nodes", get(views::nodes))
        .route("/v1/admin/nodes/{id}", get(views::node))
        .route("/v1/admin/nodes/{id}/logs", get(views::node_logs))
        .route("/v1/admin/nodes/{id}/debug", post(node_admin::debug))
        .route("/v1/admin/nodes/{id}/revoke", post(node_admin::revoke))
        .route("/v1/admin/summary", get(summary::summary))
        .route("/v1/admin/rollout", get(rollout::rollout))
        .route("/v1/admin/entries", get(rollout::entries))
        .route("/", get(console::home))
        .route("/console", get(console::home))
        .route("/console/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/style.css", get(console::style))
        .fallback(|uri: axum::http::Uri| async move {
            HubApiError::not_found(format!("no route {}", uri.path()))
        })
        .with_state(hub)
}

/// Runs `tick(hub)` every `period` as the supervised task `name` until `cancel`.
fn every<F, Fut>(
    health: &Arc<busbar_base::supervise::Health>,
    name: &'static str,
    cancel: &CancellationToken,
    period: Duration,
    hub: &Arc<Hub>,
    tick: F,
) where
    F: Fn(Arc<Hub>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (hub, stop) = (hub.clone(), cancel.clone());
    busbar_base::supervise::restart(health, name, cancel.clone(), move || {
        let (hub, stop, tick) = (hub.clone(), stop.clone(), tick.clone());
        async move {
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = every.tick() => tick(hub.clone()).await?,
                    () = stop.cancelled() => return Ok(()),
                }
            }
        }
    });
}

/// Stores a fleet sample (nodes online of nodes not revoked) and drops what the store keeps
/// of nodes taken out of `hub.toml`.
async fn sample(hub: &Arc<Hub>) -> anyhow::Result<()> {
    use super::store::{Write, read};
    let lights = hub
        .store
        .read(read::lights)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (online, total) = super::summary::online_now(hub, &lights);
    hub.store
        .write(Write::Online { online, total })
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    // hub.toml as it is after the read: a node added meanwhile is not taken for gone.
    hub.reload_if_changed();
    let config = hub.config.load_full();
    let gone: Vec<String> = lights
        .into_keys()
        .filter(|id| !config.nodes.contains_key(id))
        .collect();
    if !gone.is_empty() {
        tracing::info!(
            nodes = gone.len(),
            "dropping what the hub kept of nodes no longer in hub.toml"
        );
        hub.store
            .write(Write::Forget(gone))
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    Ok(())
}

impl HubServer {
    /// Reads the fleet dir `dir`, binds `listen` and serves until [`HubServer::stop`], with
    /// at most `max_connections` open at once (fewer when the open-files limit is lower).
    pub async fn start(
        dir: &Path,
        listen: SocketAddr,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let (hub, writer) = Hub::open(FleetDir::new(dir), cancel.clone())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("hub: cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the hub listens beyond loopback without TLS: put a TLS proxy in front");
        }
        let health = busbar_base::supervise::Health::new();
        tokio::spawn(busbar_base::supervise::watch(
            &health,
            "hub-store",
            cancel.clone(),
            writer,
        ));
        every(
            &health,
            "hub-samples",
            &cancel,
            SAMPLE_EVERY,
            &hub,
            |hub| async move { sample(&hub).await },
        );
        every(
            &health,
            "hub-reload",
            &cancel,
            RELOAD_EVERY,
            &hub,
            |hub| async move {
                hub.reload_if_changed();
                Ok(())
            },
        );
        // Each connection takes a file descriptor; keep room for blobs and records.
        let raised = busbar_base::serve::raise_open_files_limit();
        let fd_room = busbar_base::serve::open_files_limit().map_or(usize::MAX, |n| {
            usize::try_from(n.saturating_sub(64)).unwrap_or(usize::MAX)
        });
        if let Some((before, after)) = raised {
            // A node holds about one connection (its long poll; its reports open a second for
            // a moment), so keep a tenth for those.
            tracing::info!(
                before,
                after,
                nodes = fd_room / 10 * 9,
                "open-files limit: the hub holds about this many nodes (each holds its long poll, and a second connection while it reports; raise LimitNOFILE for more)"
            );
        }
        let max_connections = max_connections.min(fd_room).max(1);
        let bounds = busbar_base::serve::Bounds {
            name: "hub",
            max_connections,
            setting: "--max-connections, and the open-files limit (LimitNOFILE)",
            header_timeout: HEADER_TIMEOUT,
        };
        let task = tokio::spawn(busbar_base::serve::serve(
            listener,
            router(hub),
            bounds,
            cancel.clone(),
        ));
        tracing::info!(dir = %dir.display(), max_connections, "hub listening on http://{addr}");
        Ok(Self {
            addr,
            cancel,
            task,
            health,
        })
    }

    /// Resolves with the name of a task of the hub that failed for good: the hub should
    /// stop (and its init system start it again).
    pub async fn failed(&self) -> String {
        self.health.dead().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:8440`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends the long polls and gives requests in flight a moment to finish.
    pub async fn stop(mut self) {
        const GRACE: Duration = Duration::from_secs(2);
        self.cancel.cancel();
        if tokio::time::timeout(GRACE, &mut self.task).await.is_err() {
            tracing::warn!("hub requests still running at shutdown were cut off");
            self.task.abort();
        }
    }
}
