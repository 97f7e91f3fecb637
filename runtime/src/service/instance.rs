//! One live wasm instance of a service: its own `Store`, memory limit and per-call deadline.

use std::fmt;
use std::time::{Duration, Instant};

use wasmtime::component::TypedFunc;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::Service;
use crate::component::LoadedComponent;
use crate::host::{HostContext, HostState};
use crate::message::{Message, Reply, WitError};

/// Why an instance can no longer be used. The instance must be dropped after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`, ...).
    Trap(String),
    /// An export call ran past its deadline.
    Deadline(Duration),
    /// The guest's `start` returned an error.
    StartFailed(String),
    /// Instantiation or the host failed.
    Host(String),
    /// The engine had no free slot for another instance (its pool is full for now).
    EngineFull(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Trap(t) => write!(f, "trapped: {t}"),
            Fault::Deadline(d) => write!(
                f,
                "ran past its deadline of {} ms (limits.deadline_ms)",
                d.as_millis()
            ),
            Fault::StartFailed(e) => write!(f, "start failed: {e}"),
            Fault::Host(e) => write!(f, "{e}"),
            Fault::EngineFull(e) => write!(
                f,
                "{e}: the node's engine has no free slot (engine.max_instances in the node config)"
            ),
        }
    }
}

/// The error an epoch callback raises when a call's deadline has passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A running instance of a service.
pub struct Instance {
    store: Store<HostState>,
    service: Service,
    budget: Duration,
    /// Fuel per export call, when the engine counts fuel.
    fuel: Option<u64>,
    /// `snapshot` and `restore`, when the component exports the `stateful-service` world.
    stateful: Option<Stateful>,
}

/// The two exports of the `stateful-service` world.
struct Stateful {
    snapshot: TypedFunc<(), (Vec<u8>,)>,
    restore: TypedFunc<(Vec<u8>,), (Result<(), String>,)>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("service", &self.store.data().service)
            .finish()
    }
}

impl Instance {
    /// Instantiates `component` in a fresh store. `budget` bounds each export call.
    pub async fn new(
        component: &LoadedComponent,
        ctx: HostContext,
        budget: Duration,
    ) -> Result<Self, Fault> {
        let fuel = ctx.sandbox.fuel;
        let state = HostState::new(ctx).map_err(|e| Fault::Host(format!("{e:#}")))?;
        let mut store = Store::new(component.engine(), state);
        if store.get_fuel().is_ok() {
            let _ = store.set_fuel(fuel.unwrap_or(u64::MAX));
        }
        store.limiter(|s| &mut s.limits);
        // Every epoch tick while wasm runs: yield to the scheduler so one busy service cannot
        // hold a worker thread, and trap once the call's deadline has passed.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                return Err(DeadlineExceeded.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.data_mut().arm_deadline(budget);
        store.set_epoch_deadline(1);
        let instance = component
            .pre()
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| instantiation_fault(e, store.data(), budget))?;
        let service = Service::new(&mut store, &instance).map_err(|e| classify(e, budget))?;
        let snapshot = instance.get_typed_func(&mut store, "snapshot");
        let restore = instance.get_typed_func(&mut store, "restore");
        let stateful = match (snapshot, restore) {
            (Ok(snapshot), Ok(restore)) => Some(Stateful { snapshot, restore }),
            (Err(_), Err(_)) => None,
            (s, r) => {
                let problem =
                    |name: &str, e: Option<wasmtime::Error>| e.map(|e| format!("`{name}`: {e:#}"));
                let problems: Vec<String> =
                    [problem("snapshot", s.err()), problem("restore", r.err())]
                        .into_iter()
                        .flatten()
                        .collect();
                tracing::warn!(
                    "the component exports only part of world stateful-service ({}); its state is not handed over across swaps",
                    problems.join(", ")
                );
                None
            }
        };
        Ok(Self {
            store,
            service,
            budget,
            fuel,
            stateful,
        })
    }

    /// Whether the component exports `snapshot` and `restore` (world `stateful-service`).
    pub fn is_stateful(&self) -> bool {
        self.stateful.is_some()
    }

    /// Calls the `snapshot` export: the state to hand to the next version (`None` when the
    /// component does not export it).
    pub async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, Fault> {
        let Some(f) = self.stateful.as_ref().map(|s| s.snapshot) else {
            return Ok(None);
        };
        self.arm();
        let (state,) = f
            .call_async(&mut self.store, ())
            .await
            .map_err(|e| classify(e, self.budget))?;
        Ok(Some(state))
    }

    /// Calls the `restore` export with the previous version's snapshot; `Ok(false)` when the
    /// component does not export it. An error from the service fails the start.
    pub async fn restore(&mut self, state: Vec<u8>) -> Result<bool, Fault> {
        let Some(f) = self.stateful.as_ref().map(|s| s.restore) else {
            return Ok(false);
        };
        self.arm();
        let (result,) = f
            .call_async(&mut self.store, (state,))
            .await
            .map_err(|e| classify(e, self.budget))?;
        result
            .map(|()| true)
            .map_err(|e| Fault::StartFailed(format!("restore failed: {e}")))
    }

    fn arm(&mut self) {
        self.store.data_mut().arm_deadline(self.budget);
        self.store.set_epoch_deadline(1);
        self.refuel();
    }

    /// Gives the call its fuel budget (only when the engine counts fuel).
    fn refuel(&mut self) {
        if self.store.get_fuel().is_ok() {
            let _ = self.store.set_fuel(self.fuel.unwrap_or(u64::MAX));
        }
    }

    /// Calls the `start` export.
    pub async fn start(&mut self) -> Result<(), Fault> {
        self.arm();
        match self.service.call_start(&mut self.store).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Fault::StartFailed(e)),
            Err(e) => Err(classify(e, self.budget)),
        }
    }

    /// Calls the `process` export. The outer error is a fault of the instance; the inner one
    /// is the service's own answer.
    pub async fn process(
        &mut self,
        msg: &Message,
    ) -> Result<Result<Option<Reply>, WitError>, Fault> {
        self.arm();
        self.service
            .call_process(&mut self.store, msg)
            .await
            .map_err(|e| classify(e, self.budget))
    }

    /// Calls the `state-update` export with the desired state as JSON.
    pub async fn state_update(&mut self, state: &str) -> Result<(), Fault> {
        self.arm();
        self.service
            .call_state_update(&mut self.store, state)
            .await
            .map_err(|e| classify(e, self.budget))
    }

    /// Calls the `stop` export.
    pub async fn stop(&mut self) -> Result<(), Fault> {
        self.arm();
        self.service
            .call_stop(&mut self.store)
            .await
            .map_err(|e| classify(e, self.budget))
    }
}

fn classify(e: wasmtime::Error, budget: Duration) -> Fault {
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return Fault::Deadline(budget);
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Fault::Trap(format!(
            "the guest exited with status {} (its log says why)",
            exit.0
        ));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return Fault::Trap(format!("{trap} (limits.fuel)"));
        }
        return Fault::Trap(trap.to_string());
    }
    Fault::Host(format!("{e:#}"))
}

/// Why instantiating failed, naming the manifest field (or engine setting) to raise when a
/// limit refused it.
fn instantiation_fault(e: wasmtime::Error, state: &HostState, budget: Duration) -> Fault {
    let text = format!("{e:#}");
    if text.contains("instance count too high") {
        return Fault::Host(format!(
            "{text}: the component needs more core instances than limits.instances = {} \
             (raise it in the manifest)",
            state.limits.instances_limit()
        ));
    }
    if let Some(refused) = state.limits.refused() {
        return Fault::Host(format!("{text}: {refused}"));
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Fault::EngineFull(text);
    }
    if text.contains("exceeds the limit") {
        return Fault::Host(format!(
            "{text}: the node's engine refused it (engine.max_memory_mib in the node config)"
        ));
    }
    classify(e, budget)
}
