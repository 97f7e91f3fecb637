//! What a node tells the hub about itself at sign-in.

use super::protocol::{NodeEngine, SignIn};
use crate::engine::EngineConfig;

/// The node's identity: its id, host name, target, busbar version, MAC addresses and its
/// engine (for precompiled artifacts).
pub fn identity(node_id: &str, engine: &EngineConfig) -> SignIn {
    SignIn {
        engine: Some(node_engine(engine, crate::precompiled::HOST_TARGET)),
        node_id: node_id.to_owned(),
        hostname: hostname(),
        target: crate::precompiled::HOST_TARGET.to_owned(),
        runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
        macs: macs(),
    }
}

/// What a node with `config`'s `[engine]` settings at `target` announces.
pub fn node_engine(config: &EngineConfig, target: &str) -> NodeEngine {
    NodeEngine {
        fingerprint: config.fingerprint(target),
        max_memory_mib: config.max_memory_mib,
        consume_fuel: config.consume_fuel,
        pooling: config.pooling,
        compiler: crate::engine::HAS_COMPILER,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// MAC addresses of the network interfaces (Linux: `/sys/class/net/*/address`), without
/// the all-zero ones of loopback and virtual links.
fn macs() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut macs: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && a != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_identity_names_this_build() {
        let who = super::identity("gw", &crate::engine::EngineConfig::default());
        assert_eq!(who.node_id, "gw");
        assert_eq!(who.target, crate::precompiled::HOST_TARGET);
        assert!(!who.hostname.is_empty());
        let engine = who.engine.expect("announced");
        assert_eq!(engine.compiler, crate::engine::HAS_COMPILER);
        assert_eq!(engine.max_memory_mib, 16);
        assert!(who.macs.iter().all(|m| m.len() == 17), "{:?}", who.macs);
    }
}
