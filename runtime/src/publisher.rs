//! The compiler `busbar hub publish` makes precompiled artifacts with: the hub crate has no
//! wasmtime, so the `busbar` binary lends it this one. Each artifact is compiled here, on the
//! publisher's machine, for a node's target and the `[engine]` settings it announced.

use std::path::Path;

use busbar_base::digest::Fingerprint;
use busbar_hub::protocol::NodeEngine;
use busbar_hub::publish::ArtifactCompiler;

use crate::engine::EngineConfig;
use crate::fleet::node_engine;

/// Compiles components for other nodes' engines.
#[derive(Debug, Default)]
pub struct Compiler;

/// The engine settings a node announced, on top of the defaults (the settings not announced
/// do not change the code generated).
fn config_for(engine: &NodeEngine) -> EngineConfig {
    EngineConfig {
        max_memory_mib: engine.max_memory_mib,
        consume_fuel: engine.consume_fuel,
        pooling: engine.pooling,
        ..EngineConfig::default()
    }
}

impl ArtifactCompiler for Compiler {
    fn engine_for(&self, target: &str, node_config: Option<&Path>) -> anyhow::Result<NodeEngine> {
        let config = match node_config {
            Some(path) => crate::config::NodeConfig::load(path)?.engine,
            None => EngineConfig::default(),
        };
        Ok(node_engine(&config, target))
    }

    fn fingerprint(&self, target: &str, engine: &NodeEngine) -> Fingerprint {
        config_for(engine).fingerprint(target)
    }

    fn compile(&self, wasm: &[u8], target: &str, engine: &NodeEngine) -> anyhow::Result<Vec<u8>> {
        let config = config_for(engine);
        let compiling = config.build_for(Some(target))?;
        let (_, bytes) =
            crate::precompiled::compile(&compiling, wasm, target, &config.fingerprint(target))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_node_announces_compiles_to_its_own_fingerprint() {
        let mut config = EngineConfig {
            max_memory_mib: 32,
            consume_fuel: true,
            ..EngineConfig::default()
        };
        let target = "aarch64-unknown-linux-gnu";
        let announced = node_engine(&config, target);
        assert_eq!(
            Compiler.fingerprint(target, &announced),
            announced.fingerprint
        );
        assert_ne!(
            announced.fingerprint,
            config.fingerprint("x86_64-unknown-linux-gnu")
        );
        config.max_memory_mib = 16;
        assert_ne!(config.fingerprint(target), announced.fingerprint);
        // Settings that do not change the code do not change the fingerprint.
        config.max_memory_mib = 32;
        config.max_instances = 7;
        config.epoch_tick_ms = 3;
        assert_eq!(config.fingerprint(target), announced.fingerprint);
    }
}
