//! The nodes as admins (and the console) look at them: the paginated and filtered listing,
//! one node, and a node's forwarded logs. Every answer is bounded: pages of at most
//! [`MAX_PAGE`] nodes with at most [`MAX_LISTED_EVENTS`] events each.

use std::ops::Bound;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::config::{NodeEntry, check_id};
use super::error::HubApiError;
use super::state::Hub;
use super::store::read::{self, Light, Stored};
use crate::protocol::{NodeRecord, NodeStatus};

/// Most nodes in one page of `GET /v1/admin/nodes`.
pub const MAX_PAGE: usize = 2000;
/// Nodes in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 500;
/// Most events per node in a listing (a node's own page has all it keeps).
pub const MAX_LISTED_EVENTS: usize = 20;
/// The header naming the `after` of the next page.
pub const NEXT_HEADER: &str = "x-busbar-next-after";

/// A node as a listing shows it: its record, and what the hub derives.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The record (`busbar hub nodes` reads this part).
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Whether it forwards its logs.
    pub debug: bool,
    /// Whether it was heard from within the online window.
    pub online: bool,
    /// Its messages per second between its last two reports.
    pub messages_per_s: Option<f64>,
    /// Whether its latest event for some service is a rollback or a refusal.
    pub trouble: bool,
}

/// One node with its message rate over the last hour.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    /// The node.
    #[serde(flatten)]
    pub view: NodeView,
    /// Its messages per second, a sample a minute, oldest first.
    pub series: Vec<RatePoint>,
}

/// One sample of a node's message rate.
#[derive(Debug, Clone, Serialize)]
pub struct RatePoint {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Messages per second.
    pub messages_per_s: f64,
}

/// A node's state, as the listing filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Heard from within the online window.
    Online,
    /// Heard from once, not lately.
    Offline,
    /// Never signed in.
    Never,
    /// Its token is refused.
    Revoked,
    /// Its latest event for some service is a rollback or a refusal.
    Trouble,
    /// It forwards its logs.
    Debug,
}

/// Whether a node last heard from at `last_seen_ms` was heard from within `window_ms` of
/// `now`.
pub fn seen_lately(last_seen_ms: Option<u64>, now: u64, window_ms: u64) -> bool {
    last_seen_ms.is_some_and(|seen| now.saturating_sub(seen) <= window_ms)
}

/// How long after its last contact a node counts as online: two heartbeats and ten seconds.
pub fn online_window_ms(heartbeat_s: u64) -> u64 {
    heartbeat_s.saturating_mul(2000).saturating_add(10_000)
}

/// A node's contact state, exactly one of: revoked, never seen, online, offline.
pub fn contact(revoked: bool, last_seen_ms: Option<u64>, now: u64, window_ms: u64) -> NodeState {
    match (revoked, last_seen_ms) {
        (true, _) => NodeState::Revoked,
        (false, None) => NodeState::Never,
        (false, seen) if seen_lately(seen, now, window_ms) => NodeState::Online,
        (false, Some(_)) => NodeState::Offline,
    }
}

/// Whether node `entry` is in `state`.
fn in_state(
    state: NodeState,
    entry: &NodeEntry,
    light: Option<&Light>,
    now: u64,
    window_ms: u64,
) -> bool {
    match state {
        NodeState::Debug => entry.debug,
        NodeState::Trouble => light.is_some_and(|l| l.trouble),
        contact_state => {
            let seen = light.and_then(|l| l.last_seen_ms);
            contact(entry.revoked, seen, now, window_ms) == contact_state
        }
    }
}

/// The query of `GET /v1/admin/nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Nodes in the page (default 500, at most [`MAX_PAGE`]).
    limit: Option<usize>,
    /// The page after this node id.
    after: Option<String>,
    /// Only nodes with this tag.
    tag: Option<String>,
    /// Only nodes in this state.
    state: Option<NodeState>,
    /// Only nodes whose id contains this (any case).
    q: Option<String>,
    /// The last events of each node (default 3, at most [`MAX_LISTED_EVENTS`]).
    events: Option<usize>,
}

/// Builds the view of node `id` from what the store holds.
fn view(id: &str, entry: &NodeEntry, stored: Option<Stored>, now: u64, window_ms: u64) -> NodeView {
    let stored = stored.unwrap_or_default();
    let lately = seen_lately(stored.last_seen_ms, now, window_ms);
    let state = contact(entry.revoked, stored.last_seen_ms, now, window_ms);
    NodeView {
        record: NodeRecord {
            node_id: id.into(),
            tags: entry.tags.clone(),
            revoked: entry.revoked,
            identity: stored.identity,
            last_seen_ms: stored.last_seen_ms,
            status: stored.services.map(|services| NodeStatus {
                services,
                events: Vec::new(),
            }),
            events: stored.events,
        },
        debug: entry.debug,
        online: state == NodeState::Online,
        // A node not heard from lately processes nothing the hub knows of.
        messages_per_s: stored.messages_per_s.filter(|_| lately),
        trouble: stored.trouble,
    }
}

/// `GET /v1/admin/nodes?limit=&after=&tag=&state=&q=&events=`: a page of nodes of `hub.toml`
/// in id order with what they reported; header [`NEXT_HEADER`] names the next page's `after`.
pub async fn nodes(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(HubApiError::bad_request(format!(
            "limit: 1 to {MAX_PAGE} nodes a page (follow `{NEXT_HEADER}` for more)"
        )));
    }
    let events = query.events.unwrap_or(3);
    if events > MAX_LISTED_EVENTS {
        return Err(HubApiError::bad_request(format!(
            "events: at most {MAX_LISTED_EVENTS} a node in a listing (a node's own page, \
             GET /v1/admin/nodes/ID, has all it keeps)"
        )));
    }
    for (name, value) in [("after", &query.after), ("tag", &query.tag)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            check_id(v).map_err(|e| HubApiError::bad_request(format!("{name}: {e}")))?;
        }
    }
    // Any text, matched without case; bounded like an id.
    let q = query.q.as_deref().map(str::to_lowercase);
    if q.as_ref().is_some_and(|q| q.chars().count() > 64) {
        return Err(HubApiError::bad_request("q: at most 64 characters"));
    }
    let config = hub.config.load_full();
    let now = busbar_base::time::unix_ms();
    let window = online_window_ms(config.heartbeat_s);
    let start = match query.after.as_deref().filter(|a| !a.is_empty()) {
        Some(after) => Bound::Excluded(after.to_owned()),
        None => Bound::Unbounded,
    };
    let listed = config.clone();
    // One read (one snapshot): what filters the nodes, then the page's records.
    let (page, next, stored) = hub
        .store
        .read(move |conn| {
            let lights = read::lights(conn)?;
            let mut page: Vec<(String, NodeEntry)> = listed
                .nodes
                .range((start, Bound::Unbounded))
                .filter(|(id, entry)| {
                    let light = lights.get(*id);
                    query
                        .tag
                        .as_ref()
                        .filter(|t| !t.is_empty())
                        .is_none_or(|t| entry.tags.contains(t))
                        && q.as_ref()
                            .is_none_or(|q| id.to_lowercase().contains(q.as_str()))
                        && query
                            .state
                            .is_none_or(|s| in_state(s, entry, light, now, window))
                })
                .take(limit + 1)
                .map(|(id, e)| (id.clone(), e.clone()))
                .collect();
            let next = if page.len() > limit {
                page.truncate(limit);
                page.last().map(|(id, _)| id.clone())
            } else {
                None
            };
            let stored = page
                .iter()
                .map(|(id, _)| read::node(conn, id, events))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((page, next, stored))
        })
        .await?;
    let views: Vec<NodeView> = page
        .iter()
        .zip(stored)
        .map(|((id, entry), s)| view(id, entry, s, now, window))
        .collect();
    let mut response = Json(views).into_response();
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&next)
    {
        response.headers_mut().insert(NEXT_HEADER, v);
    }
    Ok(response)
}

/// The node `id` of `hub.toml`, or a 404 naming it.
pub(crate) fn entry_of(hub: &Hub, id: &str) -> Result<NodeEntry, HubApiError> {
    hub.config
        .load()
        .nodes
        .get(id)
        .cloned()
        .ok_or_else(|| HubApiError::not_found(format!("unknown node `{}`", escape_id(id))))
}

/// An id from a path, shown safely in an error.
fn escape_id(id: &str) -> String {
    crate::bounds::escape_line(&id.chars().take(64).collect::<String>())
}

/// `GET /v1/admin/nodes/{id}`: the node with every event kept and its message rate.
pub async fn node(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<NodeDetail>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let entry = entry_of(&hub, &id)?;
    let window = online_window_ms(hub.config.load().heartbeat_s);
    let key = id.clone();
    let (stored, rates) = hub
        .store
        .read(move |conn| {
            let kept = usize::try_from(super::store::schema::MAX_EVENTS).unwrap_or(200);
            Ok((read::node(conn, &key, kept)?, read::rates(conn, &key)?))
        })
        .await?;
    let now = busbar_base::time::unix_ms();
    Ok(Json(NodeDetail {
        view: view(&id, &entry, stored, now, window),
        series: rates
            .into_iter()
            .map(|(at_ms, messages_per_s)| RatePoint {
                at_ms,
                messages_per_s,
            })
            .collect(),
    }))
}

/// The query of `GET /v1/admin/nodes/{id}/logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only the last this many bytes (from a line start).
    tail_bytes: Option<u64>,
}

/// `GET /v1/admin/nodes/{id}/logs?tail_bytes=N`: the node's forwarded log lines (the last N
/// bytes, cut at a line start).
pub async fn node_logs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Query(query) = query?;
    entry_of(&hub, &id)?;
    let path = hub.dir.log(&id);
    let text = super::error::blocking(move || tail(&path, query.tail_bytes)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// The last `bytes` of the file at `path` (all of it without), from the first whole line;
/// empty when there is no file.
fn tail(path: &std::path::Path, bytes: Option<u64>) -> anyhow::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = bytes.map_or(0, |b| len.saturating_sub(b));
    file.seek(SeekFrom::Start(from))
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(len - from)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let start = if from > 0 {
        buf.iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1)
    } else {
        0
    };
    Ok(String::from_utf8_lossy(buf.get(start..).unwrap_or_default()).into_owned())
}
