//! The manifest: which services a node runs, from which components, with what configuration
//! and limits. Read from TOML or JSON; the same type will come from the hub.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub use busbar_base::limits::{FullPolicy, LIMIT_RANGES, Limits};
pub use busbar_base::names::{RESERVED_NAMES, check_name};

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
    pub grants: busbar_base::grants::Grants,
    /// MQTT subscriptions made before `start`, as if the service had called `subscribe`
    /// (`subscribe = [{ filter = "/zigbee2mqtt/+/temperature", broker = "field" }]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<busbar_base::grants::Subscription>,
    /// The group it is shared in across the fabric (`shared = "workers"`): messages sent to
    /// `{name}@{group}` reach one of the group's instances, on whichever node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<busbar_base::address::Place>,
}

fn yes() -> bool {
    true
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
    /// Checks every entry's limits against the node's engine ([`EngineConfig::fit`]).
    ///
    /// [`EngineConfig::fit`]: crate::engine::EngineConfig::fit
    pub fn fit_engine(&self, engine: &crate::engine::EngineConfig) -> Result<(), String> {
        for (i, s) in self.services.iter().enumerate() {
            engine
                .fit(&s.limits)
                .map_err(|p| format!("services[{i}] (`{}`).limits.{p}", s.name))?;
        }
        Ok(())
    }

    /// Reads a manifest file: JSON when it ends in `.json`, TOML otherwise. Relative
    /// component paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let origin = path.display().to_string();
        let text = busbar_base::read_file::read_text_bounded(
            path,
            busbar_base::read_file::MAX_CONFIG_BYTES,
        )
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
            busbar_base::grants::check_topics(&s.grants.topics, &s.subscribe)
                .map_err(|p| format!("{at}.{p}"))?;
            busbar_base::grants::check_destinations(&s.grants.destinations)
                .map_err(|p| format!("{at}.{p}"))?;
        }
        Ok(())
    }
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
