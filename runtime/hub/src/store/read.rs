//! The store's queries.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::protocol::{EventKind, FleetService, NodeEvent, ServiceStatus, SignIn};
use busbar_base::digest::Sha256;

/// What a listing filters and counts on, for one node.
#[derive(Debug, Clone, Default)]
pub struct Light {
    /// Its last contact.
    pub last_seen_ms: Option<u64>,
    /// Whether its latest event for some service is a rollback or a refusal.
    pub trouble: bool,
    /// The busbar version it announced.
    pub runtime_version: Option<String>,
}

/// Every node's [`Light`] row, by id.
pub fn lights(conn: &Connection) -> anyhow::Result<HashMap<String, Light>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, last_seen_ms, trouble, runtime_version FROM nodes")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Light {
                last_seen_ms: r.get(1)?,
                trouble: r.get::<_, i64>(2)? != 0,
                runtime_version: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the store holds of one node.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// What it said at its last sign-in.
    pub identity: Option<SignIn>,
    /// Its last contact.
    pub last_seen_ms: Option<u64>,
    /// Its services at its last status (none before its first).
    pub services: Option<Vec<ServiceStatus>>,
    /// Its last `events` events, oldest first.
    pub events: Vec<NodeEvent>,
    /// Its messages per second between its last two reports.
    pub messages_per_s: Option<f64>,
    /// Whether its latest event for some service is a rollback or a refusal.
    pub trouble: bool,
}

/// Node `id` with its last `events` events; `None` when it never reported.
pub fn node(conn: &Connection, id: &str, events: usize) -> anyhow::Result<Option<Stored>> {
    let row = conn
        .prepare_cached(
            "SELECT identity, last_seen_ms, messages_per_s, status_ms IS NOT NULL, trouble
             FROM nodes WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<u64>>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })
        .optional()?;
    let Some((identity, last_seen_ms, messages_per_s, reported, trouble)) = row else {
        return Ok(None);
    };
    let identity = identity
        .map(|j| serde_json::from_str::<SignIn>(&j))
        .transpose()
        .map_err(|e| anyhow::anyhow!("node `{id}`: its stored identity does not parse: {e}"))?;
    let mut services = conn.prepare_cached(
        "SELECT name, sha256, state, restarts, processed FROM node_services
         WHERE node = ?1 ORDER BY position",
    )?;
    let services: Vec<ServiceStatus> = services
        .query_map(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?
        .map(|row| {
            let (name, sha, state, restarts, processed) = row?;
            Ok(ServiceStatus {
                sha256: sha.map(|s| digest(&s)).transpose()?,
                name,
                state,
                restarts,
                processed: processed.and_then(|p| u64::try_from(p).ok()),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut recent = conn.prepare_cached(
        "SELECT at_ms, service, kind, sha256, detail FROM events
         WHERE node = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let mut events: Vec<NodeEvent> = recent
        .query_map(params![id, events], |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .map(|row| {
            let (at_ms, service, kind, sha, detail) = row?;
            Ok(NodeEvent {
                at_ms,
                service,
                kind: kind_of(&kind)?,
                sha256: digest(&sha)?,
                detail,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    events.reverse();
    Ok(Some(Stored {
        identity,
        last_seen_ms,
        services: reported.then_some(services),
        events,
        messages_per_s,
        trouble,
    }))
}

/// A stored sha256, checked.
fn digest(text: &str) -> anyhow::Result<Sha256> {
    Sha256::parse(text).map_err(|e| anyhow::anyhow!("a stored sha256 does not parse: {e}"))
}

/// A stored event kind, checked.
fn kind_of(text: &str) -> anyhow::Result<EventKind> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| anyhow::anyhow!("a stored event kind `{text}` does not parse: {e}"))
}

/// Node `id`'s messages per second over the last hour: `(ms, rate)`, oldest first.
pub fn rates(conn: &Connection, id: &str) -> anyhow::Result<Vec<(u64, f64)>> {
    let since = busbar_base::time::unix_ms().saturating_sub(super::schema::RATES_MS) / 60_000;
    let mut stmt = conn.prepare_cached(
        "SELECT minute, messages_per_s FROM rates WHERE node = ?1 AND minute >= ?2
         ORDER BY minute",
    )?;
    let rows = stmt.query_map(params![id, since], |r| {
        Ok((r.get::<_, u64>(0)? * 60_000, r.get::<_, f64>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The fleet samples since `since_ms`: `(ms, online, total)`, oldest first.
pub fn online(conn: &Connection, since_ms: u64) -> anyhow::Result<Vec<(u64, u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, online, total FROM online WHERE at_ms >= ?1 ORDER BY at_ms",
    )?;
    let rows = stmt.query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Which node runs which version of which service: `(service, sha256, node)`.
pub fn running(conn: &Connection) -> anyhow::Result<Vec<(String, Option<String>, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, sha256, node FROM node_services ORDER BY name, sha256, node",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest event of each node and service that is a rollback or a refusal:
/// `(node, event)`.
pub fn troubles(conn: &Connection) -> anyhow::Result<Vec<(String, NodeEvent)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node, at_ms, service, kind, sha256, detail FROM latest_events
         WHERE kind <> 'swapped' ORDER BY service, at_ms DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    rows.map(|row| {
        let (node, at_ms, service, kind, sha, detail) = row?;
        Ok((
            node,
            NodeEvent {
                at_ms,
                service,
                kind: kind_of(&kind)?,
                sha256: digest(&sha)?,
                detail,
            },
        ))
    })
    .collect()
}

/// The signed entries kept of `service`, newest first: `(published ms, entry)`.
pub fn entries(conn: &Connection, service: &str) -> anyhow::Result<Vec<(u64, FleetService)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT published_ms, entry FROM entries WHERE service = ?1 ORDER BY published_ms DESC",
    )?;
    let rows = stmt.query_map(params![service], |r| {
        Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (at, json) = row?;
        let entry = serde_json::from_str(&json)
            .map_err(|e| anyhow::anyhow!("a kept entry of `{service}` does not parse: {e}"))?;
        Ok((at, entry))
    })
    .collect()
}
