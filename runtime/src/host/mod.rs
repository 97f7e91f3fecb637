//! What a service instance sees of the node: the state inside its `Store` and the
//! implementations of the `busbar:service` imports.

mod bus_imports;
mod config_imports;
mod limiter;
mod log_imports;
mod network;
mod stdio;
mod timers;
mod topics_imports;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bus::{Bus, Delivery};
use crate::grants::{DataAccess, GUEST_DATA_DIR, Granted};
use crate::observe::ServiceCounters;

pub use limiter::SandboxLimits;
pub(crate) use network::gate_socket_creation;
pub use stdio::GuestOutput;
pub use timers::Timers;

/// Everything one instance's `Store` holds.
pub struct HostState {
    pub(crate) service: Arc<str>,
    pub(crate) bus: Bus,
    pub(crate) properties: Arc<BTreeMap<String, String>>,
    pub(crate) counters: Arc<ServiceCounters>,
    pub(crate) timers: Timers,
    /// When the export call in progress must have returned; time the guest spends waiting in
    /// `call` or on a full mailbox is added back, so only its own work counts.
    pub(crate) deadline: Instant,
    pub(crate) limits: SandboxLimits,
    pub(crate) granted: Arc<Granted>,
    pub(crate) quota: Option<Arc<SubmitQuota>>,
    /// Whether a socket creation was refused (and logged) already.
    socket_refused: bool,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// How many messages a second a service may submit.
pub type SubmitQuota = governor::DefaultDirectRateLimiter;

/// A service's limits beyond its memory.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Core instances its component may create.
    pub instances: usize,
    /// Elements each table may hold.
    pub table_elements: usize,
    /// Fuel per export call (when the engine counts fuel).
    pub fuel: Option<u64>,
    /// Its submit quota, shared by its instances (none: unlimited).
    pub quota: Option<Arc<SubmitQuota>>,
}

impl Default for Sandbox {
    /// What a manifest entry without `limits` gets.
    fn default() -> Self {
        Self::from(&busbar_base::limits::Limits::default())
    }
}

impl From<&busbar_base::limits::Limits> for Sandbox {
    /// The store limits, fuel and a fresh submit quota (`submit_per_sec` a second with
    /// bursts of as many; 0: none) of a manifest entry.
    fn from(limits: &busbar_base::limits::Limits) -> Self {
        let quota = std::num::NonZeroU32::new(limits.submit_per_sec).map(|n| {
            Arc::new(governor::RateLimiter::direct(
                governor::Quota::per_second(n).allow_burst(n),
            ))
        });
        Self {
            instances: limits.instances,
            table_elements: limits.table_elements,
            fuel: limits.fuel,
            quota,
        }
    }
}

/// What the node gives a new instance.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// The service's name.
    pub service: Arc<str>,
    /// The bus it sends on.
    pub bus: Bus,
    /// The service's own mailbox, for timer ticks.
    pub mailbox: mpsc::Sender<Delivery>,
    /// Configuration properties, rendered as strings.
    pub properties: Arc<BTreeMap<String, String>>,
    /// Counters shared with the node's status.
    pub counters: Arc<ServiceCounters>,
    /// Maximum linear memory in bytes.
    pub memory_bytes: usize,
    /// Limits beyond memory.
    pub sandbox: Sandbox,
    /// Its capabilities.
    pub granted: Arc<Granted>,
}

impl HostState {
    /// State for a new instance: no network, filesystem or environment beyond its grants;
    /// stdout and stderr go to the log under the service's name.
    pub fn new(ctx: HostContext) -> anyhow::Result<Self> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput::new(ctx.service.clone(), "stdout"))
            .stderr(GuestOutput::new(ctx.service.clone(), "stderr"))
            .allow_blocking_current_thread(false);
        network::confine(&mut wasi, ctx.service.clone(), &ctx.granted.network);
        for (k, v) in &ctx.granted.env {
            wasi.env(k, v);
        }
        if let Some((dir, access)) = &ctx.granted.data {
            let perms = match access {
                DataAccess::ReadOnly => FsPerms::ReadOnly,
                DataAccess::ReadWrite => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(dir, GUEST_DATA_DIR, perms)
                .map_err(anyhow::Error::from)?;
        }
        let wasi = wasi.build();
        let limits = SandboxLimits::new(
            ctx.service.clone(),
            ctx.memory_bytes,
            ctx.sandbox.table_elements,
            ctx.sandbox.instances,
        );
        Ok(Self {
            timers: Timers::new(ctx.service.clone(), ctx.bus.clone(), ctx.mailbox),
            service: ctx.service,
            bus: ctx.bus,
            properties: ctx.properties,
            counters: ctx.counters,
            deadline: Instant::now(),
            limits,
            quota: ctx.sandbox.quota,
            socket_refused: false,
            granted: ctx.granted,
            wasi,
            table: ResourceTable::new(),
        })
    }

    /// Arms the deadline for the export call about to start.
    pub(crate) fn arm_deadline(&mut self, budget: Duration) {
        self.deadline = Instant::now() + budget;
    }

    /// Gives back to the deadline the time the guest spent waiting on the node since `since`.
    pub(crate) fn credit_wait(&mut self, since: Instant) {
        self.deadline += since.elapsed();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::bindings::busbar::service::types::Host for HostState {}
