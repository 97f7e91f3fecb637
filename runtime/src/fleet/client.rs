//! The node's HTTP(S) client of the hub: sign-in, manifest long poll, blob download, status
//! and log batches. Every error names the hub and what it answered.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use super::FleetConfig;
use super::protocol::{FleetManifest, LogBatch, NodeStatus, SignIn, SignedIn};

/// Why a request to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub could not be reached, or the connection broke.
    #[error("hub {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The hub does not accept the node's token.
    #[error(
        "hub {url} refused the node token ({status}): {message}; check hub.token / hub.token_file \
         (revoked tokens must be replaced with `busbar hub add-node`)"
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    /// The token is valid but belongs to another node id.
    #[error(
        "hub {url} refused this node ({status}): {message}; node_id in the node config must be \
         the id hub.token was made for"
    )]
    WrongNode {
        url: String,
        status: u16,
        message: String,
    },
    /// Any other answer than the expected one.
    #[error("hub {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

impl HubError {
    /// Whether trying again later may work (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::Unreachable { .. } => true,
            HubError::Unauthorized { .. } | HubError::WrongNode { .. } => false,
            HubError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// A connection to the hub with the node's token.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HubClient {
    /// A client for the hub of `config` (TLS with its `ca_file` or the system's roots).
    pub fn new(config: &FleetConfig) -> anyhow::Result<Self> {
        let base = config.url.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "hub.url `{}` must start with https:// or http://",
            config.url
        );
        let tls = if base.starts_with("https://") {
            busbar_base::net::tls_client_config(config.ca_file.as_deref(), "hub")?
        } else {
            busbar_base::net::tls_client_config(None, "")?
        };
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            // A hub answers itself: a redirect (to another origin, or from https to http)
            // is an error, not a place to send the node token.
            .redirect(reqwest::redirect::Policy::none())
            // Above the longest long poll a hub may hold (hub::config::MAX_LONG_POLL_S).
            .read_timeout(Duration::from_secs(330))
            // The long poll's connection is reused at once; the one a report used is closed
            // soon after, so a node holds about one connection at the hub, not two (the
            // hub's open files are what bound its fleet).
            .pool_idle_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        Ok(Self {
            http: builder.build().context("hub: HTTP client set-up")?,
            base,
            token: config.token()?,
        })
    }

    /// The hub's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; a non-success answer becomes a [`HubError`] with the hub's `error` text.
    async fn send(&self, req: RequestBuilder) -> Result<Response, HubError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        // An error answer is read up to 64 KiB: a hostile hub cannot make the node hold more.
        let body = read_at_most(resp, 64 << 10).await.unwrap_or_default();
        let message = busbar_base::net::error_text(String::from_utf8_lossy(&body).into_owned());
        let url = self.base.clone();
        Err(match status {
            StatusCode::FORBIDDEN => HubError::WrongNode {
                url,
                status: status.as_u16(),
                message,
            },
            StatusCode::UNAUTHORIZED => HubError::Unauthorized {
                url,
                status: status.as_u16(),
                message,
            },
            _ => HubError::Status {
                url,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// A transport error as [`HubError::Unreachable`].
    pub fn unreachable(&self, e: &reqwest::Error) -> HubError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        HubError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// Signs in with the node's identity.
    pub async fn sign_in(&self, who: &SignIn) -> Result<SignedIn, HubError> {
        let resp = self
            .send(self.request(Method::POST, "/v1/sign-in").json(who))
            .await?;
        self.json(resp, "sign-in answer", 64 << 10).await
    }

    /// Reads a JSON body of at most `max` bytes (a longer one is refused, not read).
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: Response,
        what: &str,
        max: usize,
    ) -> Result<T, HubError> {
        let invalid = |message: String| HubError::Status {
            url: self.base.clone(),
            status: 200,
            message,
        };
        let too_large = || invalid(format!("the {what} is larger than {max} bytes; not read"));
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let body = read_at_most(resp, max + 1)
            .await
            .map_err(|e| self.unreachable(&e))?;
        if body.len() > max {
            return Err(too_large());
        }
        serde_json::from_slice(&body).map_err(|e| invalid(format!("the {what} is not valid: {e}")))
    }

    /// The node's manifest unless it still has ETag `etag`; the hub holds the request up to
    /// `wait` for a change.
    pub async fn manifest(
        &self,
        etag: Option<&str>,
        wait: Duration,
    ) -> Result<Option<(FleetManifest, String)>, HubError> {
        let mut req = self
            .request(Method::GET, "/v1/manifest")
            .query(&[("wait", wait.as_secs())])
            .timeout(wait + Duration::from_secs(30));
        if let Some(etag) = etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let manifest: FleetManifest = self
            .json(resp, "manifest", super::bounds::MAX_MANIFEST_BYTES)
            .await?;
        manifest.check().map_err(|e| HubError::Status {
            url: self.base.clone(),
            status: 200,
            message: format!("the manifest is not valid: {e}"),
        })?;
        Ok(Some((manifest, etag)))
    }

    /// Starts downloading the component `sha256` from byte `from`.
    pub async fn blob(&self, sha256: &str, from: u64) -> Result<Response, HubError> {
        let mut req = self
            .request(Method::GET, &format!("/v1/blobs/{sha256}"))
            .timeout(Duration::from_secs(600));
        if from > 0 {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        self.send(req).await
    }

    /// Sends the node's status (also its heartbeat).
    pub async fn status(&self, status: &NodeStatus) -> Result<(), HubError> {
        self.send(self.request(Method::POST, "/v1/status").json(status))
            .await
            .map(drop)
    }

    /// Sends a batch of log lines.
    pub async fn logs(&self, batch: &LogBatch) -> Result<(), HubError> {
        self.send(self.request(Method::POST, "/v1/logs").json(batch))
            .await
            .map(drop)
    }
}

/// The first `limit` bytes of `resp`'s body (the rest is not read).
async fn read_at_most(resp: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while body.len() < limit
        && let Some(chunk) = futures_util::StreamExt::next(&mut stream).await
    {
        let chunk = chunk?;
        body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
    }
    Ok(body)
}
