//! Serving HTTP within bounds, for the admin API and the hub: at most `max_connections` open
//! at once (one more is answered `503` naming the setting, and closed), a deadline for a
//! request's headers that also closes idle keep-alive connections (shortened to one second
//! while three quarters of the slots are taken, so a flood of idle connections cannot keep
//! an operator out for long), a deadline between the frames of a request body, and an accept
//! loop that survives running out of file descriptors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How a server bounds its clients.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Who serves, for log lines: `admin API`, `hub`.
    pub name: &'static str,
    /// Connections open at once.
    pub max_connections: usize,
    /// The setting that raises `max_connections`, named in the refusal.
    pub setting: &'static str,
    /// Time to send a request's headers; also the idle keep-alive time.
    pub header_timeout: Duration,
}

/// The header deadline while the server is crowded.
const CROWDED_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// The soft limit on open files of this process (None: unlimited).
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The open-files limit a server asks for as root (the hard limit it may raise itself).
const WANTED_OPEN_FILES: u64 = 262_144;

/// Raises this process's soft limit on open files to its hard limit (as root, first the hard
/// limit to 262,144 or the kernel's `nr_open`, whichever is lower). Returns the soft limit
/// before and after; `None` when the limits cannot be read.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let soft = before.current?;
    let mut hard = before.maximum;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(WANTED_OPEN_FILES);
    let wanted = WANTED_OPEN_FILES.min(nr_open);
    if hard.is_some_and(|h| h < wanted) {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        // Only root (CAP_SYS_RESOURCE) may raise the hard limit; others keep theirs.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            hard = Some(wanted);
        }
    }
    let target = hard.unwrap_or(wanted);
    if soft < target {
        let raised = Rlimit {
            current: Some(target),
            maximum: hard,
        };
        let _ = setrlimit(Resource::Nofile, raised);
    }
    let after = getrlimit(Resource::Nofile).current.unwrap_or(soft);
    Some((soft, after))
}

/// Serves `router` on `listener` until `stop`, then waits for the open connections to finish
/// (the caller bounds that wait).
pub async fn serve(listener: TcpListener, router: Router, bounds: Bounds, stop: CancellationToken) {
    let max = bounds.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = tower_http::timeout::RequestBodyTimeout::new(router, bounds.header_timeout);
    let mut accept_failures = 0u32;
    let mut refused = 0u64;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { accept_failures = 0; stream }
                Err(e) => {
                    // Out of file descriptors (or memory): wait for connections to close.
                    accept_failures += 1;
                    if accept_failures.is_power_of_two() {
                        tracing::error!(server = bounds.name, error = %e, failures = accept_failures,
                            "cannot accept connections (lower {} or raise the open-files limit)", bounds.setting);
                    }
                    tokio::time::sleep(crate::net::backoff(accept_failures, Duration::from_secs(1))).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    server = bounds.name,
                    refused,
                    max_connections = max,
                    "connection refused: too many open ({} in the config)",
                    bounds.setting
                );
            }
            tokio::spawn(refuse(stream, max, bounds.setting));
            continue;
        };
        let crowded = slots.available_permits() < max / 4;
        let header_timeout = if crowded {
            bounds.header_timeout.min(CROWDED_HEADER_TIMEOUT)
        } else {
            bounds.header_timeout
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers `503` naming the setting, and closes.
async fn refuse(mut stream: TcpStream, max: usize, setting: &str) {
    let body = serde_json::json!({
        "error": format!("too many connections: at most {max} at once ({setting}); try again")
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let (before, after) = raise_open_files_limit().unwrap();
        assert!(after >= before, "{before} → {after}");
        if let Some(hard) = hard {
            assert!(
                after >= hard,
                "the soft limit {after} is below the hard limit {hard}"
            );
        }
        assert_eq!(open_files_limit(), Some(after));
    }
}
