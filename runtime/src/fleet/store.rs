//! The node's fleet state on disk (`<data_dir>/fleet`): downloaded components by sha256
//! (`blobs/`), and `state.json` with the last manifest the node fully downloaded, the
//! versions that failed, and the last version of each service that ran well. A node that
//! cannot reach its hub at boot starts from it.

use busbar_base::files::write_atomic;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::protocol::{FleetManifest, FleetService};
use crate::manifest::{Manifest, ServiceEntry};
use busbar_base::digest::{Fingerprint, Sha256};

/// What the node remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// ETag of `manifest`.
    pub etag: Option<String>,
    /// The last manifest whose components were all downloaded and verified.
    pub manifest: Option<FleetManifest>,
    /// Versions that failed on this node (rolled back or refused), by service.
    pub bad: BTreeMap<String, BTreeSet<String>>,
    /// The last version of each service that ran past its probation.
    pub good: BTreeMap<String, FleetService>,
    /// What the node was last told to run of each service (after substitutions).
    pub applied: BTreeMap<String, FleetService>,
    /// What it ran of each service before that: where a rollback goes back to.
    pub previous: BTreeMap<String, FleetService>,
}

impl FleetState {
    /// Whether `sha256` failed as service `name` here.
    pub fn is_bad(&self, name: &str, sha256: &Sha256) -> bool {
        self.bad
            .get(name)
            .is_some_and(|b| b.contains(sha256.as_str()))
    }

    /// What the node should run of `manifest`: each service at its wanted version, unless
    /// that version failed here or was `refused` now (bad signature, digest or component);
    /// then its last good entry, else the entry it runs now, else not at all. An earlier
    /// entry is taken whole (config, limits and grants were signed with its version).
    pub fn effective(&self, manifest: &FleetManifest, refused: &BTreeSet<Sha256>) -> FleetManifest {
        let mut out = manifest.clone();
        out.services = manifest
            .services
            .iter()
            .filter_map(|s| {
                let usable = |v: &FleetService| !self.is_bad(&v.name, &v.sha256) && !refused.contains(&v.sha256);
                // A disabled service does not run whatever its version.
                if !s.enabled || usable(s) {
                    return Some(s.clone());
                }
                let instead = [self.good.get(&s.name), self.applied.get(&s.name)]
                    .into_iter()
                    .flatten()
                    .find(|v| usable(v));
                match instead {
                    Some(v) => {
                        tracing::warn!(service = %s.name, wanted = s.sha256.short(), running = v.sha256.short(),
                            "the wanted version cannot be used here; keeping an earlier one");
                        Some(v.clone())
                    }
                    None => {
                        tracing::error!(service = %s.name, wanted = s.sha256.short(),
                            "the wanted version cannot be used here and no earlier one is known; not run");
                        None
                    }
                }
            })
            .collect();
        out
    }

    /// Records `manifest` as what the node runs now.
    pub fn record_applied(&mut self, manifest: &FleetManifest) {
        let mut applied = BTreeMap::new();
        for s in &manifest.services {
            if let Some(old) = self.applied.get(&s.name)
                && old.sha256 != s.sha256
            {
                self.previous.insert(s.name.clone(), old.clone());
            }
            applied.insert(s.name.clone(), s.clone());
        }
        self.applied = applied;
    }
}

/// The fleet folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) `dir` and its `blobs/` folder.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("blobs"))
            .with_context(|| format!("fleet cache {}: cannot create it", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Where the component with `sha256` is (or goes).
    pub fn blob(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    /// Where the precompiled artifact with `sha256` is (or goes).
    pub fn artifact(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.cwasm"))
    }

    /// Where a partial download of `sha256` is kept until it completes.
    pub fn partial(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.part"))
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The saved state; a missing file is an empty state. A file that is not valid is moved
    /// aside (`state.json.bad`, logged) and the node starts as if it had none: the hub
    /// sends everything again. A file that cannot be read is an error naming it.
    pub fn load(&self) -> anyhow::Result<FleetState> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => Ok(state),
                Err(e) => {
                    let aside = path.with_extension("json.bad");
                    tracing::error!(
                        "fleet state {} is not valid ({e}); moved to {} — starting without a saved manifest",
                        path.display(),
                        aside.display()
                    );
                    std::fs::rename(&path, &aside).with_context(|| {
                        format!("fleet state {}: cannot move it aside", path.display())
                    })?;
                    Ok(FleetState::default())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FleetState::default()),
            Err(e) => Err(e).with_context(|| format!("fleet state {}", path.display())),
        }
    }

    /// Saves the state atomically (temp file, fsync, rename).
    pub fn save(&self, state: &FleetState) -> anyhow::Result<()> {
        let path = self.state_path();
        let json = serde_json::to_vec_pretty(state)?;
        write_atomic(&path, &json)
            .with_context(|| format!("fleet state {}: cannot write it", path.display()))
    }

    /// The node manifest for a fleet manifest: components from the cache, checked against
    /// their sha256 when loaded, with the artifact for this node's engine (`fingerprint`)
    /// when it is in the cache.
    pub fn manifest(
        &self,
        fleet: &FleetManifest,
        fingerprint: &Fingerprint,
    ) -> anyhow::Result<Manifest> {
        let manifest = Manifest {
            services: fleet
                .services
                .iter()
                .map(|s| ServiceEntry {
                    name: s.name.clone(),
                    component: self.blob(&s.sha256),
                    sha256: Some(s.sha256.to_string()),
                    precompiled: s
                        .artifact_for(crate::precompiled::HOST_TARGET, fingerprint)
                        .map(|a| self.artifact(&a.sha256))
                        .filter(|p| p.exists())
                        .into_iter()
                        .collect(),
                    enabled: s.enabled,
                    config: s.config.clone(),
                    limits: s.limits.clone(),
                    grants: s.grants.clone(),
                    subscribe: s.subscribe.clone(),
                    shared: s.shared.clone(),
                })
                .collect(),
        };
        manifest
            .validate()
            .map_err(|e| anyhow::anyhow!("the hub's manifest: {e}"))?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fleet::protocol::test_service as service;

    #[test]
    fn a_bad_version_is_replaced_by_the_last_good_one_or_dropped() {
        let mut state = FleetState::default();
        let wanted = FleetManifest {
            services: vec![service("a", '2'), service("b", '4')],
            ..Default::default()
        };
        let none = BTreeSet::new();
        assert_eq!(state.effective(&wanted, &none), wanted);
        state
            .bad
            .entry("a".into())
            .or_default()
            .insert("2".repeat(64));
        state
            .bad
            .entry("b".into())
            .or_default()
            .insert("4".repeat(64));
        state.good.insert("a".into(), service("a", '1'));
        let run = state.effective(&wanted, &none);
        assert_eq!(run.services, vec![service("a", '1')]);
        // Refused now: the version it runs stays.
        let mut state = FleetState::default();
        state.record_applied(&FleetManifest {
            services: vec![service("a", '1')],
            ..Default::default()
        });
        let refused = BTreeSet::from([service("a", '2').sha256]);
        let run = state.effective(&wanted, &refused);
        assert_eq!(run.services, vec![service("a", '1'), service("b", '4')]);
        // A disabled service is left as the hub says, whatever its version.
        let mut off = wanted.clone();
        off.services[0].enabled = false;
        assert_eq!(state.effective(&off, &refused).services[0], off.services[0]);
    }

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), FleetState::default());
        let mut state = FleetState {
            etag: Some("\"x\"".into()),
            ..Default::default()
        };
        state.good.insert("a".into(), service("a", '1'));
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        std::fs::write(dir.path().join("state.json"), "{").unwrap();
        assert_eq!(store.load().unwrap(), FleetState::default());
        assert!(dir.path().join("state.json.bad").exists());
    }
}
