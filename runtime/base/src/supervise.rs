//! The node's long-lived tasks under watch (the fleet client, Com, the admin API, the hub's
//! reload task). Each runs in a task of its own; when it ends before it is told to stop (an
//! error or a panic), that is logged at error level and counted, and the task is either
//! started again after a backoff ([`restart`]) or declared dead ([`watch()`]; also a restarted
//! task that fails [`MAX_FAILURES`] times within [`FAILURE_WINDOW`]). A dead task takes the
//! node down with an error naming it, so an init system restarts it; until then `/status`
//! and `/metrics` show it and the systemd watchdog is no longer fed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Failures within [`FAILURE_WINDOW`] after which a restarted task is given up.
pub const MAX_FAILURES: usize = 5;
/// See [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where a watched task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Doing its work.
    Running,
    /// It failed; it starts again after a backoff.
    Restarting,
    /// It failed and is not started again: the node goes down.
    Dead,
}

/// One task's health, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskHealth {
    /// Where it is.
    pub state: TaskState,
    /// How often it was started again.
    pub restarts: u32,
    /// Why it last failed.
    pub last_error: Option<String>,
}

/// The health of every watched task of a node (or a hub).
#[derive(Debug)]
pub struct Health {
    tasks: Mutex<BTreeMap<&'static str, TaskHealth>>,
    /// The first dead task, once there is one.
    dead: watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            tasks: Mutex::default(),
            dead: watch::channel(None).0,
        }
    }
}

impl Health {
    /// A new, empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, TaskHealth>> {
        crate::sync::lock(&self.tasks)
    }

    /// Every watched task by name.
    pub fn report(&self) -> BTreeMap<&'static str, TaskHealth> {
        self.lock().clone()
    }

    /// Whether every watched task is running.
    pub fn all_running(&self) -> bool {
        self.lock().values().all(|t| t.state == TaskState::Running)
    }

    /// Resolves with a text naming the first task that died (never, while none does).
    pub async fn dead(&self) -> String {
        let mut rx = self.dead.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    fn set(&self, name: &'static str, state: TaskState, error: Option<String>) {
        let mut tasks = self.lock();
        let t = tasks.entry(name).or_insert(TaskHealth {
            state,
            restarts: 0,
            last_error: None,
        });
        if state == TaskState::Restarting {
            t.restarts += 1;
        }
        t.state = state;
        if error.is_some() {
            t.last_error = error;
        }
        drop(tasks);
        if state == TaskState::Dead {
            self.dead.send_if_modified(|d| {
                let first = d.is_none();
                if first {
                    *d = Some(name.to_owned());
                }
                first
            });
        }
    }
}

/// Runs `make()` as task `name` until `cancel`; when it ends otherwise (an error, a panic,
/// or returning while not asked to), starts it again after a backoff, or gives up (dead)
/// after [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`]. The task itself must end when
/// `cancel` fires.
pub fn restart<F, Fut>(
    health: &Arc<Health>,
    name: &'static str,
    cancel: CancellationToken,
    mut make: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let health = health.clone();
    tokio::spawn(async move {
        let mut failures: Vec<Instant> = Vec::new();
        loop {
            health.set(name, TaskState::Running, None);
            // Aborting this supervisor (a caller's hard stop) aborts the task too.
            let outcome = AbortOnDrop(tokio::spawn(make())).join().await;
            if cancel.is_cancelled() {
                return;
            }
            let why = failure(outcome);
            failures.retain(|at| at.elapsed() < FAILURE_WINDOW);
            failures.push(Instant::now());
            if failures.len() >= MAX_FAILURES {
                tracing::error!(
                    task = name,
                    failures = failures.len(),
                    "{name} failed {} times within {} s; giving up: {why}",
                    failures.len(),
                    FAILURE_WINDOW.as_secs()
                );
                health.set(name, TaskState::Dead, Some(why));
                return;
            }
            let wait = crate::net::backoff(failures.len() as u32 + 2, MAX_BACKOFF);
            tracing::error!(
                task = name,
                wait_ms = wait.as_millis() as u64,
                "{name} stopped: {why}; starting it again"
            );
            health.set(name, TaskState::Restarting, Some(why));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    })
}

/// Runs `task` as task `name`; when it ends before `cancel` fires (an error, a panic, or
/// returning), it is dead: logged, and the node goes down ([`Health::dead`]).
pub fn watch<Fut>(
    health: &Arc<Health>,
    name: &'static str,
    cancel: CancellationToken,
    task: Fut,
) -> impl Future<Output = ()> + Send + 'static
where
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let health = health.clone();
    health.set(name, TaskState::Running, None);
    async move {
        let outcome = AbortOnDrop(tokio::spawn(task)).join().await;
        if cancel.is_cancelled() && matches!(outcome, Ok(Ok(()))) {
            return;
        }
        let why = failure(outcome);
        tracing::error!(task = name, "{name} stopped: {why}; the node goes down");
        health.set(name, TaskState::Dead, Some(why));
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);

impl AbortOnDrop {
    async fn join(mut self) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a task ended, in words.
fn failure(outcome: Result<anyhow::Result<()>, tokio::task::JoinError>) -> String {
    match outcome {
        Ok(Ok(())) => "it ended without being asked to".into(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            format!("it panicked: {text}")
        }
        Err(_) => "it was aborted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_then_given_up() {
        let health = Health::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task = restart(&health, "flaky", CancellationToken::new(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("boom");
                }
                anyhow::bail!("failure {n}")
            }
        });
        let dead = health.dead().await;
        assert_eq!(dead, "flaky");
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), MAX_FAILURES as u32);
        let t = &health.report()["flaky"];
        assert_eq!(t.state, TaskState::Dead);
        assert_eq!(t.restarts, MAX_FAILURES as u32 - 1);
        assert!(!health.all_running());
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_task_that_stops_when_told_is_not_dead() {
        let health = Health::new();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let watched = watch(&health, "com", cancel.clone(), async move {
            stop.cancelled().await;
            Ok(())
        });
        cancel.cancel();
        watched.await;
        assert!(health.all_running());
        let failing = watch(&health, "other", CancellationToken::new(), async {
            anyhow::bail!("lost its inbox")
        });
        failing.await;
        assert_eq!(health.dead().await, "other");
        assert_eq!(
            health.report()["other"].last_error.as_deref(),
            Some("lost its inbox")
        );
    }
}
