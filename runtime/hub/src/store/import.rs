//! The one-time import of the `nodes/<id>.json` files earlier hubs wrote (one fsynced JSON
//! file per node), into the store.

use std::path::Path;

use rusqlite::Connection;
use serde::Deserialize;

use crate::protocol::{NodeEvent, NodeStatus, SignIn};

/// What an earlier hub kept in `nodes/<id>.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeFile {
    identity: Option<SignIn>,
    last_seen_ms: Option<u64>,
    status: Option<NodeStatus>,
    events: Vec<NodeEvent>,
}

/// Imports every readable `nodes/<id>.json`; a file that does not parse is named in the log
/// and skipped (the node reports again at its next heartbeat).
pub(super) fn import(conn: &Connection, dir: &Path) -> rusqlite::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "json"))
            .filter(|id| busbar_base::names::check_id(id).is_ok())
        else {
            continue;
        };
        let file = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<NodeFile>(&b).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %path.display(), "not imported: {e}");
                continue;
            }
        };
        // A record without a last contact was never heard from: nothing to import.
        let Some(at) = file.last_seen_ms else {
            continue;
        };
        if let Some(identity) = file.identity {
            super::write::sign_in(conn, id, &identity, at)?;
        }
        if file.status.is_some() || !file.events.is_empty() {
            let mut status = file.status.unwrap_or_default();
            status.events = file.events;
            super::write::status(conn, id, &status, at)?;
        }
        count += 1;
    }
    Ok(count)
}
