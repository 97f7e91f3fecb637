//! The store's tables and their retention.
//!
//! Every table is bounded: `events` keeps [`MAX_EVENTS`] per node, `rates` an hour per node
//! (a sample a minute), `online` [`ONLINE_DAYS`] days (a sample a minute), `entries`
//! [`MAX_ENTRIES`] per service, `latest_events` [`MAX_LATEST`] services per node; `nodes` and
//! `node_services` hold a row per node (and service it reported last) of `hub.toml`: rows of
//! nodes taken out of it are dropped.

use std::path::Path;

use rusqlite::{Connection, params};

/// Events kept per node; older ones are dropped. With each event's detail bounded
/// ([`crate::bounds::MAX_DETAIL_CHARS`]), a node's events stay under about 1 MB whatever its
/// token sends.
pub const MAX_EVENTS: i64 = 200;
/// How long the per-node message rates are kept, in ms.
pub const RATES_MS: u64 = 3_600_000;
/// How many days of fleet samples (nodes online) are kept.
pub const ONLINE_DAYS: u64 = 7;
/// Signed entries kept per service (what the console can publish again).
pub const MAX_ENTRIES: i64 = 100;
/// Services per node whose latest event is kept (for the rollout's flags); the oldest go.
pub const MAX_LATEST: i64 = 256;

/// The version of the tables below.
const VERSION: i64 = 1;

/// The tables.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    identity TEXT,
    runtime_version TEXT,
    last_seen_ms INTEGER,
    status_ms INTEGER,
    processed INTEGER,
    processed_at_ms INTEGER,
    messages_per_s REAL,
    trouble INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS node_services (
    node TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL,
    restarts INTEGER NOT NULL,
    processed INTEGER,
    PRIMARY KEY (node, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS node_services_by_name ON node_services (name, sha256);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_node ON events (node, seq);
CREATE TABLE IF NOT EXISTS latest_events (
    node TEXT NOT NULL,
    service TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (node, service)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rates (
    node TEXT NOT NULL,
    minute INTEGER NOT NULL,
    messages_per_s REAL NOT NULL,
    PRIMARY KEY (node, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online (
    at_ms INTEGER PRIMARY KEY,
    online INTEGER NOT NULL,
    total INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    service TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    signature TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (service, sha256, signature)
) WITHOUT ROWID;
";

/// Puts the database in WAL mode, creates the tables, and imports `nodes/*.json` once.
pub fn prepare(conn: &mut Connection, dir: &Path) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "the hub's store is not in WAL mode: readers wait for writes");
    }
    conn.execute_batch(SCHEMA)?;
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
            r.get::<_, String>(0)
        })
        .map(|v| v.parse().ok())
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match version {
        Some(VERSION) => Ok(()),
        Some(other) => Err(rusqlite::Error::InvalidParameterName(format!(
            "hub.db is of version {other}, this hub knows version {VERSION}: run the hub it \
             was written by, or move it away"
        ))),
        None => {
            let tx = conn.transaction()?;
            let imported = super::import::import(&tx, &dir.join("nodes"))?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('version', ?1)",
                params![VERSION.to_string()],
            )?;
            tx.commit()?;
            if imported > 0 {
                tracing::info!(
                    nodes = imported,
                    "imported the node records of nodes/*.json into hub.db (the files are no longer read)"
                );
            }
            Ok(())
        }
    }
}
