//! Serving components and artifacts to nodes (`GET /v1/blobs/{sha256}`): from memory. A
//! blob is read from disk once (requests for it meanwhile wait for that read; at most
//! [`READS`] files are read at a time, each whole in one blocking call) and kept in a cache
//! of at most [`CACHE_BYTES`] (least recently used blobs go first; downloads in progress keep
//! theirs until they end), so a publish to thousands of nodes reads each file once, opens no
//! file per download, and each answer is a slice of shared memory written to the socket in
//! large chunks. Blobs never change (they are named by their sha256), so the cache is never
//! stale.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::HubApiError;
use super::files::FleetDir;

/// The most bytes of blobs kept in memory.
pub const CACHE_BYTES: usize = 512 << 20;
/// Blob reads from disk at once.
pub const READS: usize = 8;

/// One blob in memory.
#[derive(Debug, Clone)]
struct Blob {
    bytes: Bytes,
    kind: &'static str,
    used: u64,
}

/// The blob cache.
#[derive(Debug)]
pub struct Blobs {
    cache: Mutex<Cache>,
    reads: tokio::sync::Semaphore,
    /// One lock per blob being read, so it is read once however many ask.
    reading: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

/// What the cache holds.
#[derive(Debug, Default)]
struct Cache {
    blobs: HashMap<String, Blob>,
    bytes: usize,
    clock: u64,
}

impl Default for Blobs {
    fn default() -> Self {
        Self {
            cache: Mutex::default(),
            reads: tokio::sync::Semaphore::new(READS),
            reading: Mutex::default(),
        }
    }
}

impl Blobs {
    /// The blob `sha` (a component, else an artifact) and its content type; `None` when the
    /// hub has neither.
    pub async fn get(
        &self,
        dir: &FleetDir,
        sha: &str,
    ) -> Result<Option<(Bytes, &'static str)>, HubApiError> {
        if let Some(hit) = self.cached(sha) {
            return Ok(Some(hit));
        }
        let one = busbar_base::sync::lock(&self.reading)
            .entry(sha.to_owned())
            .or_default()
            .clone();
        let _this_blob = one.lock().await;
        let _read = self
            .reads
            .acquire()
            .await
            .map_err(|_| HubApiError::internal("the blob reader is closed"))?;
        // Another request may have read it while this one waited.
        if let Some(hit) = self.cached(sha) {
            return Ok(Some(hit));
        }
        let found = self.read(dir, sha).await;
        busbar_base::sync::lock(&self.reading).remove(sha);
        found
    }

    /// Reads blob `sha` from disk and keeps it.
    async fn read(
        &self,
        dir: &FleetDir,
        sha: &str,
    ) -> Result<Option<(Bytes, &'static str)>, HubApiError> {
        for (path, kind) in [
            (dir.blob(sha), "application/wasm"),
            (dir.artifact(sha), "application/octet-stream"),
        ] {
            match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    let bytes = Bytes::from(bytes);
                    self.keep(sha, &bytes, kind);
                    return Ok(Some((bytes, kind)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(HubApiError::internal(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(None)
    }

    /// The cached blob `sha`, marked as just used.
    fn cached(&self, sha: &str) -> Option<(Bytes, &'static str)> {
        let mut cache = busbar_base::sync::lock(&self.cache);
        cache.clock += 1;
        let clock = cache.clock;
        let blob = cache.blobs.get_mut(sha)?;
        blob.used = clock;
        Some((blob.bytes.clone(), blob.kind))
    }

    /// Keeps blob `sha`, dropping the least recently used ones to make room; a blob larger
    /// than half the cache is not kept.
    fn keep(&self, sha: &str, bytes: &Bytes, kind: &'static str) {
        if bytes.len() > CACHE_BYTES / 2 {
            return;
        }
        let mut cache = busbar_base::sync::lock(&self.cache);
        while cache.bytes + bytes.len() > CACHE_BYTES {
            let Some(oldest) = cache
                .blobs
                .iter()
                .min_by_key(|(_, b)| b.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = cache.blobs.remove(&oldest) {
                cache.bytes -= gone.bytes.len();
            }
        }
        cache.clock += 1;
        let used = cache.clock;
        cache.bytes += bytes.len();
        let old = cache.blobs.insert(
            sha.to_owned(),
            Blob {
                bytes: bytes.clone(),
                kind,
                used,
            },
        );
        if let Some(old) = old {
            cache.bytes -= old.bytes.len();
        }
    }
}

/// The answer to a blob request: whole (`200`), one range of it (`206`, `Range: bytes=N-`,
/// `N-M` or `-N`), or `416` with `Content-Range: bytes */LEN` for a range outside it or more
/// than one range.
pub fn answer(sha: &str, bytes: Bytes, kind: &'static str, headers: &HeaderMap) -> Response {
    let len = bytes.len() as u64;
    let mut response = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => (StatusCode::OK, Body::from(bytes)).into_response(),
        Some(asked) => {
            let asked = asked.unwrap_or("");
            let range = http_range_header::parse_range_header(asked)
                .and_then(|r| r.validate(len))
                .ok()
                .filter(|r| r.len() == 1)
                .and_then(|r| r.into_iter().next());
            let Some(range) = range else {
                let mut error = HubApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!(
                        "Range {:?} is not satisfiable for blob {sha}: the hub serves one \
                         range, `bytes=N-`, `bytes=N-M` or `bytes=-N`, within the blob",
                        busbar_base::digest::shown(asked)
                    ),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    error.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return error;
            };
            let (start, end) = (*range.start(), *range.end());
            let part = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(s, e)| bytes.get(s..=e).map(|_| bytes.slice(s..=e)))
                .unwrap_or_default();
            let mut response = (StatusCode::PARTIAL_CONTENT, Body::from(part)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            response
        }
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}
