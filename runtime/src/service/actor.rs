//! The task that owns one service: loads its component, starts an instance, feeds it its
//! mailbox one message at a time, restarts it after a fault, and stops it when told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Decision, Fault, Instance, RestartPolicy, ServiceCounters, ServiceEnv, State, Status,
    Supervisor,
};
use crate::bus::{Bus, Delivery};
use crate::component::{ComponentSource, LoadedComponent, Loader};
use crate::host::HostContext;
use crate::message::{BusError, ErrorCode, PayloadPreview, WitError};

/// Everything needed to run one service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name on the bus.
    pub name: Arc<str>,
    /// Its component (and precompiled artifacts).
    pub source: ComponentSource,
    /// Configuration properties, rendered as strings.
    pub properties: Arc<BTreeMap<String, String>>,
    /// Maximum linear memory in bytes.
    pub memory_bytes: usize,
    /// Store limits beyond memory, the fuel per call and the submit quota.
    pub sandbox: crate::host::Sandbox,
    /// Deadline of each export call.
    pub deadline: Duration,
    /// How long queued messages may still be processed at shutdown.
    pub drain: Duration,
    /// Restart policy after faults.
    pub restart: RestartPolicy,
    /// Its capabilities.
    pub granted: Arc<crate::grants::Granted>,
    /// Set when a new version replaces this one: the old one then finishes its whole queue
    /// (no drain deadline), hands its state over and whatever it could not process to the
    /// new mailbox.
    pub successor: Arc<std::sync::OnceLock<Successor>>,
    /// When this version replaces another: what the other hands over.
    pub handover: Option<Arc<Handover>>,
    /// When this version replaces another: how to run that one again should this one fail to
    /// load, fail to start, or fault repeatedly within [`PROBATION`].
    pub fallback: Option<Box<ServiceSpec>>,
}

/// How long a new version that replaced a running one is watched: a second fault within it
/// rolls the service back (a failed load or start does at once).
pub const PROBATION: Duration = Duration::from_secs(10);

/// Where a replaced version leaves what the new one takes over.
#[derive(Debug, Clone)]
pub struct Successor {
    /// The old version's state, unprocessed deliveries and the moment it stopped
    /// processing.
    pub handover: Arc<Handover>,
}

/// What the old version of a service hands to the new one during a hot swap.
#[derive(Debug, Default)]
pub struct Handover(std::sync::Mutex<Handed>);

#[derive(Debug, Default)]
struct Handed {
    snapshot: Option<Vec<u8>>,
    drained_at: Option<Instant>,
    /// The sha256 the old version ran: the same one means a restart, not a new version.
    previous_sha256: Option<String>,
    /// What the old version could not process (it faulted while draining, or a sender had
    /// looked up its mailbox just before the swap): handled first by the new one, in order.
    leftovers: Vec<Delivery>,
}

impl Handover {
    fn lock(&self) -> std::sync::MutexGuard<'_, Handed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The task of one service, as [`spawn`] returns it.
#[derive(Debug)]
pub struct Spawned {
    /// Follows the service's lifecycle.
    pub status: watch::Receiver<Status>,
    /// The service's counters.
    pub counters: Arc<ServiceCounters>,
    /// Ends when the service has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task of one service. Its mailbox must already be registered on the bus, so
/// messages sent while it loads wait there. With `after`, the service loads only once that
/// task (the version it replaces) has ended, so messages are handled in order.
pub fn spawn(
    spec: ServiceSpec,
    env: &ServiceEnv,
    mailbox: (mpsc::Sender<Delivery>, mpsc::Receiver<Delivery>),
    tracker: &tokio_util::task::TaskTracker,
    cancel: CancellationToken,
    after: Option<tokio::task::JoinHandle<()>>,
) -> Spawned {
    let (status_tx, status) = watch::channel(Status::new());
    let counters = Arc::new(ServiceCounters::default());
    let span = tracing::info_span!("service", service = %spec.name);
    let actor = Actor {
        desired: env.desired.follow(),
        dead_letters: env.dead_letters.clone(),
        spec,
        bus: env.bus.clone(),
        self_tx: mailbox.0,
        pending: std::collections::VecDeque::new(),
        mailbox: mailbox.1,
        status: status_tx,
        counters: counters.clone(),
        cancel,
    };
    let task = tracker.spawn(actor.run(env.loader.clone(), after).instrument(span));
    Spawned {
        status,
        counters,
        task,
    }
}

struct Actor {
    /// Deliveries handed over by the version this one replaced, handled before the mailbox.
    pending: std::collections::VecDeque<Delivery>,
    spec: ServiceSpec,
    bus: Bus,
    self_tx: mpsc::Sender<Delivery>,
    mailbox: mpsc::Receiver<Delivery>,
    status: watch::Sender<Status>,
    counters: Arc<ServiceCounters>,
    cancel: CancellationToken,
    /// The node's desired state, handed to `state-update` when it changes.
    desired: watch::Receiver<Option<Arc<str>>>,
    /// Where messages it took but could not finish go.
    dead_letters: Arc<crate::dead_letter::DeadLetters>,
}

/// How serving an instance ended.
enum Ended {
    Cancelled,
    Faulted(Fault),
}

/// How running one version ended.
enum Outcome {
    Stopped,
    Failed,
    /// The new version failed within its probation: run the previous one again.
    RollBack(String),
}

impl Actor {
    fn set_state(&self, state: State) {
        self.status.send_modify(|s| s.state = state);
        tracing::info!(%state, "service state");
    }

    async fn run(mut self, loader: Loader, after: Option<tokio::task::JoinHandle<()>>) {
        self.run_until_stopped(loader, after).await;
        self.release_queue();
    }

    /// Nothing queued vanishes when the task ends: it is handed to the new version when one
    /// replaces this one (handled before its own mailbox), else it goes to the dead-letter
    /// store. Ticks are dropped.
    fn release_queue(&mut self) {
        self.mailbox.close();
        let mut left: Vec<Delivery> = self.pending.drain(..).collect();
        while let Ok(d) = self.mailbox.try_recv() {
            left.push(d);
        }
        left.retain(|d| !matches!(d.reply, crate::bus::ReplyTo::Tick(_)));
        if let Some(next) = self.spec.successor.get() {
            next.handover.lock().leftovers.extend(left);
            return;
        }
        let reason = format!(
            "the node stopped before it was processed (drain_ms = {})",
            self.spec.drain.as_millis()
        );
        for d in left {
            self.dead_letter(&d.msg, &reason);
        }
    }

    /// The next delivery: one handed over by the previous version, else from the mailbox
    /// without waiting.
    fn try_next(&mut self) -> Option<Delivery> {
        self.pending
            .pop_front()
            .or_else(|| self.mailbox.try_recv().ok())
    }

    /// Runs the service until it is stopped or fails for good. With `after` (the version this
    /// one replaces), the component is loaded and instantiated while that version finishes
    /// its queue, so the swap pause is only the handover, `restore` and `start`.
    async fn run_until_stopped(
        &mut self,
        loader: Loader,
        mut after: Option<tokio::task::JoinHandle<()>>,
    ) {
        loop {
            let loaded = self.load(&loader).await;
            let early = match (&loaded, after.take()) {
                (Ok(component), Some(previous)) => {
                    let early = self.instantiate(component).await;
                    let _ = previous.await;
                    self.take_leftovers();
                    early
                        .map_err(|f| tracing::debug!(%f, "could not instantiate ahead of the swap"))
                        .ok()
                }
                (Err(_), Some(previous)) => {
                    let _ = previous.await;
                    self.take_leftovers();
                    None
                }
                (_, None) => None,
            };
            let outcome = match loaded {
                Ok(component) => self.supervise(&component, early).await,
                Err(reason) => {
                    self.status
                        .send_modify(|s| s.last_fault = Some(reason.clone()));
                    if self.spec.fallback.is_some() {
                        Outcome::RollBack(reason)
                    } else {
                        Outcome::Failed
                    }
                }
            };
            match outcome {
                Outcome::Stopped => return self.set_state(State::Stopped),
                Outcome::Failed => return self.fail().await,
                Outcome::RollBack(reason) => self.roll_back(reason),
            }
        }
    }

    async fn load(&mut self, loader: &Loader) -> Result<Arc<LoadedComponent>, String> {
        self.set_state(State::Loading);
        let began = Instant::now();
        match loader.load(&self.spec.source).await {
            Ok(c) => {
                tracing::info!(
                    ms = began.elapsed().as_secs_f64() * 1e3,
                    sha256 = &c.digest()[..12],
                    "component loaded ({})",
                    c.origin()
                );
                let digest = c.digest().to_owned();
                self.status.send_modify(|s| s.sha256 = Some(digest));
                Ok(c)
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "service cannot be loaded");
                Err(reason)
            }
        }
    }

    /// Starts instances of one loaded version and serves them, restarting after faults.
    async fn supervise(
        &mut self,
        component: &LoadedComponent,
        mut early: Option<Instance>,
    ) -> Outcome {
        let mut supervisor = Supervisor::new(self.spec.restart);
        let on_probation_until = self
            .spec
            .fallback
            .is_some()
            .then(|| Instant::now() + PROBATION);
        let mut faults_on_probation = 0u32;
        let mut state = self.handed_snapshot();
        loop {
            let started = match early.take() {
                Some(instance) => self.start_instance(instance, state.take()).await,
                None => match self.instantiate(component).await {
                    Ok(instance) => self.start_instance(instance, state.take()).await,
                    Err(f) => Err(f),
                },
            };
            let (fault, in_start) = match started {
                Ok(instance) => {
                    self.record_swap_pause();
                    match self.serve(instance).await {
                        Ended::Cancelled => return Outcome::Stopped,
                        Ended::Faulted(f) => (f, false),
                    }
                }
                Err(f) => (f, true),
            };
            if self.cancel.is_cancelled() {
                return Outcome::Stopped;
            }
            self.status
                .send_modify(|s| s.last_fault = Some(fault.to_string()));
            if on_probation_until.is_some_and(|until| Instant::now() < until) {
                faults_on_probation += 1;
                if in_start || faults_on_probation >= 2 {
                    return Outcome::RollBack(fault.to_string());
                }
            }
            match supervisor.on_fault(Instant::now()) {
                Decision::Restart(wait) => {
                    tracing::warn!(%fault, backoff_ms = wait.as_millis() as u64, "service faulted; restarting");
                    self.set_state(State::Restarting);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.cancel.cancelled() => return Outcome::Stopped,
                    }
                    self.status.send_modify(|s| s.restarts += 1);
                }
                Decision::GiveUp => {
                    tracing::error!(%fault, "service faulted too often; marked failed");
                    return Outcome::Failed;
                }
            }
        }
    }

    /// Queues what the replaced version left, ahead of the mailbox.
    fn take_leftovers(&mut self) {
        if let Some(h) = &self.spec.handover {
            let left = std::mem::take(&mut h.lock().leftovers);
            if !left.is_empty() {
                tracing::info!(
                    count = left.len(),
                    "handling what the previous version left"
                );
            }
            self.pending.extend(left);
        }
    }

    /// The state the replaced version handed over, if any.
    fn handed_snapshot(&self) -> Option<Vec<u8>> {
        self.spec
            .handover
            .as_ref()
            .and_then(|h| h.lock().snapshot.clone())
    }

    /// After the first start that follows a swap: how long no version was processing.
    fn record_swap_pause(&self) {
        let Some((drained_at, previous)) = self.spec.handover.as_ref().and_then(|h| {
            let mut handed = h.lock();
            Some((handed.drained_at.take()?, handed.previous_sha256.take()))
        }) else {
            return;
        };
        let pause = drained_at.elapsed();
        let pause_ms = pause.as_secs_f64() * 1e3;
        if previous.is_some() && previous == self.status.borrow().sha256 {
            tracing::info!(pause_ms, "restarted (same version)");
        } else {
            tracing::info!(pause_ms, "new version swapped in");
        }
        self.status
            .send_modify(|s| s.swap_pause_us = Some(pause.as_micros() as u64));
    }

    /// Goes back to the version this one replaced, with the same mailbox and the state the
    /// replaced version handed over.
    fn roll_back(&mut self, reason: String) {
        let previous = *self
            .spec
            .fallback
            .take()
            .expect("a rollback needs a previous version");
        let failed = self
            .spec
            .source
            .sha256
            .clone()
            .or_else(|| self.status.borrow().sha256.clone());
        tracing::error!(
            sha256 = failed.as_deref().unwrap_or("?"),
            %reason,
            "the new version failed; rolling back to the previous version"
        );
        self.status.send_modify(|s| {
            s.rolled_back = Some(super::Rollback {
                sha256: failed,
                reason,
            });
        });
        let spec = &mut self.spec;
        spec.source = previous.source;
        spec.properties = previous.properties;
        spec.memory_bytes = previous.memory_bytes;
        spec.sandbox = previous.sandbox;
        spec.deadline = previous.deadline;
        spec.granted = previous.granted;
    }

    async fn instantiate(&self, component: &LoadedComponent) -> Result<Instance, Fault> {
        let ctx = HostContext {
            service: self.spec.name.clone(),
            bus: self.bus.clone(),
            mailbox: self.self_tx.clone(),
            properties: self.spec.properties.clone(),
            counters: self.counters.clone(),
            memory_bytes: self.spec.memory_bytes,
            sandbox: self.spec.sandbox.clone(),
            granted: self.spec.granted.clone(),
        };
        Instance::new(component, ctx, self.spec.deadline).await
    }

    /// Restores the handed-over state (if any), runs `start`, then gives the instance the
    /// current desired state.
    async fn start_instance(
        &mut self,
        mut instance: Instance,
        state: Option<Vec<u8>>,
    ) -> Result<Instance, Fault> {
        self.set_state(State::Starting);
        if let Some(state) = state {
            let bytes = state.len();
            if instance.restore(state).await? {
                tracing::info!(bytes, "state restored from the previous version");
            } else {
                tracing::warn!(
                    bytes,
                    "the previous version handed over its state, but this one does not export `restore`; it starts fresh"
                );
            }
        }
        instance.start().await?;
        let state = self.desired.borrow_and_update().clone();
        if let Some(state) = state {
            instance.state_update(&state).await?;
        }
        Ok(instance)
    }

    async fn serve(&mut self, mut instance: Instance) -> Ended {
        self.set_state(State::Running);
        loop {
            if let Some(d) = self.pending.pop_front() {
                if let Err(fault) = self.handle(&mut instance, d).await {
                    return Ended::Faulted(fault);
                }
                continue;
            }
            let d = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return self.shut_down(instance).await,
                Ok(()) = self.desired.changed() => {
                    let state = self.desired.borrow_and_update().clone();
                    if let Some(state) = state
                        && let Err(fault) = instance.state_update(&state).await
                    {
                        return Ended::Faulted(fault);
                    }
                    continue;
                }
                d = self.mailbox.recv() => d,
            };
            let Some(d) = d else {
                return self.shut_down(instance).await;
            };
            if let Err(fault) = self.handle(&mut instance, d).await {
                return Ended::Faulted(fault);
            }
        }
    }

    /// Processes one delivery and routes its outcome. A fault leaves the instance unusable.
    async fn handle(&self, instance: &mut Instance, d: Delivery) -> Result<(), Fault> {
        d.take_tick();
        let msg = d.msg.clone();
        let began = Instant::now();
        let outcome = instance.process(&msg).await;
        let took = began.elapsed();
        let (result, fault) = match outcome {
            Ok(r) => (r.map_err(BusError::from), None),
            Err(fault) => {
                let e = BusError::new(
                    ErrorCode::ServiceFault,
                    format!(
                        "`{}` {fault} while handling `{}`",
                        self.spec.name, msg.action
                    ),
                );
                (Err(e), Some(fault))
            }
        };
        self.counters.record_processed(result.is_ok());
        if let Some(fault) = &fault {
            self.dead_letter(&msg, &fault.to_string());
        }
        if let Err(e) = &result {
            tracing::warn!(
                id = %msg.id, from = %msg.source, action = %msg.action,
                payload = %PayloadPreview(&msg.payload), error = %e,
                "message not processed"
            );
        }
        self.bus.finish(&self.spec.name, d, took, result);
        fault.map_or(Ok(()), Err)
    }

    fn dead_letter(&self, msg: &crate::message::Message, reason: &str) {
        self.counters.record_dead_lettered();
        self.dead_letters.put(&self.spec.name, msg, reason);
    }

    /// Processes what is already queued (up to the drain deadline), then calls `stop`. What
    /// is still queued after that goes to the dead-letter store.
    async fn shut_down(&mut self, mut instance: Instance) -> Ended {
        self.set_state(State::Stopping);
        // Replaced by a new version: finish the whole queue (bounded: mailbox × deadline), so
        // messages keep their order; stopping for good: up to `drain`.
        let until = self
            .spec
            .successor
            .get()
            .is_none()
            .then(|| Instant::now() + self.spec.drain);
        let mut drained = 0u32;
        let mut healthy = true;
        while until.is_none_or(|u| Instant::now() < u) {
            let Some(d) = self.try_next() else {
                break;
            };
            drained += 1;
            if let Err(fault) = self.handle(&mut instance, d).await {
                tracing::warn!(%fault, "fault while draining; stop is skipped");
                healthy = false;
                break;
            }
        }
        if drained > 0 {
            tracing::info!(drained, "processed queued messages before stopping");
        }
        if let Some(next) = self.spec.successor.get() {
            let previous = self.status.borrow().sha256.clone();
            {
                let mut handed = next.handover.lock();
                handed.drained_at = Some(Instant::now());
                handed.previous_sha256 = previous;
            }
            if healthy {
                match instance.snapshot().await {
                    Ok(Some(state)) => next.handover.lock().snapshot = Some(state),
                    Ok(None) => {}
                    Err(fault) => {
                        tracing::warn!(%fault, "snapshot failed; the new version starts fresh");
                        healthy = false;
                    }
                }
            }
        }
        self.release_queue();
        if healthy && let Err(fault) = instance.stop().await {
            tracing::warn!(%fault, "stop did not complete");
        }
        Ended::Cancelled
    }

    /// Marks the service failed and answers everything sent to it with `unavailable` until
    /// the node shuts down.
    async fn fail(&mut self) {
        self.set_state(State::Failed);
        let reason = self.status.borrow().last_fault.clone().unwrap_or_default();
        loop {
            let d = match self.pending.pop_front() {
                Some(d) => Some(d),
                None => tokio::select! {
                    () = self.cancel.cancelled() => return,
                    d = self.mailbox.recv() => d,
                },
            };
            let Some(d) = d else { return };
            d.take_tick();
            let e = BusError::new(
                ErrorCode::Unavailable,
                format!("service `{}` has failed: {reason}", self.spec.name),
            );
            self.bus.finish(&self.spec.name, d, Duration::ZERO, Err(e));
        }
    }
}

impl From<Fault> for WitError {
    fn from(f: Fault) -> Self {
        BusError::new(ErrorCode::ServiceFault, f.to_string()).into()
    }
}
