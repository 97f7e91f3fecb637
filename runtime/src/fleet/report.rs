//! What a node tells its hub: status (services, versions, rollbacks), events, and while
//! debug is on its services' log lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Fleet;
use super::bounds::{MAX_DETAIL_CHARS, MAX_EVENTS_PER_STATUS, MAX_LOG_LINE_CHARS, cut};
use super::client::HubError;
use super::protocol::{EventKind, LogBatch, NodeEvent, NodeStatus, ServiceStatus};
use super::sync::{LOG_BATCH, LOG_BATCH_BYTES, LOG_FLUSH, WATCH_EVERY};
use crate::node::NodeHandle;
use crate::observe::unix_ms;
use crate::service::{PROBATION, State};
use busbar_base::digest::{Sha256, shown};

impl Fleet {
    /// Queues an event for the hub (at most [`MAX_EVENTS_PER_STATUS`] unsent: the oldest go
    /// first), with the service name and detail cut to what the hub accepts.
    pub(super) fn event(&self, service: &str, kind: EventKind, sha256: &Sha256, detail: String) {
        let mut events = busbar_base::sync::lock(&self.events);
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

    /// Notices rollbacks and versions that ran through their probation (remembered as good).
    pub(super) async fn watch_services(&self, node: &NodeHandle) {
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
    pub(super) fn note_rollbacks(&self, node: &NodeHandle) {
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

    pub(super) fn status(&self, node: &NodeHandle, take_events: bool) -> NodeStatus {
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
                processed: Some(r.counters.processed),
            })
            .collect();
        let events = if take_events {
            std::mem::take(&mut *busbar_base::sync::lock(&self.events))
        } else {
            Vec::new()
        };
        NodeStatus { services, events }
    }

    /// Sends the status every heartbeat, and soon when something happened. Heartbeats are
    /// jittered so that nodes started, or told of a publish, together spread out over the
    /// interval: the first comes at a random point of it, the next ones every 0.9 to 1.1
    /// heartbeats, and a report sent because something happened does not move them (it waits
    /// up to a tenth of a heartbeat, at most a second, itself).
    pub(super) async fn report(&self, node: &NodeHandle) {
        let heartbeat_ms = || self.session().map_or(30, |s| s.heartbeat_s.max(1)) * 1000;
        let mut next = tokio::time::Instant::now() + heartbeat_in(heartbeat_ms(), true);
        loop {
            let beat = tokio::select! {
                () = tokio::time::sleep_until(next) => true,
                () = self.report_now.notified() => false,
            };
            let ms = heartbeat_ms();
            if beat {
                next = tokio::time::Instant::now() + heartbeat_in(ms, false);
            } else {
                tokio::time::sleep(report_delay(ms)).await;
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
    pub(super) fn keep_events(&self, unsent: Vec<NodeEvent>) {
        let mut events = busbar_base::sync::lock(&self.events);
        let newer = std::mem::replace(&mut *events, unsent);
        events.extend(newer);
        let excess = events.len().saturating_sub(MAX_EVENTS_PER_STATUS);
        events.drain(..excess);
    }

    /// While the hub's settings say `debug`, sends the node's log lines in batches.
    pub(super) async fn forward_logs(&self) {
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
    let at = std::time::UNIX_EPOCH + Duration::from_millis(line.ts_ms);
    let mut text = format!(
        "{} {} {}{}",
        humantime::format_rfc3339_millis(at),
        line.level,
        line.service
            .as_deref()
            .map(|s| format!("[{s}] "))
            .unwrap_or_default(),
        line.message
    );
    for (k, v) in &line.fields {
        // Text as it is (not as a JSON string with its quotes escaped).
        match v {
            serde_json::Value::String(v) => text.push_str(&format!(" {k}={v}")),
            v => text.push_str(&format!(" {k}={v}")),
        }
    }
    cut(&text, MAX_LOG_LINE_CHARS - 1)
}

/// When the next heartbeat of `ms` is due from now: anywhere in the first interval, then
/// 0.9 to 1.1 of one.
fn heartbeat_in(ms: u64, first: bool) -> Duration {
    let ms = if first {
        rand::random_range(0..=ms)
    } else {
        rand::random_range(ms * 9 / 10..=ms * 11 / 10)
    };
    Duration::from_millis(ms)
}

/// How long a report after a change waits: up to a tenth of a heartbeat of `ms`, at most 1 s.
fn report_delay(ms: u64) -> Duration {
    Duration::from_millis(rand::random_range(0..=(ms / 10).min(1000)))
}

#[cfg(test)]
mod jitter_tests {
    use super::*;

    #[test]
    fn heartbeats_spread_over_the_interval() {
        let first: Vec<_> = (0..1000).map(|_| heartbeat_in(60_000, true)).collect();
        assert!(first.iter().all(|d| *d <= Duration::from_secs(60)));
        // A fleet started together: its first heartbeats fall all over the minute.
        let early = first
            .iter()
            .filter(|d| **d < Duration::from_secs(30))
            .count();
        assert!(
            (300..=700).contains(&early),
            "{early} of 1000 in the first half"
        );
        for _ in 0..1000 {
            let d = heartbeat_in(60_000, false);
            assert!(
                Duration::from_secs(54) <= d && d <= Duration::from_secs(66),
                "{d:?}"
            );
            assert!(report_delay(60_000) <= Duration::from_secs(1));
            assert!(report_delay(2_000) <= Duration::from_millis(200));
        }
    }
}
