//! A node: the engine, the bus, the internal services and the custom services of a manifest,
//! started together and stopped in order (services first, then Com, so nothing a service
//! submits while stopping is lost).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminServer;
use crate::bus::{Bus, Route, RouteKind};
use crate::cache::CompileCache;
use crate::component::Loader;
use crate::config::NodeConfig;
use crate::engine::EpochTicker;
use crate::manifest::{Manifest, property_text};
use crate::orchestrator::{ServiceHandle, ServiceReport, ServiceTable};
use crate::service::{RestartPolicy, ServiceSpec, State, Status};

/// A running node.
#[derive(Debug)]
pub struct Node {
    bus: Bus,
    loader: Loader,
    services: Arc<ServiceTable>,
    service_tasks: TaskTracker,
    service_cancel: CancellationToken,
    internal_tasks: TaskTracker,
    internal_cancel: CancellationToken,
    _ticker: EpochTicker,
}

impl Node {
    /// Starts a node running the enabled services of `manifest`. Services load and start in
    /// the background; a service whose component cannot be loaded is marked failed and the
    /// others run.
    pub async fn start(config: &NodeConfig, manifest: &Manifest) -> anyhow::Result<Node> {
        let engine = config.engine.build()?;
        let cache = CompileCache::new(&engine, config.cache_dir())?;
        let loader = Loader::new(engine.clone(), cache)?;
        let ticker = EpochTicker::start(engine, Duration::from_millis(config.engine.epoch_tick_ms));
        let bus = Bus::new(config.max_payload_bytes);

        let internal_tasks = TaskTracker::new();
        let internal_cancel = CancellationToken::new();
        crate::com::spawn(&config.com, &bus, &internal_tasks, internal_cancel.clone()).await?;
        crate::logger::spawn(&bus, &internal_tasks, internal_cancel.clone())?;
        let services = Arc::new(ServiceTable::default());
        crate::orchestrator::spawn(
            &bus,
            services.clone(),
            &internal_tasks,
            internal_cancel.clone(),
        )?;

        let enabled: Vec<_> = manifest.services.iter().filter(|s| s.enabled).collect();
        anyhow::ensure!(
            enabled.len() <= config.engine.max_instances as usize,
            "the manifest enables {} services but engine.max_instances is {}",
            enabled.len(),
            config.engine.max_instances
        );
        let max_mib = config.engine.max_memory_mib;
        let node = Node {
            bus,
            loader,
            services,
            service_tasks: TaskTracker::new(),
            service_cancel: CancellationToken::new(),
            internal_tasks,
            internal_cancel,
            _ticker: ticker,
        };
        for s in manifest.services.iter().filter(|s| !s.enabled) {
            tracing::info!(service = %s.name, "disabled in the manifest; not started");
        }
        for s in enabled {
            let memory_mib = s.limits.memory_mib.unwrap_or(max_mib);
            anyhow::ensure!(
                memory_mib <= max_mib,
                "service `{}`: limits.memory_mib = {memory_mib} exceeds engine.max_memory_mib = {max_mib}",
                s.name
            );
            let spec = ServiceSpec {
                name: Arc::from(s.name.as_str()),
                source: s.source(),
                properties: Arc::new(
                    s.config
                        .iter()
                        .map(|(k, v)| (k.clone(), property_text(v)))
                        .collect(),
                ),
                memory_bytes: (memory_mib as usize) << 20,
                deadline: Duration::from_millis(s.limits.deadline_ms),
                drain: config.drain(),
                restart: RestartPolicy::default(),
            };
            let (tx, rx) = mpsc::channel(s.limits.mailbox);
            node.bus
                .register(
                    &s.name,
                    Route::new(tx.clone(), s.limits.on_full(), RouteKind::Custom),
                )
                .with_context(|| format!("registering service `{}`", s.name))?;
            let (status, counters) = crate::service::spawn(
                spec,
                node.loader.clone(),
                node.bus.clone(),
                (tx, rx),
                &node.service_tasks,
                node.service_cancel.clone(),
            );
            node.services
                .insert(&s.name, ServiceHandle { status, counters });
        }
        Ok(node)
    }

    /// The node's bus, to send and call like a service does.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The loader (engine and compile cache) the node uses.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// The table of services (state and counters), shared with the admin API.
    pub fn services(&self) -> Arc<ServiceTable> {
        self.services.clone()
    }

    /// Every service with its state and counters, by name.
    pub fn report(&self) -> Vec<ServiceReport> {
        self.services.report()
    }

    /// Waits until service `name` reaches a state for which `done` holds; returns its status.
    pub async fn wait_for(
        &self,
        name: &str,
        done: impl Fn(State) -> bool,
    ) -> anyhow::Result<Status> {
        let mut rx = self
            .services
            .get(name)
            .with_context(|| format!("no service named `{name}`"))?
            .status;
        let status = rx.wait_for(|s| done(s.state)).await?;
        Ok(status.clone())
    }

    /// Waits until every service has left the loading and starting states.
    pub async fn settled(&self) -> anyhow::Result<()> {
        for name in self.services.names() {
            self.wait_for(&name, |s| !matches!(s, State::Loading | State::Starting))
                .await?;
        }
        Ok(())
    }

    /// Stops every service (each drains its mailbox and runs `stop`), then lets Com write out
    /// what they submitted, then returns.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: stopping services");
        self.service_cancel.cancel();
        self.service_tasks.close();
        self.service_tasks.wait().await;
        tracing::info!("services stopped; flushing Com");
        self.internal_cancel.cancel();
        self.internal_tasks.close();
        self.internal_tasks.wait().await;
        tracing::info!("node stopped");
    }
}

/// Runs a node until `shutdown` fires, then stops it in order.
pub async fn run(
    config: &NodeConfig,
    manifest: &Manifest,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = Node::start(config, manifest).await?;
    let admin = if config.admin.enabled {
        match AdminServer::start(config, node.bus().clone(), node.services()).await {
            Ok(admin) => Some(admin),
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    tracing::info!(node_id = %config.node_id, services = node.services.len(), "node running");
    shutdown.cancelled().await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    node.shutdown().await;
    Ok(())
}
