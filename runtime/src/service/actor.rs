//! The task that owns one service: loads its component, starts an instance, feeds it its
//! mailbox one message at a time, restarts it after a fault, and stops it when told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Decision, Fault, Instance, RestartPolicy, ServiceCounters, State, Status, Supervisor};
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
    /// (no drain deadline) and hands whatever it could not process to the new mailbox.
    pub successor: Arc<std::sync::OnceLock<mpsc::Sender<Delivery>>>,
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
    loader: Loader,
    bus: Bus,
    mailbox: (mpsc::Sender<Delivery>, mpsc::Receiver<Delivery>),
    tracker: &tokio_util::task::TaskTracker,
    cancel: CancellationToken,
    after: Option<tokio::task::JoinHandle<()>>,
) -> Spawned {
    let (status_tx, status) = watch::channel(Status::new());
    let counters = Arc::new(ServiceCounters::default());
    let span = tracing::info_span!("service", service = %spec.name);
    let actor = Actor {
        desired: bus.desired_state(),
        spec,
        bus,
        self_tx: mailbox.0,
        mailbox: mailbox.1,
        status: status_tx,
        counters: counters.clone(),
        cancel,
    };
    let task = tracker.spawn(
        async move {
            if let Some(previous) = after {
                let _ = previous.await;
            }
            actor.run(loader).await;
        }
        .instrument(span),
    );
    Spawned {
        status,
        counters,
        task,
    }
}

struct Actor {
    spec: ServiceSpec,
    bus: Bus,
    self_tx: mpsc::Sender<Delivery>,
    mailbox: mpsc::Receiver<Delivery>,
    status: watch::Sender<Status>,
    counters: Arc<ServiceCounters>,
    cancel: CancellationToken,
    /// The node's desired state, handed to `state-update` when it changes.
    desired: watch::Receiver<Option<Arc<str>>>,
}

/// How serving an instance ended.
enum Ended {
    Cancelled,
    Faulted(Fault),
}

impl Actor {
    fn set_state(&self, state: State) {
        self.status.send_modify(|s| s.state = state);
        tracing::info!(%state, "service state");
    }

    async fn run(mut self, loader: Loader) {
        self.run_until_stopped(loader).await;
        self.release_queue();
    }

    /// Nothing queued vanishes when the task ends: it goes to the successor's mailbox when a
    /// new version replaces this one, else to the dead-letter store. Ticks are dropped.
    fn release_queue(&mut self) {
        self.mailbox.close();
        let successor = self.spec.successor.get().cloned();
        let reason = format!(
            "the node stopped before it was processed (drain_ms = {})",
            self.spec.drain.as_millis()
        );
        while let Ok(d) = self.mailbox.try_recv() {
            if matches!(d.reply, crate::bus::ReplyTo::Tick(_)) {
                continue;
            }
            let d = match &successor {
                Some(next) => match next.try_send(d) {
                    Ok(()) => continue,
                    Err(e) => e.into_inner(),
                },
                None => d,
            };
            self.dead_letter(&d.msg, &reason);
        }
    }

    async fn run_until_stopped(&mut self, loader: Loader) {
        let began = Instant::now();
        let component = match loader.load(&self.spec.source).await {
            Ok(c) => {
                tracing::info!(
                    ms = began.elapsed().as_secs_f64() * 1e3,
                    sha256 = &c.digest()[..12],
                    "component loaded ({})",
                    c.origin()
                );
                let digest = c.digest().to_owned();
                self.status.send_modify(|s| s.sha256 = Some(digest));
                c
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "service cannot be loaded");
                self.status.send_modify(|s| s.last_fault = Some(reason));
                return self.fail().await;
            }
        };
        let mut supervisor = Supervisor::new(self.spec.restart);
        loop {
            let fault = match self.start_instance(&component).await {
                Ok(instance) => match self.serve(instance).await {
                    Ended::Cancelled => return self.set_state(State::Stopped),
                    Ended::Faulted(f) => f,
                },
                Err(f) => f,
            };
            if self.cancel.is_cancelled() {
                return self.set_state(State::Stopped);
            }
            self.status
                .send_modify(|s| s.last_fault = Some(fault.to_string()));
            match supervisor.on_fault(Instant::now()) {
                Decision::Restart(wait) => {
                    tracing::warn!(%fault, backoff_ms = wait.as_millis() as u64, "service faulted; restarting");
                    self.set_state(State::Restarting);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.cancel.cancelled() => return self.set_state(State::Stopped),
                    }
                    self.status.send_modify(|s| s.restarts += 1);
                }
                Decision::GiveUp => {
                    tracing::error!(%fault, "service faulted too often; marked failed");
                    return self.fail().await;
                }
            }
        }
    }

    async fn start_instance(&mut self, component: &LoadedComponent) -> Result<Instance, Fault> {
        self.set_state(State::Starting);
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
        let mut instance = Instance::new(component, ctx, self.spec.deadline).await?;
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
        self.bus
            .processed(&msg, d.is_call(), took, result.as_ref().map(|_| ()));
        if let Err(e) = &result {
            tracing::warn!(
                id = %msg.id, from = %msg.source, action = %msg.action,
                payload = %PayloadPreview(&msg.payload), error = %e,
                "message not processed"
            );
        }
        if let Some(Err(e)) = d.answer(result) {
            self.bus.notify_failure(&msg, &self.spec.name, &e);
        }
        fault.map_or(Ok(()), Err)
    }

    fn dead_letter(&self, msg: &crate::message::Message, reason: &str) {
        self.counters.record_dead_lettered();
        self.bus.dead_letters().put(&self.spec.name, msg, reason);
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
            let Ok(d) = self.mailbox.try_recv() else {
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
            let d = tokio::select! {
                () = self.cancel.cancelled() => return,
                d = self.mailbox.recv() => d,
            };
            let Some(d) = d else { return };
            d.take_tick();
            let msg = d.msg.clone();
            let e = BusError::new(
                ErrorCode::Unavailable,
                format!("service `{}` has failed: {reason}", self.spec.name),
            );
            self.bus
                .processed(&msg, d.is_call(), Duration::ZERO, Err(&e));
            if let Some(Err(e)) = d.answer(Err(e)) {
                self.bus.notify_failure(&msg, &self.spec.name, &e);
            }
        }
    }
}

impl From<Fault> for WitError {
    fn from(f: Fault) -> Self {
        BusError::new(ErrorCode::ServiceFault, f.to_string()).into()
    }
}
