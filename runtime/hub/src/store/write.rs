//! The store's writes, each applied in the writer's transaction.

use rusqlite::{Connection, OptionalExtension as _, params};

use super::schema::{MAX_ENTRIES, MAX_EVENTS, MAX_LATEST, ONLINE_DAYS, RATES_MS};
use crate::protocol::{FleetService, NodeStatus, SignIn};

/// One write.
#[derive(Debug, Clone)]
pub enum Write {
    /// A node signed in.
    SignIn {
        /// Its id.
        node: String,
        /// What it said.
        identity: Box<SignIn>,
    },
    /// A node's status (its heartbeat): its services now, and its new events.
    Status {
        /// Its id.
        node: String,
        /// What it reported.
        status: NodeStatus,
    },
    /// A node was heard from (a log batch).
    Seen {
        /// Its id.
        node: String,
    },
    /// A fleet sample: how many of how many nodes were online.
    Online {
        /// Online.
        online: u64,
        /// Of.
        total: u64,
    },
    /// A signed entry was published: kept so it can be published again.
    Entry(Box<FleetService>),
    /// Drops what is kept of nodes no longer in `hub.toml`.
    Forget(Vec<String>),
}

impl Write {
    /// Applies the write at `now` (ms since the Unix epoch).
    pub fn apply(&self, conn: &Connection, now: u64) -> rusqlite::Result<()> {
        match self {
            Write::SignIn { node, identity } => sign_in(conn, node, identity, now),
            Write::Status { node, status: s } => status(conn, node, s, now),
            Write::Seen { node } => seen(conn, node, now),
            Write::Online { online, total } => {
                conn.execute(
                    "INSERT OR REPLACE INTO online (at_ms, online, total) VALUES (?1, ?2, ?3)",
                    params![now, online, total],
                )?;
                conn.execute(
                    "DELETE FROM online WHERE at_ms < ?1",
                    params![now.saturating_sub(ONLINE_DAYS * 86_400_000)],
                )?;
                Ok(())
            }
            Write::Entry(entry) => self::entry(conn, entry, now),
            Write::Forget(nodes) => {
                for node in nodes {
                    for table in ["nodes", "node_services", "events", "latest_events", "rates"] {
                        let column = if table == "nodes" { "id" } else { "node" };
                        conn.execute(
                            &format!("DELETE FROM {table} WHERE {column} = ?1"),
                            params![node],
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Records `at` as the node's last contact (creating its row).
fn seen(conn: &Connection, node: &str, at: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO nodes (id, last_seen_ms) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET last_seen_ms = MAX(COALESCE(last_seen_ms, 0), excluded.last_seen_ms)",
        params![node, at],
    )?;
    Ok(())
}

/// A sign-in: the node's identity and last contact.
pub(super) fn sign_in(
    conn: &Connection,
    node: &str,
    identity: &SignIn,
    at: u64,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(identity)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    seen(conn, node, at)?;
    conn.execute(
        "UPDATE nodes SET identity = ?2, runtime_version = ?3 WHERE id = ?1",
        params![node, json, identity.runtime_version],
    )?;
    Ok(())
}

/// A status: the node's services replace the ones kept, its events are appended (the oldest
/// beyond [`MAX_EVENTS`] dropped), and its message rate is derived from the counters.
pub(super) fn status(
    conn: &Connection,
    node: &str,
    status: &NodeStatus,
    at: u64,
) -> rusqlite::Result<()> {
    seen(conn, node, at)?;
    conn.execute(
        "UPDATE nodes SET status_ms = ?2 WHERE id = ?1",
        params![node, at],
    )?;
    conn.execute("DELETE FROM node_services WHERE node = ?1", params![node])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO node_services (node, position, name, sha256, state, restarts, processed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (i, s) in status.services.iter().enumerate() {
        insert.execute(params![
            node,
            i,
            s.name,
            s.sha256.as_ref().map(|d| d.as_str()),
            s.state,
            s.restarts,
            s.processed.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
        ])?;
    }
    for e in &status.events {
        conn.execute(
            "INSERT INTO events (node, at_ms, service, kind, sha256, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                node,
                e.at_ms,
                e.service,
                e.kind.as_str(),
                e.sha256.as_str(),
                e.detail
            ],
        )?;
        conn.execute(
            "INSERT INTO latest_events (node, service, at_ms, kind, sha256, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (node, service) DO UPDATE SET at_ms = excluded.at_ms,
                 kind = excluded.kind, sha256 = excluded.sha256, detail = excluded.detail",
            params![
                node,
                e.service,
                e.at_ms,
                e.kind.as_str(),
                e.sha256.as_str(),
                e.detail
            ],
        )?;
    }
    if !status.events.is_empty() {
        conn.execute(
            "DELETE FROM events WHERE node = ?1 AND seq <= (
                 SELECT seq FROM events WHERE node = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![node, MAX_EVENTS],
        )?;
        conn.execute(
            "DELETE FROM latest_events WHERE node = ?1 AND service IN (
                 SELECT service FROM latest_events WHERE node = ?1
                 ORDER BY at_ms DESC LIMIT -1 OFFSET ?2)",
            params![node, MAX_LATEST],
        )?;
        conn.execute(
            "UPDATE nodes SET trouble = EXISTS (
                 SELECT 1 FROM latest_events WHERE node = ?1 AND kind <> 'swapped')
             WHERE id = ?1",
            params![node],
        )?;
    }
    rate(conn, node, status, at)
}

/// The node's messages per second from the sum of its services' counters and the previous
/// report's; a sample a minute kept for [`RATES_MS`].
fn rate(conn: &Connection, node: &str, status: &NodeStatus, at: u64) -> rusqlite::Result<()> {
    let counted: Vec<u64> = status.services.iter().filter_map(|s| s.processed).collect();
    if counted.is_empty() {
        return Ok(());
    }
    let total =
        i64::try_from(counted.iter().fold(0u64, |a, b| a.saturating_add(*b))).unwrap_or(i64::MAX);
    let before: Option<(Option<i64>, Option<i64>)> = conn
        .query_row(
            "SELECT processed, processed_at_ms FROM nodes WHERE id = ?1",
            params![node],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let at_i = i64::try_from(at).unwrap_or(i64::MAX);
    let per_s = match before {
        Some((Some(was), Some(then))) if total >= was && at_i > then => {
            Some((total - was) as f64 * 1000.0 / (at_i - then) as f64)
        }
        _ => None,
    };
    conn.execute(
        "UPDATE nodes SET processed = ?2, processed_at_ms = ?3, messages_per_s = ?4 WHERE id = ?1",
        params![node, total, at_i, per_s],
    )?;
    if let Some(per_s) = per_s {
        conn.execute(
            "INSERT OR REPLACE INTO rates (node, minute, messages_per_s) VALUES (?1, ?2, ?3)",
            params![node, at / 60_000, per_s],
        )?;
        conn.execute(
            "DELETE FROM rates WHERE node = ?1 AND minute < ?2",
            params![node, at.saturating_sub(RATES_MS) / 60_000],
        )?;
    }
    Ok(())
}

/// A published entry, kept (at most [`MAX_ENTRIES`] per service, the newest).
fn entry(conn: &Connection, entry: &FleetService, at: u64) -> rusqlite::Result<()> {
    let json = serde_json::to_string(entry)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO entries (service, sha256, signature, published_ms, entry)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (service, sha256, signature) DO UPDATE SET
             published_ms = excluded.published_ms, entry = excluded.entry",
        params![entry.name, entry.sha256.as_str(), entry.signature, at, json],
    )?;
    conn.execute(
        "DELETE FROM entries WHERE service = ?1 AND published_ms < (
             SELECT published_ms FROM entries WHERE service = ?1
             ORDER BY published_ms DESC LIMIT 1 OFFSET ?2)",
        params![entry.name, MAX_ENTRIES - 1],
    )?;
    Ok(())
}
