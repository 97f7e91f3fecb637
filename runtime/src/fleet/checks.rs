//! What a node accepts of its hub's manifest: entries signed whole by the publisher, with a
//! valid name and limits that fit this node's engine; refused ones are reported.

use super::Fleet;
use super::protocol::{EventKind, FleetManifest, FleetService, verify_artifact, verify_entry};
use busbar_base::digest::{Sha256, shown};

impl Fleet {
    /// Whether the node may apply `entry`: signed whole by the publisher, with a valid name
    /// and limits in range and within this node's engine. The error names the field.
    pub(super) fn acceptable(&self, entry: &FleetService) -> Result<(), String> {
        entry.check()?;
        self.engine
            .fit(&entry.limits)
            .map_err(|e| format!("limits.{e}"))?;
        verify_entry(&self.key, entry)
    }

    /// `entry` without the artifacts its publisher did not sign (each logged): the node never
    /// loads native code the publisher did not make from that very component for that
    /// target and engine.
    fn signed_artifacts_only(&self, mut entry: FleetService) -> FleetService {
        let (name, sha) = (shown(&entry.name), entry.sha256.clone());
        entry.artifacts.retain(|a| match verify_artifact(&self.key, &sha, a) {
            Ok(()) => true,
            Err(why) => {
                tracing::error!(service = %name, version = sha.short(),
                    "fleet: artifact for {} (engine {}) refused: {why}; not used", a.target, a.fingerprint);
                false
            }
        });
        entry
    }

    /// `manifest` without the entries the node may not apply ([`Fleet::acceptable`]): the
    /// earlier entries a fallback chose (saved by an older busbar, or no longer fitting the
    /// engine) are checked like the hub's.
    pub(super) fn checked(&self, mut manifest: FleetManifest) -> FleetManifest {
        manifest.services.retain(|s| match self.acceptable(s) {
            Ok(()) => true,
            Err(why) => {
                tracing::error!(service = %shown(&s.name), version = s.sha256.short(),
                    "fleet: an earlier entry cannot be used either: {why}; not run");
                false
            }
        });
        manifest.services = manifest
            .services
            .into_iter()
            .map(|s| self.signed_artifacts_only(s))
            .collect();
        manifest
    }

    /// The entries of `manifest` the node may apply ([`Fleet::acceptable`]). An entry that is
    /// not is refused (logged; with `report`, reported to the hub) and replaced by the entry
    /// the service runs now, or else its last good one, when that one is acceptable.
    pub(super) fn accepted(&self, manifest: &FleetManifest, report: bool) -> FleetManifest {
        let state = self.state().clone();
        let mut out = manifest.clone();
        out.services = manifest
            .services
            .iter()
            .filter_map(|s| {
                let why = match self.acceptable(s) {
                    Ok(()) => return Some(self.signed_artifacts_only(s.clone())),
                    Err(why) => why,
                };
                tracing::error!(service = %shown(&s.name), version = s.sha256.short(),
                    "fleet: the hub's entry is refused: {why}; the service keeps the entry it runs");
                if report {
                    self.event(&s.name, EventKind::Refused, &s.sha256, format!("entry refused: {why}"));
                }
                [state.applied.get(&s.name), state.good.get(&s.name)]
                    .into_iter()
                    .flatten()
                    .find(|v| self.acceptable(v).is_ok())
                    .cloned()
                    .map(|v| self.signed_artifacts_only(v))
            })
            .collect();
        out
    }

    /// Marks a version bad for a service (it is not tried again) and tells the hub.
    pub(super) fn refuse(&self, service: &str, sha256: &Sha256, detail: String) {
        {
            let mut state = self.state();
            state
                .bad
                .entry(service.to_owned())
                .or_default()
                .insert(sha256.to_string());
            if let Err(e) = self.store.save(&state) {
                tracing::error!("fleet: {e:#}");
            }
        }
        self.event(service, EventKind::Refused, sha256, detail);
    }
}
