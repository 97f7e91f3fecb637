//! The manifest: which services a node runs, from which components, with what configuration
//! and limits. Read from TOML or JSON; the same type will come from the hub.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bus::OnFull;

/// Names the node keeps for its internal services.
/// (`admin` is the source of what the admin API sends.)
pub const RESERVED_NAMES: &[&str] = &["com", "logger", "busbar", "orchestrator", "hub", "admin"];

/// The services of a node.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The services, in start order.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
}

/// One service in a manifest.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Name on the bus: lowercase letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Path of the `.wasm` component, relative to the manifest's folder.
    pub component: PathBuf,
    /// Expected sha256 of the component file (hex); checked before it is used.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Artifacts made by `busbar compile` from this component, for one or more targets. The
    /// node uses the one for its own target when its engine accepts it, else compiles the
    /// component. They are native code: list only artifacts from a source you trust.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precompiled: Vec<PathBuf>,
    /// Whether the node runs it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Configuration the service reads with `get-property`.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// Capabilities beyond the sandbox (none by default).
    #[serde(default)]
    pub grants: crate::grants::Grants,
}

impl ServiceEntry {
    /// Where the service's code comes from.
    pub fn source(&self) -> crate::component::ComponentSource {
        crate::component::ComponentSource {
            path: self.component.clone(),
            sha256: self.sha256.clone(),
            precompiled: self.precompiled.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Per-service limits; every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest linear memory in MiB (default: the engine's `max_memory_mib`).
    pub memory_mib: Option<u32>,
    /// Deadline of each export call in ms (time spent waiting on other services not counted).
    pub deadline_ms: u64,
    /// Messages the mailbox holds.
    pub mailbox: usize,
    /// When the mailbox is full: `block` (senders wait up to `block_ms`) or `refuse`.
    pub on_full: FullPolicy,
    /// How long a sender waits for room with `on_full = "block"`, in ms.
    pub block_ms: u64,
    /// Messages per second it may submit (`submit-message`, `submit-action`, `call`), with
    /// bursts of as many; beyond that each submit waits its turn. 0: no quota.
    pub submit_per_sec: u32,
    /// Fuel (roughly, wasm instructions) each export call may burn; needs
    /// `engine.consume_fuel = true`. None: only the deadline bounds a call.
    pub fuel: Option<u64>,
    /// Core wasm instances its component may create.
    pub instances: usize,
    /// Elements each of its tables may hold.
    pub table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: None,
            deadline_ms: 1000,
            mailbox: 64,
            on_full: FullPolicy::Block,
            block_ms: 1000,
            submit_per_sec: 10_000,
            fuel: None,
            instances: 16,
            table_elements: 20_000,
        }
    }
}

/// What senders experience when a mailbox is full.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// Wait for room (backpressure).
    Block,
    /// Fail at once with `queue-full`.
    Refuse,
}

/// The range each limit may take; outside it a manifest is refused (by `busbar check`, `run`,
/// SIGHUP, the hub's publish and the node's fleet client alike), naming the field.
pub const LIMIT_RANGES: &[(&str, u64, u64)] = &[
    ("memory_mib", 1, 4096),
    ("deadline_ms", 1, 3_600_000),
    ("mailbox", 1, 100_000),
    ("block_ms", 0, 3_600_000),
    ("submit_per_sec", 0, 10_000_000),
    ("fuel", 1, u64::MAX),
    ("instances", 1, 10_000),
    ("table_elements", 1, 10_000_000),
];

impl Limits {
    /// Checks every limit against [`LIMIT_RANGES`]; the error starts with the field's name,
    /// e.g. `mailbox: 2305843009213693952 is out of range (1 to 100000)`.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            ("memory_mib", self.memory_mib.map(u64::from)),
            ("deadline_ms", Some(self.deadline_ms)),
            ("mailbox", Some(self.mailbox as u64)),
            ("block_ms", Some(self.block_ms)),
            ("submit_per_sec", Some(u64::from(self.submit_per_sec))),
            ("fuel", self.fuel),
            ("instances", Some(self.instances as u64)),
            ("table_elements", Some(self.table_elements as u64)),
        ];
        for (field, value) in values {
            let Some(v) = value else { continue };
            let Some(&(_, min, max)) = LIMIT_RANGES.iter().find(|(f, ..)| *f == field) else {
                continue;
            };
            if !(min..=max).contains(&v) {
                return Err(format!("{field}: {v} is out of range ({min} to {max})"));
            }
        }
        Ok(())
    }

    /// Checks the limits against the node's engine: memory within `engine.max_memory_mib`,
    /// fuel only with `engine.consume_fuel`. The error names the field and the setting.
    pub fn fit_engine(&self, engine: &crate::engine::EngineConfig) -> Result<(), String> {
        let max_mib = engine.max_memory_mib;
        if let Some(mib) = self.memory_mib
            && mib > max_mib
        {
            return Err(format!(
                "memory_mib: {mib} exceeds engine.max_memory_mib = {max_mib} of the node config \
                 (raise it there, or lower limits.memory_mib)"
            ));
        }
        if self.fuel.is_some() && !engine.consume_fuel {
            return Err("fuel: needs engine.consume_fuel = true in the node config".into());
        }
        Ok(())
    }

    /// The bus policy these limits describe.
    pub fn on_full(&self) -> OnFull {
        match self.on_full {
            FullPolicy::Block => OnFull::Block(Duration::from_millis(self.block_ms)),
            FullPolicy::Refuse => OnFull::Refuse,
        }
    }
}

/// A manifest that could not be read or is not valid; names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("manifest {origin}: {problem}")]
pub struct ManifestError {
    /// The file (or `<bundled demo>`).
    pub origin: String,
    /// What is wrong, naming the field.
    pub problem: String,
}

impl Manifest {
    /// Checks every entry's limits against the node's engine ([`Limits::fit_engine`]).
    pub fn fit_engine(&self, engine: &crate::engine::EngineConfig) -> Result<(), String> {
        for (i, s) in self.services.iter().enumerate() {
            s.limits
                .fit_engine(engine)
                .map_err(|p| format!("services[{i}] (`{}`).limits.{p}", s.name))?;
        }
        Ok(())
    }

    /// Reads a manifest file: JSON when it ends in `.json`, TOML otherwise. Relative
    /// component paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let origin = path.display().to_string();
        let text = crate::read_file::read_text_bounded(path, crate::read_file::MAX_CONFIG_BYTES)
            .map_err(|e| ManifestError {
                origin: origin.clone(),
                problem: format!("cannot read it: {e}"),
            })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, json, &origin, base)
    }

    /// Parses manifest text (`json` or TOML) from `origin`, resolving paths against `base`.
    pub fn parse(text: &str, json: bool, origin: &str, base: &Path) -> Result<Self, ManifestError> {
        let err = |problem: String| ManifestError {
            origin: origin.to_owned(),
            problem,
        };
        let mut manifest: Manifest = if json {
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?
        };
        manifest.validate().map_err(err)?;
        for s in &mut manifest.services {
            for path in std::iter::once(&mut s.component).chain(&mut s.precompiled) {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        Ok(manifest)
    }

    /// Checks every entry: names, digests, limits ([`Limits::validate`]). What this refuses,
    /// every way of giving a node a manifest refuses, with the same words.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            check_name(&s.name).map_err(|p| format!("{at}.name: {p}"))?;
            let at = format!("{at} (`{}`)", s.name);
            if !seen.insert(s.name.as_str()) {
                return Err(format!("{at}.name: another service already has this name"));
            }
            if s.component.as_os_str().is_empty() {
                return Err(format!("{at}.component: must name a .wasm file"));
            }
            if let Some(d) = &s.sha256
                && (d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!("{at}.sha256: expected 64 hex digits, got `{d}`"));
            }
            s.limits
                .validate()
                .map_err(|p| format!("{at}.limits.{p}"))?;
        }
        Ok(())
    }
}

/// Checks a service name: 1 to 64 lowercase letters, digits, `-`, `_`, `.`, starting with a
/// letter or a digit, and not one of [`RESERVED_NAMES`].
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("`{name}` must be 1 to 64 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(format!(
            "`{name}` may hold only lowercase letters, digits, `-`, `_` and `.`"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("`{name}` must start with a letter or a digit"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "`{name}` is reserved for the node's internal services"
        ));
    }
    Ok(())
}

/// A configuration value as `get-property` returns it: strings as they are, others as JSON.
pub fn property_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
