//! Capabilities, default deny. A service gets its own memory, its mailbox, `submit-message`
//! towards Com, its properties, timers and log; everything else is granted per service in the
//! manifest (`grants`): environment variables by name, a folder of its own under the node's
//! data dir, the services it may address, the addresses it may connect to, and the right to
//! use the control actions of the node's internal services.
//!
//! Components may import all of WASI 0.2 that wasmtime-wasi provides, sockets included (every
//! toolchain's standard library imports some; CPython imports all of `wasi:sockets`): what is
//! not granted fails when called (`access-denied`, Python's `PermissionError`), never at load.
//! A component that imports anything else is refused at load, naming the import.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The interface families a component may import. Toolchains' standard libraries import the
/// WASI ones; the sandbox gives them nothing beyond the grants (no files outside the data
/// folder, no variables beyond `env`, no address outside `network`).
pub const IMPORTABLE: &[&str] = &[
    "busbar:service/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
];

pub use busbar_base::grants::{DataAccess, GUEST_DATA_DIR, Grants};
pub use busbar_base::outbound::OutboundRule;

/// The grants of one service made concrete for its instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Granted {
    /// The variables and their values.
    pub env: Vec<(String, String)>,
    /// The host folder behind `/data`, and how it may be used.
    pub data: Option<(PathBuf, DataAccess)>,
    /// Who it may address.
    pub destinations: Vec<String>,
    /// Control actions allowed.
    pub privileged: bool,
    /// Addresses it may connect and send to.
    pub network: Vec<OutboundRule>,
}

impl Granted {
    /// Resolves `grants` of service `name`: reads the variables from this process's
    /// environment and creates the data folder under `data_root`.
    pub fn resolve(name: &str, grants: &Grants, data_root: &Path) -> anyhow::Result<Self> {
        let env = grants
            .env
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        let data = match grants.data {
            None => None,
            Some(access) => {
                let dir = data_root.join("services").join(name);
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!(
                        "service `{name}`: cannot create its data folder {}",
                        dir.display()
                    )
                })?;
                Some((dir, access))
            }
        };
        Ok(Self {
            env,
            data,
            destinations: grants.destinations.clone(),
            privileged: grants.privileged,
            network: grants.network.clone(),
        })
    }

    /// Whether the service may address `destination` (`*` is broadcast).
    pub fn may_address(&self, destination: &str) -> bool {
        self.destinations
            .iter()
            .any(|d| d == "*" || d == destination)
    }
}

/// The first import of `component` outside [`IMPORTABLE`], if any.
pub fn ungranted_import(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| !IMPORTABLE.iter().any(|p| name.starts_with(p)))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let g = Granted::resolve("svc", &Grants::default(), dir.path()).unwrap();
        assert_eq!(g, Granted::default());
        assert!(!g.may_address("anyone"));
        assert!(!dir.path().join("services").exists());
    }

    #[test]
    fn grants_resolve_to_values_and_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let grants: Grants = toml::from_str(
            "env = [\"PATH\", \"BUSBAR_SURELY_UNSET\"]\ndata = \"read-only\"\ndestinations = [\"a\"]\n",
        )
        .unwrap();
        let g = Granted::resolve("svc", &grants, dir.path()).unwrap();
        assert_eq!(g.env.len(), 1, "unset variables are left out");
        assert_eq!(g.env[0].0, "PATH");
        let (path, access) = g.data.clone().unwrap();
        assert!(path.ends_with("services/svc") && path.is_dir());
        assert_eq!(access, DataAccess::ReadOnly);
        assert!(g.may_address("a") && !g.may_address("b") && !g.may_address("*"));
        let e = toml::from_str::<Grants>("sockets = true\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `sockets`"), "{e}");
        let e = toml::from_str::<Grants>("network = [\"plc.local:502\"]\n").unwrap_err();
        assert!(e.to_string().contains("name lookup is not granted"), "{e}");
    }
}
