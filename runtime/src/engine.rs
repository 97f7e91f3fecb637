//! The node's one wasmtime `Engine` and the thread that drives its epochs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine settings from the node config (`[engine]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Instances that may exist at once (services, plus one per restart or swap in flight).
    pub max_instances: u32,
    /// Largest linear memory any one service may have, in MiB. Also the size of each memory
    /// slot the pooling allocator reserves: `max_instances × max_memory_mib` is the virtual
    /// address space reserved for memories.
    pub max_memory_mib: u32,
    /// How often wasm checks its deadline and yields, in ms.
    pub epoch_tick_ms: u64,
    /// Use the pooling allocator (fast instantiation, reserved address space up front).
    pub pooling: bool,
    /// Count fuel, so services can be given `limits.fuel` (costs some speed for all).
    pub consume_fuel: bool,
}

impl Default for EngineConfig {
    /// 64-bit: 128 instances of at most 16 MiB, 2 GiB of reserved (not committed) address
    /// space, which a 1 GiB board with a 39-bit address space holds easily (and a node of 100
    /// services fits `ulimit -v 4194304`). 32-bit: 32 instances (512 MiB reserved), so the
    /// pool fits a 3 GiB user address space. 16 MiB is enough for a componentize-py service
    /// (12.4 MiB at start); one that needs more raises this and its `limits.memory_mib`.
    fn default() -> Self {
        Self {
            max_instances: if cfg!(target_pointer_width = "32") {
                32
            } else {
                128
            },
            max_memory_mib: 16,
            epoch_tick_ms: 10,
            pooling: true,
            consume_fuel: false,
        }
    }
}

/// The wasmtime this busbar was built with (from Cargo.lock).
pub const WASMTIME_VERSION: &str = env!("BUSBAR_WASMTIME_VERSION");

/// Whether this busbar can compile components (the `compiler` feature); without it, it runs
/// only precompiled artifacts.
pub const HAS_COMPILER: bool = cfg!(feature = "compiler");

/// Size of the fiber stack each instance runs on.
const ASYNC_STACK: usize = 1 << 20;
/// Deepest wasm stack allowed within it.
const WASM_STACK: usize = 512 << 10;
/// Guard pages after each linear memory.
const GUARD: u64 = 64 << 10;

impl EngineConfig {
    /// Checks a service's limits against this engine: memory within `engine.max_memory_mib`,
    /// fuel only with `engine.consume_fuel`. The error names the field and the setting.
    pub fn fit(&self, limits: &busbar_base::limits::Limits) -> Result<(), String> {
        let max_mib = self.max_memory_mib;
        if let Some(mib) = limits.memory_mib
            && mib > max_mib
        {
            return Err(format!(
                "memory_mib: {mib} exceeds engine.max_memory_mib = {max_mib} of the node config \
                 (raise it there, or lower limits.memory_mib)"
            ));
        }
        if limits.fuel.is_some() && !self.consume_fuel {
            return Err("fuel: needs engine.consume_fuel = true in the node config".into());
        }
        Ok(())
    }

    /// busbar's fingerprint of the engine this config builds for node target `triple`: the
    /// busbar and wasmtime versions, wasmtime's compilation target and every setting that changes the
    /// code it generates. The same on every machine, with or without a compiler: a node
    /// announces its own, and an artifact compiled for another fingerprint is not used
    /// (wasmtime then checks the artifact again as it loads it).
    pub fn fingerprint(&self, triple: &str) -> busbar_base::digest::Fingerprint {
        let description = format!(
            "busbar-engine-v1 busbar={} wasmtime={} target={} memory_reservation={} \
             guard={GUARD} growth_reservation=0 epochs=true fuel={} pooling={} \
             component_model=true",
            env!("CARGO_PKG_VERSION"),
            WASMTIME_VERSION,
            crate::precompiled::engine_target(triple),
            self.memory_bytes(),
            self.consume_fuel,
            self.pooling,
        );
        busbar_base::digest::Fingerprint::of(&description)
    }

    fn memory_bytes(&self) -> u64 {
        u64::from(self.max_memory_mib) << 20
    }

    /// Builds the engine for this machine.
    pub fn build(&self) -> anyhow::Result<Engine> {
        self.build_for(None)
    }

    /// Builds the engine, or one that compiles for the node target `triple` (as `busbar
    /// compile --target` does; needs the `cross-compile` feature for foreign targets).
    pub fn build_for(&self, triple: Option<&str>) -> anyhow::Result<Engine> {
        anyhow::ensure!(
            self.max_instances > 0,
            "engine.max_instances must be at least 1"
        );
        anyhow::ensure!(
            self.max_memory_mib > 0,
            "engine.max_memory_mib must be at least 1"
        );
        anyhow::ensure!(
            self.epoch_tick_ms > 0,
            "engine.epoch_tick_ms must be at least 1"
        );
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false)
            .async_stack_size(ASYNC_STACK)
            .max_wasm_stack(WASM_STACK)
            .memory_reservation(self.memory_bytes())
            .memory_guard_size(GUARD)
            .memory_reservation_for_growth(0)
            .consume_fuel(self.consume_fuel);
        if let Some(triple) = triple {
            let target = crate::precompiled::engine_target(triple);
            config
                .target(target)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("compiling for `{triple}` (wasmtime target `{target}`)")
                })?;
        }
        if self.pooling {
            let n = self.max_instances;
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(n)
                .total_core_instances(n * 8)
                // One linear memory per instance (what Rust and C guests have): the memory
                // slots are what reserves address space, `n × max_memory_mib`.
                .total_memories(n)
                .total_tables(n * 8)
                .total_stacks(n)
                .max_memory_size(self.memory_bytes() as usize)
                .max_unused_warm_slots(n.min(16));
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Engine::new(&config).map_err(anyhow::Error::from).with_context(|| match triple {
            Some(_) if !HAS_COMPILER => {
                "this busbar was built without a compiler (the gateway build): compile on a \
                 machine with the full build"
                    .to_owned()
            }
            Some(t) if t != crate::precompiled::HOST_TARGET && !cfg!(feature = "cross-compile") => {
                format!("this busbar was built without the `cross-compile` feature: it can only compile for {}", crate::precompiled::HOST_TARGET)
            }
            _ => "creating the wasm engine".to_owned(),
        })
    }
}

/// Increments the engine's epoch every tick on a thread of its own, so deadlines fire even
/// when every async worker is busy running wasm. Stops when dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts ticking `engine` every `tick`.
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("busbar-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
