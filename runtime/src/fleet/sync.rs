//! Keeping a node in step with its hub: sign in, long-poll the manifest, download and check
//! new versions, apply them (the node hot-swaps changed services), notice rollbacks, and
//! report status, events and (while debug is on) log lines.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Fleet;
use super::artifacts::Artifact;
use super::bounds::MAX_LOG_LINES;
use super::client::{HubClient, HubError};
use super::download::{DownloadError, fetch};
use super::protocol::{EventKind, FleetManifest, SignedIn};
use super::store::{FleetState, Store};
use crate::config::NodeConfig;
use crate::manifest::Manifest;
use crate::node::NodeHandle;
use busbar_base::digest::Sha256;

/// How often statuses are checked for rollbacks and versions past their probation.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Most log lines per batch sent to the hub.
pub(super) const LOG_BATCH: usize = MAX_LOG_LINES;
/// Most bytes of log lines per batch: half the hub's bound, with room for JSON escapes.
pub(super) const LOG_BATCH_BYTES: usize = super::bounds::MAX_LOG_BATCH_BYTES / 2;
/// Longest a log line waits before its batch is sent.
pub(super) const LOG_FLUSH: Duration = Duration::from_millis(500);

/// A manifest ready to apply.
struct Prepared {
    /// What the node runs.
    node_manifest: Manifest,
    /// The hub's manifest with unusable versions replaced.
    effective: FleetManifest,
    /// The hub's manifest.
    manifest: FleetManifest,
    /// Its ETag, when every component could be downloaded (else it is fetched again).
    etag: Option<String>,
}

/// A [`Fleet`] error that says whether to sign in again.
enum Round {
    /// The hub or the network failed; sign in again after a pause.
    Hub(HubError),
    /// Something else failed; try again after a pause.
    Other(anyhow::Error),
}

impl From<HubError> for Round {
    fn from(e: HubError) -> Self {
        Round::Hub(e)
    }
}

impl Fleet {
    /// Sets up the fleet client of `config` (which must have a `[hub]`).
    pub fn new(config: &NodeConfig) -> anyhow::Result<Arc<Self>> {
        let hub_config = config
            .hub
            .as_ref()
            .context("the node config has no [hub]")?;
        let store = Store::open(&config.data_dir().join("fleet"))?;
        let state = store.load()?;
        let (debug, _) = watch::channel(state.manifest.as_ref().is_some_and(|m| m.settings.debug));
        Ok(Arc::new(Self {
            hub: HubClient::new(hub_config)?,
            key: hub_config.public_key()?,
            engine: config.engine.clone(),
            cap: hub_config.max_component_bytes,
            artifact_cap: hub_config.max_artifact_bytes,
            fingerprint: config.engine.fingerprint(crate::precompiled::HOST_TARGET),
            backoff_max: Duration::from_millis(hub_config.backoff_max_ms.max(1)),
            boot_wait: Duration::from_millis(hub_config.boot_wait_ms),
            identity: super::identity::identity(&config.node_id, &config.engine),
            store,
            state: Mutex::new(state),
            events: Mutex::default(),
            session: Mutex::default(),
            debug,
            report_now: Notify::new(),
        }))
    }

    /// The hub's answer to the last sign-in, if any.
    pub(super) fn session(&self) -> Option<SignedIn> {
        busbar_base::sync::lock(&self.session).clone()
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, FleetState> {
        busbar_base::sync::lock(&self.state)
    }

    /// The manifest to start with: the hub's, when it answers (and its components download)
    /// within `hub.boot_wait_ms`; else the last good one from the cache.
    pub async fn boot_manifest(&self) -> anyhow::Result<Manifest> {
        let from_hub = tokio::time::timeout(self.boot_wait, async {
            self.sign_in().await?;
            match self.hub.manifest(None, Duration::ZERO).await? {
                Some((manifest, etag)) => {
                    let manifest = self.accepted(&manifest, true);
                    let ready = self.prepare(&manifest, &etag, None).await?;
                    self.commit(&ready);
                    Ok(ready.node_manifest)
                }
                None => Err(Round::Other(anyhow::anyhow!("the hub sent no manifest"))),
            }
        })
        .await;
        match from_hub {
            Ok(Ok(manifest)) => return Ok(manifest),
            Ok(Err(Round::Hub(e))) => {
                log_hub_error(&e, "cannot get the manifest at boot");
            }
            Ok(Err(Round::Other(e))) => {
                tracing::warn!("fleet: cannot use the hub's manifest at boot: {e:#}");
            }
            Err(_) => tracing::warn!(
                wait_ms = self.boot_wait.as_millis() as u64,
                "fleet: the hub did not answer in time at boot"
            ),
        }
        let state = self.state().clone();
        let Some(saved) = &state.manifest else {
            tracing::warn!(
                "fleet: no manifest saved yet; starting with no services until the hub answers"
            );
            return Ok(Manifest::default());
        };
        // Checked again: the file may have been changed, or written by an older busbar.
        let saved = &self.accepted(saved, false);
        // Versions whose component (or, without a compiler, whose artifact) is not in the
        // cache cannot run offline.
        let missing: BTreeSet<Sha256> = saved
            .services
            .iter()
            .filter(|s| {
                let artifact = || {
                    s.artifact_for(crate::precompiled::HOST_TARGET, &self.fingerprint)
                        .is_some_and(|a| self.store.artifact(&a.sha256).exists())
                };
                !self.store.blob(&s.sha256).exists()
                    || (!crate::engine::HAS_COMPILER && !artifact())
            })
            .map(|s| s.sha256.clone())
            .collect();
        let effective = self.checked(state.effective(saved, &missing));
        tracing::warn!(
            services = effective.services.len(),
            "fleet: starting offline from the last good manifest and the component cache"
        );
        self.store.manifest(&effective, &self.fingerprint)
    }

    pub(super) async fn sign_in(&self) -> Result<SignedIn, HubError> {
        let signed = self.hub.sign_in(&self.identity).await?;
        tracing::info!(hub = %self.hub.url(), node_id = %signed.node_id, "fleet: signed in");
        *busbar_base::sync::lock(&self.session) = Some(signed.clone());
        Ok(signed)
    }

    /// Downloads and checks the components of `manifest`; with `node`, also loads each
    /// changed component first. Versions refused (bad signature, digest, size, or a
    /// component that does not load) are marked bad and the service keeps the version it
    /// runs; a component (or, without a compiler, an artifact) that could not be downloaded
    /// now keeps its service as it is for this round; a version a node without a compiler
    /// has no usable artifact for keeps its service as it is, unmarked. Nothing is saved
    /// until [`Fleet::commit`].
    async fn prepare(
        &self,
        manifest: &FleetManifest,
        etag: &str,
        node: Option<&NodeHandle>,
    ) -> Result<Prepared, Round> {
        if let Some(node) = node {
            self.note_rollbacks(node);
        }
        let mut skipped = BTreeSet::new();
        let mut complete = true;
        for svc in manifest.services.iter().filter(|s| s.enabled) {
            match fetch(&self.hub, &self.store, &self.key, svc, self.cap).await {
                Ok(_) => match self.fetch_own_artifact(svc).await {
                    Artifact::Ready => {}
                    Artifact::Unusable => {
                        skipped.insert(svc.sha256.clone());
                    }
                    Artifact::Later => {
                        skipped.insert(svc.sha256.clone());
                        complete = false;
                    }
                },
                Err(e @ DownloadError::Refused { .. }) => {
                    tracing::error!("fleet: {e}; the service keeps the version it runs");
                    self.refuse(&svc.name, &svc.sha256, e.to_string());
                }
                Err(e @ DownloadError::Failed { .. }) => {
                    tracing::error!(
                        "fleet: {e}; the service keeps the version it runs until the next try"
                    );
                    skipped.insert(svc.sha256.clone());
                    complete = false;
                }
            }
        }
        if let Some(node) = node {
            let state = self.state().clone();
            let trial = self.store.manifest(
                &self.checked(state.effective(manifest, &skipped)),
                &self.fingerprint,
            );
            for entry in trial.map_err(Round::Other)?.services {
                let changed = state
                    .applied
                    .get(&entry.name)
                    .is_none_or(|a| Some(a.sha256.as_str()) != entry.sha256.as_deref());
                if changed
                    && entry.enabled
                    && let Err(e) = node.check(&entry).await
                    && let Some(sha) = entry.sha256.as_deref().and_then(|s| Sha256::parse(s).ok())
                {
                    tracing::error!(service = %entry.name, "fleet: version {} refused: {e:#}; the service keeps the version it runs", sha.short());
                    self.refuse(&entry.name, &sha, format!("{e:#}"));
                }
            }
        }
        let effective = self.checked(self.state().effective(manifest, &skipped));
        let node_manifest = self
            .store
            .manifest(&effective, &self.fingerprint)
            .map_err(Round::Other)?;
        Ok(Prepared {
            node_manifest,
            effective,
            manifest: manifest.clone(),
            etag: complete.then(|| etag.to_owned()),
        })
    }

    /// Saves a manifest the node now runs: what it runs of each service, and (when every
    /// component was there) the manifest and its ETag as the last good one.
    fn commit(&self, ready: &Prepared) {
        let mut state = self.state();
        state.record_applied(&ready.effective);
        if let Some(etag) = &ready.etag {
            state.manifest = Some(ready.manifest.clone());
            state.etag = Some(etag.clone());
        }
        if let Err(e) = self.store.save(&state) {
            tracing::error!("fleet: {e:#}");
        }
        drop(state);
        self.debug.send_replace(ready.manifest.settings.debug);
    }

    /// Follows the hub until `cancel`: applies new manifests, watches rollbacks, reports.
    pub async fn run(self: Arc<Self>, node: NodeHandle, cancel: CancellationToken) {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = self.follow(&node) => {}
            () = self.watch_services(&node) => {}
            () = self.report(&node) => {}
            () = self.forward_logs() => {}
        }
        // One last report, so the hub sees the node's final state (a hub that does not
        // answer does not hold up the shutdown).
        let last = self.status(&node, true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.hub.status(&last)).await;
    }

    pub(super) async fn follow(&self, node: &NodeHandle) {
        let mut failures = 0u32;
        let mut signed_in = self.session().is_some();
        loop {
            let round = async {
                if !signed_in {
                    self.sign_in().await?;
                    signed_in = true;
                }
                let long_poll = self.session().map_or(25, |s| s.long_poll_s);
                let etag = self.state().etag.clone();
                let Some((manifest, etag)) = self
                    .hub
                    .manifest(etag.as_deref(), Duration::from_secs(long_poll))
                    .await?
                else {
                    return Ok(());
                };
                tracing::info!(etag = %etag, services = manifest.services.len(), "fleet: new manifest");
                // Debug first: the lines of applying this manifest are forwarded too.
                self.debug.send_replace(manifest.settings.debug);
                let manifest = self.accepted(&manifest, true);
                let ready = self.prepare(&manifest, &etag, Some(node)).await?;
                let done = node
                    .reload(&ready.node_manifest)
                    .await
                    .map_err(Round::Other)?;
                self.commit(&ready);
                tracing::info!(
                    started = ?done.started, swapped = ?done.restarted, stopped = ?done.stopped,
                    unchanged = done.unchanged.len(), "fleet: manifest applied"
                );
                for name in &done.restarted {
                    if let Some(s) = self.state().applied.get(name) {
                        self.event(name, EventKind::Swapped, &s.sha256, "new version applied".into());
                    }
                }
                self.report_now.notify_one();
                if ready.etag.is_none() {
                    return Err(Round::Other(anyhow::anyhow!(
                        "some components could not be downloaded; trying again"
                    )));
                }
                Ok::<(), Round>(())
            }
            .await;
            match round {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    match e {
                        Round::Hub(e) => {
                            signed_in = false;
                            log_hub_error(&e, "cannot follow the manifest");
                        }
                        Round::Other(e) => tracing::error!("fleet: manifest not applied: {e:#}"),
                    }
                    tokio::time::sleep(busbar_base::net::backoff(failures, self.backoff_max)).await;
                }
            }
        }
    }
}

pub(super) fn log_hub_error(e: &HubError, doing: &str) {
    if e.is_transient() {
        tracing::warn!("fleet: {doing}: {e}");
    } else {
        tracing::error!("fleet: {doing}: {e}");
    }
}
