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

impl SandboxLimits {
    /// Refuses a growth for `why`, logging the first refusal of each kind (`logged`).
    fn refuse(&mut self, why: String, memory: bool) -> wasmtime::Result<bool> {
        let logged = if memory {
            &mut self.logged_memory
        } else {
            &mut self.logged_table
        };
        if !std::mem::replace(logged, true) {
            let guest = if memory {
                "; the guest sees an allocation failure (Python: MemoryError)"
            } else {
                ""
            };
            tracing::warn!(service = %self.service, "{why}{guest}");
        }
        self.refused = Some(why);
        Ok(false)
    }
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
            return self.refuse(why, true);
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
            return self.refuse(why, false);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field_to_raise() {
        let mut l = SandboxLimits::new("svc".into(), 16 << 20, 100, 8);
        assert!(l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(l.refused().is_none());
        assert!(!l.memory_growing(16 << 20, 17 << 20, None).unwrap());
        assert!(l.refused().unwrap().contains("limits.memory_mib = 16"));
        assert!(!l.table_growing(10, 101, None).unwrap());
        assert!(l.refused().unwrap().contains("limits.table_elements = 100"));
        assert!(
            !l.memory_growing(0, 1 << 20, Some(1 << 19)).unwrap(),
            "the module's own maximum holds too"
        );
        assert_eq!(l.instances_limit(), 8);
    }
}
