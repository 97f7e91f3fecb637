//! Converging on a manifest: which services to start, stop, restart or leave, each started
//! with a fresh mailbox, and a new version swapped in with the old one as its fallback.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Applied, Core};
use crate::bus::{Route, RouteKind};
use crate::manifest::{Manifest, ServiceEntry, property_text};
use crate::orchestrator::ServiceHandle;
use crate::service::{Handover, RestartPolicy, ServiceSpec, State, Status, Successor};

/// One service the node runs now.
#[derive(Debug)]
pub(super) struct Running {
    entry: ServiceEntry,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: tokio::sync::watch::Receiver<Status>,
    /// Where its queue and state go when a new version replaces it.
    successor: Arc<std::sync::OnceLock<Successor>>,
    /// How it was started (without its own fallback).
    spec: ServiceSpec,
    /// The version it replaced, which it runs again if it rolled back.
    fallback: Option<(ServiceEntry, ServiceSpec)>,
}

impl Running {
    /// The entry and spec of the version it runs now: its own, or after a rollback the one
    /// it replaced.
    fn current(&self) -> (&ServiceEntry, &ServiceSpec) {
        match &self.fallback {
            Some((entry, spec)) if self.status.borrow().rolled_back.is_some() => (entry, spec),
            _ => (&self.entry, &self.spec),
        }
    }
}

impl Core {
    /// Converges on the wanted services: those of `manifest` (else the current one) that are
    /// enabled, not held and not disabled by the hub. `restart` names a service to restart
    /// even though it did not change.
    pub(super) async fn apply(
        &self,
        manifest: Option<&Manifest>,
        restart: Option<&str>,
    ) -> anyhow::Result<Applied> {
        let mut running = self.running.lock().await;
        let (manifest, wanted) = {
            let state = busbar_base::sync::lock(&self.wanted);
            let manifest = manifest.unwrap_or(&state.manifest).clone();
            let wanted: Vec<ServiceEntry> = manifest
                .services
                .iter()
                .filter(|s| s.enabled && !state.disabled && !state.held.contains(&s.name))
                .cloned()
                .collect();
            (manifest, wanted)
        };
        manifest
            .fit_engine(&self.limits.engine)
            .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
        anyhow::ensure!(
            wanted.len() <= self.limits.max_instances as usize,
            "the manifest enables {} services but engine.max_instances is {}",
            wanted.len(),
            self.limits.max_instances
        );
        let specs = wanted
            .iter()
            .map(|s| self.spec(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        busbar_base::sync::lock(&self.wanted).manifest = manifest.clone();
        for s in manifest.services.iter().filter(|s| !s.enabled) {
            tracing::info!(service = %s.name, "disabled in the manifest; not started");
        }
        let mut applied = Applied::default();
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            if !wanted.iter().any(|s| s.name == name) {
                let gone = running.remove(&name).expect("listed");
                self.env.bus.unregister(&name);
                gone.cancel.cancel();
                let _ = gone.task.await;
                self.services.remove(&name);
                applied.stopped.push(name);
            }
        }
        for (entry, spec) in wanted.iter().zip(specs) {
            let previous = match running.remove(&entry.name) {
                None => {
                    applied.started.push(entry.name.clone());
                    None
                }
                Some(old) if !changed(&old, entry) && restart != Some(entry.name.as_str()) => {
                    applied.unchanged.push(entry.name.clone());
                    running.insert(entry.name.clone(), old);
                    continue;
                }
                Some(old) => {
                    applied.restarted.push(entry.name.clone());
                    // Compile before messages are redirected, so the swap pause does not
                    // include it (a failure shows in the new version's start: rollback).
                    if let Err(e) = self
                        .env
                        .loader
                        .load(&crate::component::ComponentSource::of(entry))
                        .await
                    {
                        tracing::warn!(service = %entry.name, "the new version does not load: {e:#}");
                    }
                    Some(old)
                }
            };
            let started = self.spawn(entry, spec, previous)?;
            running.insert(entry.name.clone(), started);
        }
        Ok(applied)
    }

    pub(super) fn spec(&self, s: &ServiceEntry) -> anyhow::Result<ServiceSpec> {
        self.limits.spec(s, &self.limits.data_dir)
    }

    /// Starts one service with a fresh mailbox. With `previous` (the version it replaces),
    /// new messages go to the new mailbox at once; the new version loads and instantiates
    /// while the old one finishes its queue, then the old one hands over its state and what
    /// is left, and the new one starts. Should the new version fail, it runs the old one again.
    pub(super) fn spawn(
        &self,
        entry: &ServiceEntry,
        mut spec: ServiceSpec,
        previous: Option<Running>,
    ) -> anyhow::Result<Running> {
        let (tx, rx) = mpsc::channel(entry.limits.mailbox);
        let route = Route::new(
            tx.clone(),
            crate::bus::OnFull::of(&entry.limits),
            RouteKind::Custom,
        );
        let successor = Arc::new(std::sync::OnceLock::new());
        spec.successor = successor.clone();
        let own_spec = spec.clone();
        let mut fallback = None;
        let previous = if let Some(old) = previous {
            let handover = Arc::new(Handover::default());
            let _ = old.successor.set(Successor {
                handover: handover.clone(),
            });
            spec.handover = Some(handover);
            if old.status.borrow().state != State::Failed {
                let (old_entry, old_spec) = old.current();
                spec.fallback = Some(Box::new(old_spec.clone()));
                fallback = Some((old_entry.clone(), old_spec.clone()));
            }
            self.env.bus.replace(&entry.name, route);
            old.cancel.cancel();
            Some(old.task)
        } else {
            self.env
                .bus
                .register(&entry.name, route)
                .with_context(|| format!("registering service `{}`", entry.name))?;
            None
        };
        let cancel = self.service_cancel.child_token();
        let spawned = crate::service::spawn(
            spec,
            &self.env,
            (tx, rx),
            &self.service_tasks,
            cancel.clone(),
            previous,
        );
        self.services.insert(
            &entry.name,
            ServiceHandle {
                status: spawned.status.clone(),
                counters: spawned.counters,
                privileged: entry.grants.privileged,
            },
        );
        Ok(Running {
            entry: entry.clone(),
            cancel,
            task: spawned.task,
            status: spawned.status,
            successor,
            spec: own_spec,
            fallback,
        })
    }
}

/// Whether `entry` differs from what `old` runs (after a rollback: the version it went back
/// to): another entry, or another component file behind the same path.
pub(super) fn changed(old: &Running, entry: &ServiceEntry) -> bool {
    // Another artifact of the same component is the same code: no restart for that.
    let code_aside = |e: &ServiceEntry| ServiceEntry {
        precompiled: Vec::new(),
        ..e.clone()
    };
    if code_aside(old.current().0) != code_aside(entry) {
        return true;
    }
    let Some(loaded) = old.status.borrow().sha256.clone() else {
        return true;
    };
    if let Some(expected) = &entry.sha256 {
        // The loader refuses a file with another digest, so this is what would run.
        return !expected.eq_ignore_ascii_case(&loaded);
    }
    match busbar_base::read_file::read_bounded(
        &entry.component,
        busbar_base::read_file::MAX_COMPONENT_BYTES,
    ) {
        Ok(bytes) => hex::encode(Sha256::digest(&bytes)) != loaded,
        Err(_) => true,
    }
}

impl super::NodeSettings {
    /// How the node runs service `s`, its data folder under `data_dir`.
    pub(super) fn spec(
        &self,
        s: &ServiceEntry,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<ServiceSpec> {
        // Checked against the engine for the whole manifest in `apply`.
        let memory_mib = s.limits.memory_mib.unwrap_or(self.engine.max_memory_mib);
        let granted = crate::grants::Granted::resolve(&s.name, &s.grants, data_dir, &self.brokers)?;
        if let Some(group) = &s.shared {
            anyhow::ensure!(
                self.fabric,
                "service `{}`: shared = \"{group}\" needs a fabric, and this node is on none \
                 ([fabric] in the node config)",
                s.name
            );
            anyhow::ensure!(
                group.as_str() != self.node_id,
                "service `{}`: shared = \"{group}\" names a group like this node: node ids and \
                 group names share one namespace on the fabric",
                s.name
            );
        }
        Ok(ServiceSpec {
            name: Arc::from(s.name.as_str()),
            source: crate::component::ComponentSource::of(s),
            properties: Arc::new(
                s.config
                    .iter()
                    .map(|(k, v)| (k.clone(), property_text(v)))
                    .collect(),
            ),
            memory_bytes: (memory_mib as usize) << 20,
            sandbox: crate::host::Sandbox::from(&s.limits),
            deadline: Duration::from_millis(s.limits.deadline_ms),
            drain: self.drain,
            restart: RestartPolicy::default(),
            subscribe: self.subscriptions(s, &granted)?,
            shared: s.shared.clone(),
            granted: Arc::new(granted),
            successor: Arc::default(),
            handover: None,
            fallback: None,
        })
    }

    /// The entry's `subscribe` list made absolute, each within its grants: what the service
    /// subscribes to before `start`.
    fn subscriptions(
        &self,
        s: &ServiceEntry,
        granted: &crate::grants::Granted,
    ) -> anyhow::Result<Vec<(String, busbar_base::topic::TopicFilter)>> {
        s.subscribe
            .iter()
            .enumerate()
            .map(|(i, sub)| {
                let at = || format!("service `{}`: subscribe[{i}] `{}`", s.name, sub.filter);
                let (broker, access) = granted
                    .topics
                    .on(&s.name, sub.broker.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}: {}", at(), e.text()))?;
                let filter = access
                    .subscribe_filter(&s.name, sub.filter.as_str())
                    .map_err(|e| anyhow::anyhow!("{}: {}", at(), e.text()))?;
                Ok((broker.to_owned(), filter))
            })
            .collect()
    }
}
