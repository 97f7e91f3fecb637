//! `busbar run` as a daemon: the node, its admin API, an optional PID file and the systemd
//! protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`, watchdog pings), until SIGTERM/SIGINT
//! (the caller's `shutdown`) stops it or SIGHUP reloads its manifest.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminServer;
use crate::config::NodeConfig;
use crate::manifest::Manifest;
use crate::message::new_message;
use crate::node::Node;
use crate::orchestrator::ORCHESTRATOR;

/// Runs a node from what `load` reads (the node config and the manifest) until `shutdown`
/// fires, then stops it in order. SIGHUP calls `load` again and applies the new manifest:
/// only the services that changed restart; a manifest that cannot be applied is refused and
/// the node keeps running what it ran.
pub async fn run(
    load: impl Fn() -> anyhow::Result<(NodeConfig, Manifest)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (config, manifest) = load()?;
    let _pid = config
        .pid_file
        .as_deref()
        .map(PidFile::create)
        .transpose()?;
    // Before anything else, so a reload sent as soon as systemd hears READY finds a handler.
    let mut hangups = Hangups::new();
    let fleet = config
        .hub
        .is_some()
        .then(|| crate::fleet::Fleet::new(&config))
        .transpose()?;
    let manifest = match &fleet {
        Some(fleet) => fleet.boot_manifest().await?,
        None => manifest,
    };
    let node = Node::start(&config, &manifest).await?;
    let fleet_cancel = CancellationToken::new();
    let fleet_task = fleet.map(|f| {
        let (handle, cancel) = (node.handle(), fleet_cancel.clone());
        busbar_base::supervise::restart(node.health(), "fleet", fleet_cancel.clone(), move || {
            let run = f.clone().run(handle.clone(), cancel.clone());
            async move {
                run.await;
                Ok(())
            }
        })
    });
    let admin = if config.admin.enabled {
        let (bus, health) = (node.bus().clone(), node.health().clone());
        let links = crate::admin::Links {
            com: node.com_stats().clone(),
            brokers: node.topics_stats().clone(),
            fabric: node.fabric_stats().cloned(),
        };
        match AdminServer::start(&config, bus, node.services(), links, health).await {
            Ok(admin) => Some(admin),
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    tracing::info!(node_id = %config.node_id, services = node.report().len(), "node running");
    if let Err(e) = node.settled().await {
        tracing::warn!(error = %e, "could not wait for the services to start");
    }
    notify(&[NotifyState::Ready]);
    let watchdog = CancellationToken::new();
    tokio::spawn(keep_watchdog_fed(
        node.bus().clone(),
        node.health().clone(),
        watchdog.clone(),
    ));
    let mut failed = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            task = node.health().dead() => {
                tracing::error!(task = %task, "a long-lived task of the node failed for good; stopping the node");
                failed = Some(task);
                break;
            }
            () = hangups.next() => {
                if fleet_task.is_some() {
                    tracing::info!("SIGHUP ignored: the services come from the hub");
                    continue;
                }
                notify(&[NotifyState::Reloading]);
                reload(&node, &config, &load).await;
                notify(&[NotifyState::Ready]);
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    watchdog.cancel();
    fleet_cancel.cancel();
    if let Some(task) = fleet_task {
        let _ = task.await;
    }
    if let Some(admin) = admin {
        admin.stop().await;
    }
    node.shutdown().await;
    match failed {
        Some(task) => Err(anyhow::anyhow!(
            "the node's `{task}` task failed for good (see the log above); the node stopped"
        )),
        None => Ok(()),
    }
}

async fn reload(
    node: &Node,
    running: &NodeConfig,
    load: &impl Fn() -> anyhow::Result<(NodeConfig, Manifest)>,
) {
    tracing::info!("SIGHUP received: reloading the manifest");
    let (config, manifest) = match load() {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("reload refused, the services keep running as they were: {e:#}");
            return;
        }
    };
    if config != *running {
        tracing::warn!(
            "the node config changed; it takes effect at the next start (a reload applies the manifest)"
        );
    }
    match node.reload(&manifest).await {
        Ok(done) => tracing::info!(
            started = ?done.started, restarted = ?done.restarted, stopped = ?done.stopped,
            unchanged = done.unchanged.len(), "manifest reloaded"
        ),
        Err(e) => {
            tracing::error!("reload refused, the services keep running as they were: {e:#}");
        }
    }
}

/// Tells systemd about the node when it runs under `Type=notify` (no-op otherwise).
fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(states)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// With `WatchdogSec=` set, pings systemd at half the interval, but only while the
/// orchestrator answers a `ping` over the bus: a node whose runtime is stuck gets restarted.
async fn keep_watchdog_fed(
    bus: crate::bus::Bus,
    health: std::sync::Arc<busbar_base::supervise::Health>,
    stop: CancellationToken,
) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog on"
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let ping = new_message(
            bus.next_id(),
            "busbar",
            ORCHESTRATOR,
            "ping",
            "",
            Vec::new(),
        );
        match bus.call(ping, period).await {
            Ok(_) if !health.all_running() => tracing::error!(
                tasks = ?health.report(),
                "a long-lived task of the node is not running; no watchdog ping"
            ),
            Ok(_) => notify(&[NotifyState::Watchdog]),
            Err(e) => {
                tracing::error!(error = %e, "the node did not answer its own ping; no watchdog ping")
            }
        }
    }
}

/// SIGHUP as a stream of wake-ups (never fires where there is no SIGHUP).
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP; reload is off"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// A PID file, removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`. Refuses when the file names another running
    /// process (a second node on the same files); replaces a stale one.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            anyhow::bail!(
                "PID file {}: busbar (pid {pid}) is already running with it",
                path.display()
            );
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("PID file {}: cannot create its folder", path.display())
            })?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("PID file {}: cannot write it", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_names_this_process_and_refuses_a_live_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/busbar.pid");
        let pid = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(pid);
        assert!(!path.exists());
        // PID 1 is always alive.
        std::fs::write(&path, "1\n").unwrap();
        let e = PidFile::create(&path).unwrap_err().to_string();
        assert!(e.contains("already running"), "{e}");
        // A stale file (no such process) is replaced.
        std::fs::write(&path, "999999999\n").unwrap();
        PidFile::create(&path).unwrap();
    }
}
