//! The fleet at a glance (`GET /v1/admin/summary`): counts, tags, versions and nodes online
//! over time.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::error::HubApiError;
use super::state::Hub;
use super::store::read;
use super::views::{NodeState, contact, online_window_ms};

/// How far back the fleet's online series goes, in ms.
const SERIES_MS: u64 = 86_400_000;

/// `GET /v1/admin/summary`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The hub's clock, in ms since the Unix epoch.
    pub now_ms: u64,
    /// The nodes' heartbeat.
    pub heartbeat_s: u64,
    /// How long after its last contact a node counts as online.
    pub online_window_ms: u64,
    /// Node counts.
    pub nodes: Counts,
    /// Nodes per tag.
    pub tags: Vec<TagCount>,
    /// Nodes per busbar version.
    pub versions: Vec<VersionCount>,
    /// Nodes online, a sample a minute over the last day, oldest first.
    pub online_series: Vec<OnlineSample>,
}

/// Node counts of the summary.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// In `hub.toml`.
    pub total: u64,
    /// Heard from lately (not revoked).
    pub online: u64,
    /// Heard from once, not lately (not revoked).
    pub offline: u64,
    /// Never signed in (not revoked).
    pub never: u64,
    /// Refused.
    pub revoked: u64,
    /// Whose latest event for some service is a rollback or a refusal.
    pub trouble: u64,
}

/// Nodes with one tag.
#[derive(Debug, Serialize)]
pub struct TagCount {
    /// The tag.
    pub tag: String,
    /// Nodes with it.
    pub nodes: u64,
    /// Of which online.
    pub online: u64,
}

/// Nodes on one busbar version.
#[derive(Debug, Serialize)]
pub struct VersionCount {
    /// The version they announced.
    pub version: String,
    /// How many.
    pub nodes: u64,
}

/// One sample of the fleet.
#[derive(Debug, Serialize)]
pub struct OnlineSample {
    /// When.
    pub at_ms: u64,
    /// Online then.
    pub online: u64,
    /// Nodes then.
    pub total: u64,
}

/// Counts the nodes of `hub.toml` by state: `(counts, per tag, per version)`.
fn count(hub: &Hub, lights: &std::collections::HashMap<String, read::Light>) -> Summary {
    let config = hub.config.load();
    let now = busbar_base::time::unix_ms();
    let window = online_window_ms(config.heartbeat_s);
    let mut counts = Counts::default();
    let mut tags: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, entry) in &config.nodes {
        let light = lights.get(id);
        let state = contact(
            entry.revoked,
            light.and_then(|l| l.last_seen_ms),
            now,
            window,
        );
        let on = state == NodeState::Online;
        counts.total += 1;
        *match state {
            NodeState::Revoked => &mut counts.revoked,
            NodeState::Never => &mut counts.never,
            NodeState::Online => &mut counts.online,
            _ => &mut counts.offline,
        } += 1;
        counts.trouble += u64::from(light.is_some_and(|l| l.trouble));
        for t in &entry.tags {
            let c = tags.entry(t.as_str()).or_default();
            c.0 += 1;
            c.1 += u64::from(on);
        }
        if let Some(v) = light.and_then(|l| l.runtime_version.as_deref()) {
            *versions.entry(v).or_default() += 1;
        }
    }
    Summary {
        now_ms: now,
        heartbeat_s: config.heartbeat_s,
        online_window_ms: window,
        nodes: counts,
        tags: tags
            .into_iter()
            .map(|(tag, (nodes, online))| TagCount {
                tag: tag.into(),
                nodes,
                online,
            })
            .collect(),
        versions: versions
            .into_iter()
            .map(|(version, nodes)| VersionCount {
                version: version.into(),
                nodes,
            })
            .collect(),
        online_series: Vec::new(),
    }
}

/// The fleet's counts, given every node's [`read::Light`]: `(online, total)` of the nodes
/// not revoked.
pub fn online_now(
    hub: &Hub,
    lights: &std::collections::HashMap<String, read::Light>,
) -> (u64, u64) {
    let c = count(hub, lights).nodes;
    (c.online, c.total - c.revoked)
}

/// `GET /v1/admin/summary`.
pub async fn summary(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Json<Summary>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let since = busbar_base::time::unix_ms().saturating_sub(SERIES_MS);
    let (lights, series) = hub
        .store
        .read(move |conn| Ok((read::lights(conn)?, read::online(conn, since)?)))
        .await?;
    let mut summary = count(&hub, &lights);
    summary.online_series = series
        .into_iter()
        .map(|(at_ms, online, total)| OnlineSample {
            at_ms,
            online,
            total,
        })
        .collect();
    Ok(Json(summary))
}
