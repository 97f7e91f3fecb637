//! A service's store limits (memory, table elements, core instances), which say in the log
//! which manifest field refused a growth, so a `MemoryError` in the guest is never a mystery.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

/// Tables and memories a store may create: bounded by the pool and by `instances`; this
/// only keeps the count finite without the pooling allocator.
const MAX_TABLES_AND_MEMORIES: usize = 10_000;

/// The limits of one instance, and the last growth they refused.
#[derive(Debug)]
pub struct SandboxLimits {
    service: Arc<str>,
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    /// What the last refusal was, naming the manifest field; logged once per kind.
    refused: Option<String>,
    logged_memory: bool,
    logged_table: bool,
}

impl SandboxLimits {
    pub(super) fn new(
        service: Arc<str>,
        memory_bytes: usize,
        table_elements: usize,
        instances: usize,
    ) -> Self {
        Self {
            service,
            memory_bytes,
            table_elements,
            instances,
            refused: None,
            logged_memory: false,
            logged_table: false,
        }
    }

    /// The last growth refused, naming the field to raise (e.g. when instantiation failed
    /// because the component's initial memory is larger than the limit).
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// The core-instance limit (`limits.instances`).
    pub fn instances_limit(&self) -> usize {
        self.instances
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl ResourceLimiter for SandboxLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let why = format!(
                "memory: growing from {} to {} refused by limits.memory_mib = {} (raise it in \
                 the manifest, up to the node's engine.max_memory_mib)",
                mib(current),
                mib(desired),
                self.memory_bytes >> 20
            );
            if !self.logged_memory {
                self.logged_memory = true;
                tracing::warn!(service = %self.service, "{why}; the guest sees an allocation failure (Python: MemoryError)");
            }
            self.refused = Some(why);
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let why = format!(
                "table: growing from {current} to {desired} elements refused by \
                 limits.table_elements = {} (raise it in the manifest)",
                self.table_elements
            );
            if !self.logged_table {
                self.logged_table = true;
                tracing::warn!(service = %self.service, "{why}");
            }
            self.refused = Some(why);
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        MAX_TABLES_AND_MEMORIES
    }

    fn memories(&self) -> usize {
        MAX_TABLES_AND_MEMORIES
    }
}
