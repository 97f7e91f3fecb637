//! The endpoints nodes call: sign-in, manifest (long poll), blobs, status, logs.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{HubApiError, blocking};
use super::state::Hub;
use super::store::Write;
use crate::bounds::escape_line;
use crate::protocol::{LogBatch, NodeStatus, SignIn, SignedIn};

/// `POST /v1/sign-in`.
pub async fn sign_in(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Json<SignedIn>, HubApiError> {
    let (id, _) = hub.authorize_node(&headers)?;
    let Json(sign_in) = body?;
    sign_in.check().map_err(HubApiError::bad_request)?;
    if sign_in.node_id != id {
        return Err(HubApiError::forbidden(format!(
            "this token belongs to node `{id}`, not to `{}`",
            sign_in.node_id
        )));
    }
    tracing::info!(
        node = %id,
        target = %sign_in.target,
        runtime_version = %sign_in.runtime_version,
        hostname = %sign_in.hostname,
        "node signed in"
    );
    // A store that cannot take it now (a full disk) does not keep the node out: its
    // manifest and blobs do not need it; the identity is stored at its next sign-in.
    if let Err(e) = hub
        .store
        .write(Write::SignIn {
            node: id.clone(),
            identity: Box::new(sign_in),
        })
        .await
    {
        tracing::warn!(node = %id, "signed in, but its identity is not stored: {}", e.message);
    }
    let config = hub.config.load();
    Ok(Json(SignedIn {
        node_id: id,
        heartbeat_s: config.heartbeat_s,
        long_poll_s: config.long_poll_s,
    }))
}

/// The query of `GET /v1/manifest`.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// How long to wait for a change, in seconds (capped at `long_poll_s`).
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/manifest?wait=S`: the manifest, or `304` when it still has the ETag the node
/// sent and did not change within `wait` seconds.
pub async fn manifest(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, HubApiError> {
    let (id, _) = hub.authorize_node(&headers)?;
    let Query(query) = query?;
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wait = Duration::from_secs(query.wait.min(hub.config.load().long_poll_s));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first look, so a change in between is not missed.
    let mut changes = hub.changes.subscribe();
    loop {
        changes.borrow_and_update();
        let (manifest, etag) = hub.manifest_of(&id)?;
        if !known.as_deref().is_some_and(|k| matches(k, &etag)) {
            return Ok(([(header::ETAG, etag)], Json(manifest)).into_response());
        }
        let woken = tokio::select! {
            r = tokio::time::timeout_at(deadline, changes.changed()) => matches!(r, Ok(Ok(()))),
            () = hub.cancel.cancelled() => false,
        };
        if !woken {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
    }
}

/// Whether an `If-None-Match` value names `etag` (or `*`).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Checks a sha256 in a path: 64 lowercase hex digits.
pub fn check_sha(sha: &str) -> Result<(), HubApiError> {
    match busbar_base::digest::Sha256::parse(sha) {
        Ok(d) if d.as_str() == sha => Ok(()),
        _ => Err(HubApiError::bad_request(format!(
            "`{}` is not a sha256: expected 64 lowercase hex digits",
            busbar_base::digest::shown(sha)
        ))),
    }
}

/// `GET /v1/blobs/{sha256}`, optionally with `Range` (`bytes=N-` to resume): the component
/// or artifact, from the hub's blob cache ([`super::blobs`]).
pub async fn blob(
    State(hub): State<Arc<Hub>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HubApiError> {
    hub.authorize_node(&headers)?;
    check_sha(&sha)?;
    match hub.blobs.get(&hub.dir, &sha).await? {
        Some((bytes, kind)) => Ok(super::blobs::answer(&sha, bytes, kind, &headers)),
        None => Err(HubApiError::not_found(format!("no blob {sha} on the hub"))),
    }
}

/// `POST /v1/status`: the node's services and events; also its heartbeat.
pub async fn status(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<NodeStatus>, JsonRejection>,
) -> Result<StatusCode, HubApiError> {
    let (id, _) = hub.authorize_node(&headers)?;
    let Json(status) = body?;
    status.check().map_err(HubApiError::bad_request)?;
    for e in &status.events {
        let (sha, detail) = (e.sha256.short(), escape_line(&e.detail));
        if e.kind.is_trouble() {
            tracing::warn!(node = %id, service = %e.service, kind = %e.kind, sha256 = %sha, %detail, "node event");
        } else {
            tracing::info!(node = %id, service = %e.service, kind = %e.kind, sha256 = %sha, %detail, "node event");
        }
    }
    hub.store.write(Write::Status { node: id, status }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/logs`: log lines appended to `logs/<id>.log` (control characters escaped, so a
/// line cannot forge another; the file rotated to `<id>.log.1` past [`MAX_NODE_LOG_BYTES`])
/// and to the hub's own log.
pub async fn logs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<LogBatch>, JsonRejection>,
) -> Result<StatusCode, HubApiError> {
    let (id, _) = hub.authorize_node(&headers)?;
    let Json(batch) = body?;
    batch.check().map_err(HubApiError::bad_request)?;
    let mut text = String::new();
    for line in &batch.lines {
        let line = escape_line(line.trim_end_matches(['\r', '\n']));
        tracing::info!(node = %id, "{line}");
        text.push_str(&line);
        text.push('\n');
    }
    let path = hub.dir.log(&id);
    blocking(move || append_rotated(&path, text.as_bytes(), MAX_NODE_LOG_BYTES)).await?;
    hub.store.write(Write::Seen { node: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Largest `logs/<id>.log` before it is rotated to `<id>.log.1` (one older file is kept).
pub const MAX_NODE_LOG_BYTES: u64 = 8 << 20;

/// Appends `bytes` to `path`, first moving it to `path.1` (replacing that) when it would grow
/// past `max`.
fn append_rotated(path: &std::path::Path, bytes: &[u8], max: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    if len > 0 && len + bytes.len() as u64 > max {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, &old)
            .map_err(|e| anyhow::anyhow!("cannot rotate {}: {e}", path.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| anyhow::anyhow!("cannot append to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        assert!(matches("\"abc\"", "\"abc\""));
        assert!(matches("W/\"abc\"", "\"abc\""));
        assert!(matches("\"x\", \"abc\"", "\"abc\""));
        assert!(matches("*", "\"abc\""));
        assert!(!matches("\"abd\"", "\"abc\""));
        assert!(check_sha(&"a".repeat(64)).is_ok());
        assert!(check_sha(&"A".repeat(64)).is_err());
        assert!(check_sha("../etc").is_err());
        assert!(check_sha(&"é".repeat(32)).is_err());
    }

    #[test]
    fn node_logs_rotate_past_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.log");
        for _ in 0..10 {
            append_rotated(&path, &[b'x'; 300], 1000).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 1000);
        assert!(
            std::fs::metadata(dir.path().join("gw.log.1"))
                .unwrap()
                .len()
                <= 1000
        );
    }
}
