//! A node: the engine, the bus, the internal services and the custom services of a manifest,
//! started together and stopped in order (services first, then Com, so nothing a service
//! submits while stopping is lost). A new manifest can be applied while it runs: only the
//! services that changed are restarted.

mod apply;
mod check;
mod control;

use apply::Running;
pub use check::check_entry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::cache::CompileCache;
use crate::component::Loader;
use crate::config::NodeConfig;
use crate::engine::EpochTicker;
use crate::manifest::{Manifest, ServiceEntry};
use crate::orchestrator::{ServiceReport, ServiceTable};
use crate::service::{ServiceEnv, State, Status};

/// A running node.
#[derive(Debug)]
pub struct Node {
    core: Arc<Core>,
    /// The health of the node's long-lived tasks (Com here; the daemon adds the fleet
    /// client and the admin API).
    health: Arc<busbar_base::supervise::Health>,
    internal_tasks: TaskTracker,
    internal_cancel: CancellationToken,
    _ticker: EpochTicker,
}

/// What the node's owner and its control task share.
#[derive(Debug)]
struct Core {
    /// The bus, the loader, the dead letters and the desired state every service gets.
    env: ServiceEnv,
    /// What Com reports about its link and spool.
    com_stats: Arc<crate::com::ComStats>,
    /// What each broker connection reports.
    topics_stats: crate::topics::TopicsStats,
    /// What the fabric reports, if the node is on one.
    fabric_stats: Option<Arc<crate::fabric::FabricStats>>,
    services: Arc<ServiceTable>,
    /// The services running now; also serialises every change to them.
    running: Mutex<BTreeMap<String, Running>>,
    /// What the node is asked to run: the manifest and the operator's overrides.
    wanted: std::sync::Mutex<Wanted>,
    limits: NodeSettings,
    service_tasks: TaskTracker,
    service_cancel: CancellationToken,
}

/// The manifest the node runs and what the operator or the hub changed on top of it.
#[derive(Debug, Default)]
struct Wanted {
    manifest: Manifest,
    /// False while the hub's desired state says `enabled: false`: no custom service runs.
    disabled: bool,
    /// Services stopped by a control action, until started again.
    held: std::collections::BTreeSet<String>,
}

/// What the node config says about every service.
#[derive(Debug, Clone)]
struct NodeSettings {
    max_instances: u32,
    engine: crate::engine::EngineConfig,
    drain: Duration,
    data_dir: std::path::PathBuf,
    /// The broker connections' base topics, for the services' topic grants.
    brokers: crate::grants::BrokerBases,
    /// Whether the node is on a fabric (services may be `shared` in a group).
    fabric: bool,
    /// The node's id.
    node_id: String,
}

impl NodeSettings {
    fn of(config: &NodeConfig) -> anyhow::Result<Self> {
        Ok(Self {
            max_instances: config.engine.max_instances,
            engine: config.engine.clone(),
            drain: config.drain(),
            data_dir: config.data_dir(),
            brokers: config.brokers()?.bases(),
            fabric: config.fabric.is_some(),
            node_id: config.node_id.clone(),
        })
    }
}

/// What applying a manifest did, by service name.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Services that were not running before.
    pub started: Vec<String>,
    /// Services whose entry or component changed.
    pub restarted: Vec<String>,
    /// Services no longer in the manifest, or disabled.
    pub stopped: Vec<String>,
    /// Services left as they were.
    pub unchanged: Vec<String>,
}

impl Node {
    /// Starts a node running the enabled services of `manifest`. Services load and start in
    /// the background; a service whose component cannot be loaded is marked failed and the
    /// others run.
    pub async fn start(config: &NodeConfig, manifest: &Manifest) -> anyhow::Result<Node> {
        let engine = config.engine.build()?;
        let cache = CompileCache::new(&engine, config.cache_dir())?;
        let loader = Loader::new(engine.clone(), cache)?
            .with_fingerprint(config.engine.fingerprint(crate::precompiled::HOST_TARGET));
        let ticker = EpochTicker::start(engine, Duration::from_millis(config.engine.epoch_tick_ms));
        let bus = Bus::new(config.max_payload_bytes);

        let internal_tasks = TaskTracker::new();
        let internal_cancel = CancellationToken::new();
        let services = Arc::new(ServiceTable::default());
        let health = busbar_base::supervise::Health::new();
        let com_stats = Arc::new(crate::com::ComStats::default());
        let dead_letters = Arc::new(crate::dead_letter::DeadLetters::default());
        let topics_stats = crate::topics::spawn(
            &config.brokers()?,
            &bus,
            &internal_tasks,
            &health,
            internal_cancel.clone(),
        )?;
        let fabric_stats = match config.fabric_settings()? {
            Some(settings) => Some(crate::fabric::spawn(
                settings,
                &bus,
                &internal_tasks,
                &health,
                internal_cancel.clone(),
            )?),
            None => None,
        };
        crate::logger::spawn(&bus, &internal_tasks, internal_cancel.clone())?;
        let (control_tx, control_rx) = mpsc::channel(16);
        crate::orchestrator::spawn(
            &bus,
            dead_letters.clone(),
            services.clone(),
            control_tx,
            &internal_tasks,
            internal_cancel.clone(),
        )?;
        // Com last: what it receives (the desired state, C2D) finds the internal services
        // it goes to already on the bus.
        crate::com::spawn(
            crate::com::ComParts {
                config: &config.com,
                node_id: &config.node_id,
                data_dir: &config.data_dir(),
                stats: com_stats.clone(),
                services: services.clone(),
            },
            &bus,
            &internal_tasks,
            &health,
            internal_cancel.clone(),
        )
        .await?;
        let core = Arc::new(Core {
            env: ServiceEnv {
                loader,
                bus,
                dead_letters,
                desired: Arc::default(),
            },
            com_stats,
            topics_stats,
            fabric_stats,
            services,
            running: Mutex::default(),
            wanted: std::sync::Mutex::default(),
            limits: NodeSettings::of(config)?,
            service_tasks: TaskTracker::new(),
            service_cancel: CancellationToken::new(),
        });
        internal_tasks.spawn(control::serve(
            core.clone(),
            control_rx,
            internal_cancel.clone(),
        ));
        let node = Node {
            core,
            health,
            internal_tasks,
            internal_cancel,
            _ticker: ticker,
        };
        if let Err(e) = node.apply(manifest).await {
            node.shutdown().await;
            return Err(e);
        }
        // Its services are on the bus: other nodes may reach them now.
        node.fabric_inbox("open").await;
        Ok(node)
    }

    /// Makes the node run exactly the enabled services of `manifest`: starts new ones, stops
    /// those no longer wanted, restarts those whose entry or component file changed (the old
    /// instance finishes its queue first; new messages wait for the new one), and leaves the
    /// others alone. A manifest the node cannot run is refused before anything changes.
    /// Services stopped by a control action stay stopped, and none runs while the hub's
    /// desired state disables them.
    pub async fn apply(&self, manifest: &Manifest) -> anyhow::Result<Applied> {
        self.core.apply(Some(manifest), None).await
    }

    /// Like [`Node::apply`], but first loads every enabled component (cheap for those already
    /// running): a manifest naming a component that is missing, corrupt, of the wrong world
    /// or asking for ungranted imports is refused before any service is touched.
    pub async fn reload(&self, manifest: &Manifest) -> anyhow::Result<Applied> {
        self.handle().reload(manifest).await
    }

    /// A handle that changes what this node runs, for tasks that outlive a borrow of it.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle(self.core.clone())
    }

    /// The health of the node's long-lived tasks.
    pub fn health(&self) -> &Arc<busbar_base::supervise::Health> {
        &self.health
    }
}

/// Changes what a running node runs; cheap to clone (the fleet client holds one).
#[derive(Debug, Clone)]
pub struct NodeHandle(Arc<Core>);

impl NodeHandle {
    /// See [`Node::reload`].
    pub async fn reload(&self, manifest: &Manifest) -> anyhow::Result<Applied> {
        // New and changed entries are instantiated in their sandbox; the others only loaded
        // (their instances run, and a full engine must not block a reload).
        let fresh: Vec<bool> = {
            let running = self.0.running.lock().await;
            manifest
                .services
                .iter()
                .map(|s| running.get(&s.name).is_none_or(|r| apply::changed(r, s)))
                .collect()
        };
        for (s, fresh) in manifest
            .services
            .iter()
            .zip(fresh)
            .filter(|(s, _)| s.enabled)
        {
            let checked = if fresh {
                check::trial(&self.0.env.loader, &self.0.limits, s).await
            } else {
                self.0
                    .env
                    .loader
                    .load(&crate::component::ComponentSource::of(s))
                    .await
                    .map_err(anyhow::Error::from)
            };
            checked.with_context(|| format!("service `{}`", s.name))?;
        }
        self.0.apply(Some(manifest), None).await
    }

    /// Loads (compiles, checks) one service's component and instantiates it in its sandbox
    /// ([`check_entry`]), without running it; the fleet client checks new versions so.
    pub async fn check(&self, entry: &ServiceEntry) -> anyhow::Result<()> {
        check::trial(&self.0.env.loader, &self.0.limits, entry)
            .await
            .map(drop)
    }

    /// The table of services (state and counters).
    pub fn services(&self) -> Arc<ServiceTable> {
        self.0.services.clone()
    }
}

impl Node {
    /// The node's bus, to send and call like a service does.
    pub fn bus(&self) -> &Bus {
        &self.core.env.bus
    }

    /// What Com reports about its link and spool (for `/metrics`).
    pub fn com_stats(&self) -> &Arc<crate::com::ComStats> {
        &self.core.com_stats
    }

    /// What each broker connection reports (for `/metrics` and `/status`).
    pub fn topics_stats(&self) -> &crate::topics::TopicsStats {
        &self.core.topics_stats
    }

    /// Opens or closes the fabric's inbox (a node on no fabric has none).
    async fn fabric_inbox(&self, what: &str) {
        let bus = self.bus();
        if !bus.knows(crate::message::FABRIC) {
            return;
        }
        let msg = crate::message::new_message(
            bus.next_id(),
            crate::message::NODE_SOURCE,
            crate::message::FABRIC,
            crate::message::FABRIC_INBOX,
            "text/plain",
            what.as_bytes().to_vec(),
        );
        if let Err(e) = bus.call(msg, Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "the fabric could not {what} its inbox");
        }
    }

    /// What the fabric reports, if the node is on one (for `/metrics` and `/status`).
    pub fn fabric_stats(&self) -> Option<&Arc<crate::fabric::FabricStats>> {
        self.core.fabric_stats.as_ref()
    }

    /// Messages services took but could not finish.
    pub fn dead_letters(&self) -> &Arc<crate::dead_letter::DeadLetters> {
        &self.core.env.dead_letters
    }

    /// The loader (engine and compile cache) the node uses.
    pub fn loader(&self) -> &Loader {
        &self.core.env.loader
    }

    /// The table of services (state and counters), shared with the admin API.
    pub fn services(&self) -> Arc<ServiceTable> {
        self.core.services.clone()
    }

    /// Every service with its state and counters, by name.
    pub fn report(&self) -> Vec<ServiceReport> {
        self.core.services.report()
    }

    /// Waits until service `name` reaches a state for which `done` holds; returns its status.
    pub async fn wait_for(
        &self,
        name: &str,
        done: impl Fn(State) -> bool,
    ) -> anyhow::Result<Status> {
        let mut rx = self
            .core
            .services
            .get(name)
            .with_context(|| format!("no service named `{name}`"))?
            .status;
        let status = rx.wait_for(|s| done(s.state)).await?;
        Ok(status.clone())
    }

    /// Waits until every service has left the loading and starting states.
    pub async fn settled(&self) -> anyhow::Result<()> {
        for name in self.core.services.names() {
            self.wait_for(&name, |s| !matches!(s, State::Loading | State::Starting))
                .await?;
        }
        Ok(())
    }

    /// Stops every service (each drains its mailbox and runs `stop`), then lets Com write out
    /// what they submitted, then returns.
    pub async fn shutdown(self) {
        // Other nodes stop reaching this one before its services stop.
        self.fabric_inbox("close").await;
        tracing::info!("shutting down: stopping services");
        self.core.service_cancel.cancel();
        self.core.service_tasks.close();
        self.core.service_tasks.wait().await;
        tracing::info!("services stopped; flushing Com");
        self.internal_cancel.cancel();
        self.internal_tasks.close();
        self.internal_tasks.wait().await;
        tracing::info!("node stopped");
    }
}
