//! Downloading one component (or precompiled artifact) into the fleet cache: signature
//! checked first, streamed into a `.part` file (resumed with a Range request after a broken transfer), size-capped, sha256
//! checked, then fsynced and renamed into place. Transient failures are retried with
//! jittered backoff.

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client::{HubClient, HubError};
use super::protocol::{Artifact, FleetService};
use super::store::Store;
use busbar_base::digest::Sha256 as Digest256;
use busbar_base::files::sync_dir;

/// Attempts per component before giving up (until the next manifest round).
const ATTEMPTS: u32 = 6;

/// Why a component could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Something about the component itself is wrong; trying again will not help.
    #[error("service `{service}` version {sha}: {reason}")]
    Refused {
        service: String,
        sha: String,
        reason: String,
    },
    /// The transfer kept failing.
    #[error("service `{service}` version {sha}: download failed after {attempts} attempts: {last}")]
    Failed {
        service: String,
        sha: String,
        attempts: u32,
        last: String,
    },
}

/// One try's failure.
enum Attempt {
    Retry(String),
    Refuse(String),
}

/// Makes sure the component of `svc` is in the cache and may be used: its entry signed by
/// `key`, at most `cap` bytes, with the sha256 the manifest names. Returns its path.
pub async fn fetch(
    hub: &HubClient,
    store: &Store,
    key: &VerifyingKey,
    svc: &FleetService,
    cap: u64,
) -> Result<PathBuf, DownloadError> {
    let refused = |reason: String| DownloadError::Refused {
        service: svc.name.clone(),
        sha: svc.sha256.short().to_owned(),
        reason,
    };
    let sha = &svc.sha256;
    super::protocol::verify_entry(key, svc).map_err(|e| refused(format!("refused: {e}")))?;
    let path = store.blob(sha);
    if path.exists() {
        return Ok(path);
    }
    if svc.size > cap {
        return Err(refused(format!(
            "the component is {} bytes, more than hub.max_component_bytes = {cap}",
            svc.size
        )));
    }
    let blob = Blob {
        sha,
        size: svc.size,
        path: &path,
        part: store.partial(sha),
        what: "component",
    };
    download(hub, &blob, svc).await.map(|()| path)
}

/// Makes sure `artifact` of `svc` is in the cache, at most `cap` bytes, with the sha256 it
/// names (its signature is checked before: [`super::Fleet::accepted`]). Returns its path.
pub async fn fetch_artifact(
    hub: &HubClient,
    store: &Store,
    svc: &FleetService,
    artifact: &Artifact,
    cap: u64,
) -> Result<PathBuf, DownloadError> {
    let path = store.artifact(&artifact.sha256);
    if path.exists() {
        return Ok(path);
    }
    if artifact.size > cap {
        return Err(DownloadError::Refused {
            service: svc.name.clone(),
            sha: svc.sha256.short().to_owned(),
            reason: format!(
                "its artifact for {} is {} bytes, more than hub.max_artifact_bytes = {cap}",
                artifact.target, artifact.size
            ),
        });
    }
    let blob = Blob {
        sha: &artifact.sha256,
        size: artifact.size,
        path: &path,
        part: store.partial(&artifact.sha256),
        what: "artifact",
    };
    download(hub, &blob, svc).await.map(|()| path)
}

/// One file to download from `/v1/blobs/{sha}`.
struct Blob<'a> {
    sha: &'a Digest256,
    size: u64,
    /// Where it goes once verified.
    path: &'a std::path::Path,
    /// Where it grows meanwhile.
    part: PathBuf,
    /// `component` or `artifact`, for messages.
    what: &'static str,
}

/// Downloads `blob` for `svc`, retrying transient failures.
async fn download(
    hub: &HubClient,
    blob: &Blob<'_>,
    svc: &FleetService,
) -> Result<(), DownloadError> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match try_fetch(hub, blob).await {
            Ok(()) => return Ok(()),
            Err(Attempt::Refuse(reason)) => {
                return Err(DownloadError::Refused {
                    service: svc.name.clone(),
                    sha: svc.sha256.short().to_owned(),
                    reason,
                });
            }
            Err(Attempt::Retry(reason)) => {
                tracing::warn!(service = %svc.name, sha256 = blob.sha.short(), what = blob.what, attempt, %reason, "download failed; retrying");
                last = reason;
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(busbar_base::net::backoff(attempt, Duration::from_secs(5))).await;
        }
    }
    Err(DownloadError::Failed {
        service: svc.name.clone(),
        sha: svc.sha256.short().to_owned(),
        attempts: ATTEMPTS,
        last: format!("{} {}: {last}", blob.what, blob.sha.short()),
    })
}

/// The first byte of a `206` answer, from `Content-Range: bytes START-END/SIZE`.
fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let value = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

async fn try_fetch(hub: &HubClient, blob: &Blob<'_>) -> Result<(), Attempt> {
    let (sha, size, what) = (blob.sha, blob.size, blob.what);
    let part = blob.part.as_path();
    let io =
        |what: &str, e: std::io::Error| Attempt::Retry(format!("{what} {}: {e}", part.display()));
    let mut have = tokio::fs::metadata(part).await.map_or(0, |m| m.len());
    if have >= size {
        // Complete (a crash came before the rename) or longer than it should be: check it
        // from the start.
        have = 0;
        let _ = tokio::fs::remove_file(part).await;
    }
    let resp = hub.blob(sha.as_str(), have).await.map_err(|e| match e {
        e @ HubError::Status { status: 404, .. } => Attempt::Refuse(e.to_string()),
        HubError::Status { status: 416, .. } => {
            let _ = std::fs::remove_file(part);
            Attempt::Retry("the hub refused the resume range; starting over".into())
        }
        e if e.is_transient() => Attempt::Retry(e.to_string()),
        e => Attempt::Refuse(e.to_string()),
    })?;
    let resumed = resp.status() == StatusCode::PARTIAL_CONTENT && have > 0;
    if resumed && content_range_start(&resp) != Some(have) {
        let _ = tokio::fs::remove_file(part).await;
        return Err(Attempt::Retry(format!(
            "the hub resumed at another offset than {have} (Content-Range {:?}); starting over",
            resp.headers().get(reqwest::header::CONTENT_RANGE)
        )));
    }
    let mut hasher = Sha256::new();
    let mut file = if resumed {
        let mut f = tokio::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(part)
            .await
            .map_err(|e| io("opening", e))?;
        let mut buf = vec![0; 64 << 10];
        loop {
            let n = f.read(&mut buf).await.map_err(|e| io("reading", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        tracing::info!(
            sha256 = sha.short(),
            from = have,
            "resuming the component download"
        );
        f
    } else {
        have = 0;
        tokio::fs::File::create(part)
            .await
            .map_err(|e| io("creating", e))?
    };
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Attempt::Retry(hub.unreachable(&e).to_string()))?;
        have += chunk.len() as u64;
        if have > size {
            let _ = tokio::fs::remove_file(part).await;
            return Err(Attempt::Refuse(format!(
                "the hub sent more than the {size} bytes the manifest names"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| io("writing", e))?;
    }
    file.flush().await.map_err(|e| io("writing", e))?;
    if have < size {
        return Err(Attempt::Retry(format!(
            "the transfer ended after {have} of {size} bytes"
        )));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != sha.as_str() {
        let _ = tokio::fs::remove_file(part).await;
        return Err(Attempt::Refuse(format!(
            "refused: the downloaded {what} has sha256 {actual}, not the {sha} the publisher \
             signed (tampered or corrupted blob)"
        )));
    }
    file.sync_all().await.map_err(|e| io("syncing", e))?;
    drop(file);
    let path = blob.path;
    tokio::fs::rename(part, path)
        .await
        .map_err(|e| io("renaming", e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    tracing::info!(
        sha256 = sha.short(),
        bytes = size,
        "{what} downloaded and verified"
    );
    Ok(())
}
