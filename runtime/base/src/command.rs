//! What the command-line tools (the node's and the hub's) share: running a command until
//! Ctrl-C, checked HTTP requests that map failures to exit codes, and times as people read them.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::exit::Failure;

/// Runs `command` until it finishes or `shutdown` fires (Ctrl-C), whichever comes first.
pub async fn until(
    shutdown: CancellationToken,
    command: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = command => r,
        () = shutdown.cancelled() => Ok(()),
    }
}

/// `HH:MM:SS.mmm` (UTC) of a timestamp in ms since the Unix epoch.
pub fn clock(ts_ms: u64) -> String {
    let (s, ms) = (ts_ms / 1000, ts_ms % 1000);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

/// Sends `req` to `who` at `url`: no connection, a refused token and any other error answer
/// become [`Failure`]s (with their exit codes) carrying the server's `error` text.
pub async fn send_checked(
    req: reqwest::RequestBuilder,
    who: &str,
    url: &str,
    hint: &str,
) -> anyhow::Result<reqwest::Response> {
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::unreachable(format!("cannot reach {who} at {url}{hint}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let reason = crate::net::error_text(resp.text().await.unwrap_or_default());
    let message = format!("{who} answered {status}: {reason}");
    Err(match status.as_u16() {
        401 | 403 => Failure::unauthorized(message),
        _ => Failure::other(message),
    }
    .into())
}
