//! Keeping a node in step with its hub: sign in, long-poll the manifest, download and check
//! new versions, apply them (the node hot-swaps changed services), notice rollbacks, and
//! report status, events and (while debug is on) log lines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::bounds::{
    MAX_DETAIL_CHARS, MAX_EVENTS_PER_STATUS, MAX_LOG_LINE_CHARS, MAX_LOG_LINES, cut,
};
use super::client::{HubClient, HubError};
use super::download::{DownloadError, fetch};
use super::protocol::{
    EventKind, FleetManifest, FleetService, LogBatch, NodeEvent, NodeStatus, ServiceStatus, SignIn,
    SignedIn, verify_entry,
};
use super::store::{FleetState, Store};
use crate::config::NodeConfig;
use crate::engine::EngineConfig;
use crate::manifest::Manifest;
use crate::node::NodeHandle;
use crate::observe::unix_ms;
use crate::service::{PROBATION, State};
use busbar_base::digest::{Sha256, shown};

/// How often statuses are checked for rollbacks and versions past their probation.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Most log lines per batch sent to the hub.
const LOG_BATCH: usize = MAX_LOG_LINES;
/// Most bytes of log lines per batch: half the hub's bound, with room for JSON escapes.
const LOG_BATCH_BYTES: usize = super::bounds::MAX_LOG_BATCH_BYTES / 2;
/// Longest a log line waits before its batch is sent.
const LOG_FLUSH: Duration = Duration::from_millis(500);

/// The node's side of the fleet: its hub client, cache and remembered state.
#[derive(Debug)]
pub struct Fleet {
    hub: HubClient,
    store: Store,
    key: VerifyingKey,
    /// The node's engine settings, which every entry's limits must fit.
    engine: EngineConfig,
    cap: u64,
    backoff_max: Duration,
    boot_wait: Duration,
    identity: SignIn,
    state: Mutex<FleetState>,
    events: Mutex<Vec<NodeEvent>>,
    /// The hub's answer to the last sign-in.
    session: Mutex<Option<SignedIn>>,
    debug: watch::Sender<bool>,
    report_now: Notify,
}

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
            backoff_max: Duration::from_millis(hub_config.backoff_max_ms.max(1)),
            boot_wait: Duration::from_millis(hub_config.boot_wait_ms),
            identity: super::identity::identity(&config.node_id),
            store,
            state: Mutex::new(state),
            events: Mutex::default(),
            session: Mutex::default(),
            debug,
            report_now: Notify::new(),
        }))
    }

    /// The hub's answer to the last sign-in, if any.
    fn session(&self) -> Option<SignedIn> {
        lock(&self.session).clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FleetState> {
        lock(&self.state)
    }

    /// Queues an event for the hub (at most [`MAX_EVENTS_PER_STATUS`] unsent: the oldest go
    /// first), with the service name and detail cut to what the hub accepts.
    fn event(&self, service: &str, kind: EventKind, sha256: &Sha256, detail: String) {
        let mut events = lock(&self.events);
        events.push(NodeEvent {
            at_ms: unix_ms(),
            service: cut(&shown(service), 64),
            kind,
            sha256: sha256.clone(),
            detail: cut(&detail, MAX_DETAIL_CHARS - 1),
        });
        let excess = events.len().saturating_sub(MAX_EVENTS_PER_STATUS);
        if excess > 0 {
            tracing::warn!(
                dropped = excess,
                "fleet: too many events not yet sent to the hub; dropping the oldest"
            );
            events.drain(..excess);
        }
        drop(events);
        self.report_now.notify_one();
    }

    /// Whether the node may apply `entry`: signed whole by the publisher, with a valid name
    /// and limits in range and within this node's engine. The error names the field.
    fn acceptable(&self, entry: &FleetService) -> Result<(), String> {
        entry.check()?;
        self.engine
            .fit(&entry.limits)
            .map_err(|e| format!("limits.{e}"))?;
        verify_entry(&self.key, entry)
    }

    /// `manifest` without the entries the node may not apply ([`Fleet::acceptable`]): the
    /// earlier entries a fallback chose (saved by an older busbar, or no longer fitting the
    /// engine) are checked like the hub's.
    fn checked(&self, mut manifest: FleetManifest) -> FleetManifest {
        manifest.services.retain(|s| match self.acceptable(s) {
            Ok(()) => true,
            Err(why) => {
                tracing::error!(service = %shown(&s.name), version = s.sha256.short(),
                    "fleet: an earlier entry cannot be used either: {why}; not run");
                false
            }
        });
        manifest
    }

    /// The entries of `manifest` the node may apply ([`Fleet::acceptable`]). An entry that is
    /// not is refused (logged; with `report`, reported to the hub) and replaced by the entry
    /// the service runs now, or else its last good one, when that one is acceptable.
    fn accepted(&self, manifest: &FleetManifest, report: bool) -> FleetManifest {
        let state = self.state().clone();
        let mut out = manifest.clone();
        out.services = manifest
            .services
            .iter()
            .filter_map(|s| {
                let why = match self.acceptable(s) {
                    Ok(()) => return Some(s.clone()),
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
            })
            .collect();
        out
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
        // Versions whose component is not in the cache cannot run offline.
        let missing: BTreeSet<Sha256> = saved
            .services
            .iter()
            .filter(|s| !self.store.blob(&s.sha256).exists())
            .map(|s| s.sha256.clone())
            .collect();
        let effective = self.checked(state.effective(saved, &missing));
        tracing::warn!(
            services = effective.services.len(),
            "fleet: starting offline from the last good manifest and the component cache"
        );
        self.store.manifest(&effective)
    }

    async fn sign_in(&self) -> Result<SignedIn, HubError> {
        let signed = self.hub.sign_in(&self.identity).await?;
        tracing::info!(hub = %self.hub.url(), node_id = %signed.node_id, "fleet: signed in");
        *lock(&self.session) = Some(signed.clone());
        Ok(signed)
    }

    /// Downloads and checks the components of `manifest`; with `node`, also loads each
    /// changed component first. Versions refused (bad signature, digest, size, or a
    /// component that does not load) are marked bad and the service keeps the version it
    /// runs; a component that could not be downloaded now keeps its service as it is for
    /// this round. Nothing is saved until [`Fleet::commit`].
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
                Ok(_) => {}
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
            let trial = self
                .store
                .manifest(&self.checked(state.effective(manifest, &skipped)));
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
        let node_manifest = self.store.manifest(&effective).map_err(Round::Other)?;
        Ok(Prepared {
            node_manifest,
            effective,
            manifest: manifest.clone(),
            etag: complete.then(|| etag.to_owned()),
        })
    }

    /// Marks a version bad for a service (it is not tried again) and tells the hub.
    fn refuse(&self, service: &str, sha256: &Sha256, detail: String) {
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

    async fn follow(&self, node: &NodeHandle) {
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

    /// Notices rollbacks and versions that ran through their probation (remembered as good).
    async fn watch_services(&self, node: &NodeHandle) {
        let mut running_since: BTreeMap<(String, String), Instant> = BTreeMap::new();
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            self.note_rollbacks(node);
            let mut state = self.state();
            let mut changed = false;
            for report in node.services().report() {
                let (name, status) = (report.name, report.status);
                let Some(sha) = status.sha256 else { continue };
                let applied = state.applied.get(&name).cloned();
                if status.state == State::Running
                    && let Some(applied) = applied
                    && applied.sha256.as_str() == sha
                    && state.good.get(&name) != Some(&applied)
                {
                    let since = *running_since
                        .entry((name.clone(), sha))
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= PROBATION {
                        state.good.insert(name, applied);
                        changed = true;
                    }
                }
            }
            if changed && let Err(e) = self.store.save(&state) {
                tracing::error!("fleet: {e:#}");
            }
        }
    }

    /// Marks the versions the node rolled back from as bad (the service now runs the one it
    /// ran before, remembered as good) and tells the hub.
    fn note_rollbacks(&self, node: &NodeHandle) {
        let mut events = Vec::new();
        {
            let mut state = self.state();
            for report in node.services().report() {
                let name = report.name;
                let Some(rb) = report.status.rolled_back else {
                    continue;
                };
                let Some(bad) = rb.sha256.as_deref().and_then(|s| Sha256::parse(s).ok()) else {
                    continue;
                };
                if state.is_bad(&name, &bad) {
                    continue;
                }
                state
                    .bad
                    .entry(name.clone())
                    .or_default()
                    .insert(bad.to_string());
                if let Some(prev) = state.previous.get(&name).cloned() {
                    state.good.insert(name.clone(), prev.clone());
                    state.applied.insert(name.clone(), prev);
                }
                events.push((name, bad, rb.reason));
            }
            if !events.is_empty()
                && let Err(e) = self.store.save(&state)
            {
                tracing::error!("fleet: {e:#}");
            }
        }
        for (name, bad, reason) in events {
            tracing::error!(service = %name, version = bad.short(), %reason, "fleet: rolled back; reporting to the hub");
            self.event(&name, EventKind::RolledBack, &bad, reason);
        }
    }

    fn status(&self, node: &NodeHandle, take_events: bool) -> NodeStatus {
        let services = node
            .services()
            .report()
            .into_iter()
            .map(|r| ServiceStatus {
                name: r.name,
                sha256: r
                    .status
                    .sha256
                    .as_deref()
                    .and_then(|s| Sha256::parse(s).ok()),
                state: r.status.state.as_str().to_owned(),
                restarts: r.status.restarts,
            })
            .collect();
        let events = if take_events {
            std::mem::take(&mut *lock(&self.events))
        } else {
            Vec::new()
        };
        NodeStatus { services, events }
    }

    /// Sends the status every heartbeat, and at once when something happened.
    async fn report(&self, node: &NodeHandle) {
        loop {
            let heartbeat = self.session().map_or(30, |s| s.heartbeat_s.max(1));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(heartbeat)) => {}
                () = self.report_now.notified() => {}
            }
            let status = self.status(node, true);
            match self.hub.status(&status).await {
                Ok(()) => {}
                // The hub refused this status as it is: sending it again would not help.
                Err(
                    e @ HubError::Status {
                        status: 400..=499, ..
                    },
                ) => {
                    tracing::error!(
                        events = status.events.len(),
                        "fleet: the hub refused the status; its events are dropped: {e}"
                    );
                }
                Err(e) => {
                    tracing::debug!("fleet: status not sent: {e}");
                    self.keep_events(status.events);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Puts back events a report could not deliver, before any newer ones.
    /// (At most [`MAX_EVENTS_PER_STATUS`] are kept: the oldest go first.)
    fn keep_events(&self, unsent: Vec<NodeEvent>) {
        let mut events = lock(&self.events);
        let newer = std::mem::replace(&mut *events, unsent);
        events.extend(newer);
        let excess = events.len().saturating_sub(MAX_EVENTS_PER_STATUS);
        events.drain(..excess);
    }

    /// While the hub's settings say `debug`, sends the node's log lines in batches.
    async fn forward_logs(&self) {
        let mut debug = self.debug.subscribe();
        loop {
            if !*debug.borrow_and_update() {
                if debug.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            }
            tracing::info!("fleet: debug on; forwarding log lines to the hub");
            let (_, mut lines) = crate::observe::log_hub().follow();
            let mut batch = Vec::new();
            let mut batch_bytes = 0usize;
            let mut flush_at = tokio::time::Instant::now() + LOG_FLUSH;
            loop {
                tokio::select! {
                    line = lines.recv() => match line {
                        Some(Ok(line)) => {
                            let line = render(&line);
                            batch_bytes += line.len() + 8;
                            batch.push(line);
                            if batch.len() < LOG_BATCH && batch_bytes < LOG_BATCH_BYTES {
                                continue;
                            }
                        }
                        Some(Err(skipped)) => batch.push(format!("... {skipped} log lines skipped")),
                        None => return std::future::pending().await,
                    },
                    () = tokio::time::sleep_until(flush_at) => {}
                    _ = debug.changed() => {}
                }
                flush_at = tokio::time::Instant::now() + LOG_FLUSH;
                if !batch.is_empty() {
                    batch_bytes = 0;
                    let lines = std::mem::take(&mut batch);
                    if let Err(e) = self.hub.logs(&LogBatch { lines }).await {
                        tracing::debug!("fleet: log lines not sent: {e}");
                    }
                }
                if !*debug.borrow() {
                    tracing::info!("fleet: debug off; log forwarding stopped");
                    break;
                }
            }
        }
    }
}

fn render(line: &crate::observe::LogLine) -> String {
    let mut text = format!(
        "{} {} {}{}",
        line.ts_ms,
        line.level,
        line.service
            .as_deref()
            .map(|s| format!("[{s}] "))
            .unwrap_or_default(),
        line.message
    );
    for (k, v) in &line.fields {
        text.push_str(&format!(" {k}={v}"));
    }
    cut(&text, MAX_LOG_LINE_CHARS - 1)
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data stays consistent: every
/// change under these locks is a single assignment or push).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_hub_error(e: &HubError, doing: &str) {
    if e.is_transient() {
        tracing::warn!("fleet: {doing}: {e}");
    } else {
        tracing::error!("fleet: {doing}: {e}");
    }
}
