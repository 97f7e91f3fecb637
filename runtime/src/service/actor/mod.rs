//! The task that owns one service: loads its component, starts an instance, feeds it its
//! mailbox one message at a time, restarts it after a fault, and stops it when told.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod serving;
mod swap;

use super::{
    Decision, Fault, Instance, PROBATION, ServiceCounters, ServiceEnv, ServiceSpec, State, Status,
    Supervisor,
};
use crate::bus::{Bus, Delivery};
use crate::component::{LoadedComponent, Loader};
use crate::message::{BusError, ErrorCode, WitError};

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
        busbar_base::sync::lock(&self.0)
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
        self.release_subscriptions().await;
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
                let code = c.code();
                self.status.send_modify(|s| {
                    s.sha256 = Some(digest);
                    s.code = Some(code);
                });
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
}

impl From<Fault> for WitError {
    fn from(f: Fault) -> Self {
        BusError::new(ErrorCode::ServiceFault, f.to_string()).into()
    }
}
