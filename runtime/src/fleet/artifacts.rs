//! The precompiled artifact a node takes for a version: the one for its target and engine
//! fingerprint, downloaded beside the component; what a node without a compiler does when
//! there is none it can use.

use super::Fleet;
use super::download::{DownloadError, fetch_artifact};
use super::protocol::{EventKind, FleetService};

/// Whether a version's code can be had on this node.
pub(super) enum Artifact {
    /// Its artifact is in the cache, or the node compiles the component.
    Ready,
    /// Not on this node (no compiler, no usable artifact): the service keeps what it runs.
    Unusable,
    /// The artifact could not be downloaded now: try again next round.
    Later,
}

impl Fleet {
    /// Downloads the artifact of `svc` for this node's target and engine, if the entry lists
    /// one. A node with a compiler compiles the component when there is none or it cannot
    /// be had. A node without one cannot run the version then: it keeps the version it runs
    /// ([`Artifact::Unusable`], reported to the hub but not marked bad, so the same version
    /// published again with an artifact for this node is taken), or tries again next round
    /// when the download failed now ([`Artifact::Later`]).
    pub(super) async fn fetch_own_artifact(&self, svc: &FleetService) -> Artifact {
        let target = crate::precompiled::HOST_TARGET;
        let compiler = crate::engine::HAS_COMPILER;
        let unusable = |why: String| {
            let detail = format!(
                "this node runs only precompiled components and {why} (target {target}, engine \
                 {}); publish the version again with one (`busbar hub publish` compiles for \
                 the engines nodes announce)",
                self.fingerprint
            );
            tracing::error!(service = %svc.name, version = svc.sha256.short(),
                "fleet: {detail}; the service keeps the version it runs");
            self.event(&svc.name, EventKind::Refused, &svc.sha256, detail);
            Artifact::Unusable
        };
        let Some(artifact) = svc.artifact_for(target, &self.fingerprint) else {
            let listed: Vec<String> = svc
                .artifacts
                .iter()
                .map(|a| format!("{} engine {}", a.target, a.fingerprint))
                .collect();
            if compiler {
                if !listed.is_empty() {
                    tracing::warn!(service = %svc.name, version = svc.sha256.short(),
                        "fleet: no artifact for this node (target {target}, engine {}) among those \
                         published ({}); compiling the component", self.fingerprint, listed.join(", "));
                }
                return Artifact::Ready;
            }
            let published = if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            };
            return unusable(format!(
                "no artifact of this version fits it (published: {published})"
            ));
        };
        match fetch_artifact(&self.hub, &self.store, svc, artifact, self.artifact_cap).await {
            Ok(_) => Artifact::Ready,
            Err(e) if compiler => {
                tracing::warn!("fleet: {e}; compiling the component instead");
                Artifact::Ready
            }
            Err(e @ DownloadError::Refused { .. }) => {
                unusable(format!("its artifact was refused: {e}"))
            }
            Err(e @ DownloadError::Failed { .. }) => {
                tracing::error!(
                    "fleet: {e}; the service keeps the version it runs until the next try"
                );
                Artifact::Later
            }
        }
    }
}
