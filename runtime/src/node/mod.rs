//! A node: the engine, the bus, the internal services and the custom services of a manifest,
//! started together and stopped in order (services first, then Com, so nothing a service
//! submits while stopping is lost). A new manifest can be applied while it runs: only the
//! services that changed are restarted.

mod control;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Route, RouteKind};
use crate::cache::CompileCache;
use crate::component::Loader;
use crate::config::NodeConfig;
use crate::engine::EpochTicker;
use crate::manifest::{Manifest, ServiceEntry, property_text};
use crate::orchestrator::{ServiceHandle, ServiceReport, ServiceTable};
use crate::service::{Handover, RestartPolicy, ServiceEnv, ServiceSpec, State, Status, Successor};

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
}

/// One service the node runs now.
#[derive(Debug)]
struct Running {
    entry: ServiceEntry,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: tokio::sync::watch::Receiver<Status>,
    /// Where its queue and state go when a new version replaces it.
    successor: Arc<std::sync::OnceLock<Successor>>,
    /// How it was started (without its own fallback).
    spec: ServiceSpec,
    /// The version it replaced, which it runs again if it rolled back.
    fallback: Option<(ServiceEntry, ServiceSpec)>,
}

impl Running {
    /// The entry and spec of the version it runs now: its own, or after a rollback the one
    /// it replaced.
    fn current(&self) -> (&ServiceEntry, &ServiceSpec) {
        match &self.fallback {
            Some((entry, spec)) if self.status.borrow().rolled_back.is_some() => (entry, spec),
            _ => (&self.entry, &self.spec),
        }
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
        let loader = Loader::new(engine.clone(), cache)?;
        let ticker = EpochTicker::start(engine, Duration::from_millis(config.engine.epoch_tick_ms));
        let bus = Bus::new(config.max_payload_bytes);

        let internal_tasks = TaskTracker::new();
        let internal_cancel = CancellationToken::new();
        let services = Arc::new(ServiceTable::default());
        let health = busbar_base::supervise::Health::new();
        let com_stats = Arc::new(crate::com::ComStats::default());
        let dead_letters = Arc::new(crate::dead_letter::DeadLetters::default());
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
        let core = Arc::new(Core {
            env: ServiceEnv {
                loader,
                bus,
                dead_letters,
                desired: Arc::default(),
            },
            com_stats,
            services,
            running: Mutex::default(),
            wanted: std::sync::Mutex::default(),
            limits: NodeSettings {
                max_instances: config.engine.max_instances,
                engine: config.engine.clone(),
                drain: config.drain(),
                data_dir: config.data_dir(),
            },
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
        for s in manifest.services.iter().filter(|s| s.enabled) {
            self.0
                .env
                .loader
                .load(&crate::component::ComponentSource::of(s))
                .await
                .with_context(|| format!("service `{}`", s.name))?;
        }
        self.0.apply(Some(manifest), None).await
    }

    /// Loads (compiles, checks) one service's component without running it.
    pub async fn check(&self, entry: &ServiceEntry) -> anyhow::Result<()> {
        self.0
            .env
            .loader
            .load(&crate::component::ComponentSource::of(entry))
            .await?;
        Ok(())
    }

    /// The table of services (state and counters).
    pub fn services(&self) -> Arc<ServiceTable> {
        self.0.services.clone()
    }
}

impl Core {
    /// Converges on the wanted services: those of `manifest` (else the current one) that are
    /// enabled, not held and not disabled by the hub. `restart` names a service to restart
    /// even though it did not change.
    async fn apply(
        &self,
        manifest: Option<&Manifest>,
        restart: Option<&str>,
    ) -> anyhow::Result<Applied> {
        let mut running = self.running.lock().await;
        let (manifest, wanted) = {
            let state = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            let manifest = manifest.unwrap_or(&state.manifest).clone();
            let wanted: Vec<ServiceEntry> = manifest
                .services
                .iter()
                .filter(|s| s.enabled && !state.disabled && !state.held.contains(&s.name))
                .cloned()
                .collect();
            (manifest, wanted)
        };
        manifest
            .fit_engine(&self.limits.engine)
            .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
        anyhow::ensure!(
            wanted.len() <= self.limits.max_instances as usize,
            "the manifest enables {} services but engine.max_instances is {}",
            wanted.len(),
            self.limits.max_instances
        );
        let specs = wanted
            .iter()
            .map(|s| self.spec(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .manifest = manifest.clone();
        for s in manifest.services.iter().filter(|s| !s.enabled) {
            tracing::info!(service = %s.name, "disabled in the manifest; not started");
        }
        let mut applied = Applied::default();
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            if !wanted.iter().any(|s| s.name == name) {
                let gone = running.remove(&name).expect("listed");
                self.env.bus.unregister(&name);
                gone.cancel.cancel();
                let _ = gone.task.await;
                self.services.remove(&name);
                applied.stopped.push(name);
            }
        }
        for (entry, spec) in wanted.iter().zip(specs) {
            let previous = match running.remove(&entry.name) {
                None => {
                    applied.started.push(entry.name.clone());
                    None
                }
                Some(old) if !changed(&old, entry) && restart != Some(entry.name.as_str()) => {
                    applied.unchanged.push(entry.name.clone());
                    running.insert(entry.name.clone(), old);
                    continue;
                }
                Some(old) => {
                    applied.restarted.push(entry.name.clone());
                    // Compile before messages are redirected, so the swap pause does not
                    // include it (a failure shows in the new version's start: rollback).
                    if let Err(e) = self
                        .env
                        .loader
                        .load(&crate::component::ComponentSource::of(entry))
                        .await
                    {
                        tracing::warn!(service = %entry.name, "the new version does not load: {e:#}");
                    }
                    Some(old)
                }
            };
            let started = self.spawn(entry, spec, previous)?;
            running.insert(entry.name.clone(), started);
        }
        Ok(applied)
    }

    fn spec(&self, s: &ServiceEntry) -> anyhow::Result<ServiceSpec> {
        // Checked against the engine for the whole manifest in `apply`.
        let memory_mib = s
            .limits
            .memory_mib
            .unwrap_or(self.limits.engine.max_memory_mib);
        Ok(ServiceSpec {
            name: Arc::from(s.name.as_str()),
            source: crate::component::ComponentSource::of(s),
            properties: Arc::new(
                s.config
                    .iter()
                    .map(|(k, v)| (k.clone(), property_text(v)))
                    .collect(),
            ),
            memory_bytes: (memory_mib as usize) << 20,
            sandbox: crate::host::Sandbox::from(&s.limits),
            deadline: Duration::from_millis(s.limits.deadline_ms),
            drain: self.limits.drain,
            restart: RestartPolicy::default(),
            granted: Arc::new(crate::grants::Granted::resolve(
                &s.name,
                &s.grants,
                &self.limits.data_dir,
            )?),
            successor: Arc::default(),
            handover: None,
            fallback: None,
        })
    }

    /// Starts one service with a fresh mailbox. With `previous` (the version it replaces),
    /// new messages go to the new mailbox at once; the new version loads and instantiates
    /// while the old one finishes its queue, then the old one hands over its state and what
    /// is left, and the new one starts. Should the new version fail, it runs the old one again.
    fn spawn(
        &self,
        entry: &ServiceEntry,
        mut spec: ServiceSpec,
        previous: Option<Running>,
    ) -> anyhow::Result<Running> {
        let (tx, rx) = mpsc::channel(entry.limits.mailbox);
        let route = Route::new(
            tx.clone(),
            crate::bus::OnFull::of(&entry.limits),
            RouteKind::Custom,
        );
        let successor = Arc::new(std::sync::OnceLock::new());
        spec.successor = successor.clone();
        let own_spec = spec.clone();
        let mut fallback = None;
        let previous = if let Some(old) = previous {
            let handover = Arc::new(Handover::default());
            let _ = old.successor.set(Successor {
                handover: handover.clone(),
            });
            spec.handover = Some(handover);
            if old.status.borrow().state != State::Failed {
                let (old_entry, old_spec) = old.current();
                spec.fallback = Some(Box::new(old_spec.clone()));
                fallback = Some((old_entry.clone(), old_spec.clone()));
            }
            self.env.bus.replace(&entry.name, route);
            old.cancel.cancel();
            Some(old.task)
        } else {
            self.env
                .bus
                .register(&entry.name, route)
                .with_context(|| format!("registering service `{}`", entry.name))?;
            None
        };
        let cancel = self.service_cancel.child_token();
        let spawned = crate::service::spawn(
            spec,
            &self.env,
            (tx, rx),
            &self.service_tasks,
            cancel.clone(),
            previous,
        );
        self.services.insert(
            &entry.name,
            ServiceHandle {
                status: spawned.status.clone(),
                counters: spawned.counters,
                privileged: entry.grants.privileged,
            },
        );
        Ok(Running {
            entry: entry.clone(),
            cancel,
            task: spawned.task,
            status: spawned.status,
            successor,
            spec: own_spec,
            fallback,
        })
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

/// Whether `entry` differs from what `old` runs (after a rollback: the version it went back
/// to): another entry, or another component file behind the same path.
fn changed(old: &Running, entry: &ServiceEntry) -> bool {
    if old.current().0 != entry {
        return true;
    }
    let Some(loaded) = old.status.borrow().sha256.clone() else {
        return true;
    };
    if let Some(expected) = &entry.sha256 {
        // The loader refuses a file with another digest, so this is what would run.
        return !expected.eq_ignore_ascii_case(&loaded);
    }
    match busbar_base::read_file::read_bounded(
        &entry.component,
        busbar_base::read_file::MAX_COMPONENT_BYTES,
    ) {
        Ok(bytes) => hex::encode(Sha256::digest(&bytes)) != loaded,
        Err(_) => true,
    }
}
