//! Bearer tokens: which grant a request carries, and the errors a refused request gets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::config::admin::{AdminConfig, ApiRoute, TokenGrant};

/// What one token may do.
#[derive(Debug)]
pub struct Grant {
    /// The token's name.
    pub name: String,
    routes: Vec<ApiRoute>,
    services: Vec<String>,
}

impl Grant {
    /// Whether the token may call and see service `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.services.iter().any(|s| s == "*" || s == name)
    }

    /// Whether the token may see every service.
    pub fn sees_all(&self) -> bool {
        self.services.iter().any(|s| s == "*")
    }
}

/// The node's tokens, looked up by the sha256 of the presented secret.
#[derive(Debug, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Arc<Grant>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// The configured tokens, plus `local` (all routes, all services) when given.
    pub fn new(config: &AdminConfig, local: Option<&str>) -> anyhow::Result<Self> {
        let mut grants = Tokens::default();
        let local = local.map(|token| TokenGrant {
            name: "local".into(),
            token: token.into(),
            routes: ApiRoute::all(),
            services: vec!["*".into()],
        });
        let mut names = std::collections::HashSet::new();
        for t in &config.tokens {
            anyhow::ensure!(
                t.name != "local",
                "admin.tokens: the name `local` is the node's own token; pick another"
            );
            anyhow::ensure!(
                names.insert(t.name.as_str()),
                "admin.tokens: two tokens are named `{}` (a name owns its jobs)",
                t.name
            );
        }
        for t in config.tokens.iter().chain(local.as_ref()) {
            anyhow::ensure!(
                t.token.len() >= 16,
                "admin.tokens `{}`: the token must be at least 16 characters long",
                t.name
            );
            let grant = Arc::new(Grant {
                name: t.name.clone(),
                routes: t.routes.clone(),
                services: t.services.clone(),
            });
            anyhow::ensure!(
                grants.by_digest.insert(digest(&t.token), grant).is_none(),
                "admin.tokens `{}`: the same token is configured twice",
                t.name
            );
        }
        Ok(grants)
    }

    /// The grant of the request's bearer token, if it may use `route`.
    pub fn authorize(&self, headers: &HeaderMap, route: ApiRoute) -> Result<Arc<Grant>, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("missing `Authorization: Bearer TOKEN` header")
            })?;
        let grant = self
            .by_digest
            .get(&digest(presented.trim()))
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        if !grant.routes.contains(&route) {
            return Err(ApiError::forbidden(format!(
                "token `{}` may not use {}",
                grant.name,
                route.path()
            )));
        }
        Ok(grant.clone())
    }
}

/// A fresh random token (244 random bits).
pub fn fresh_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Writes `contents` to `path` readable by the owner only, replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(contents.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// An HTTP error with a JSON body `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 401: no token or an unknown one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// 403: a known token without the right.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 503: the node cannot take more right now.
    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"busbar\"")],
                body,
            )
                .into_response();
        }
        (self.status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn tokens_are_scoped_by_route_and_service() {
        let config: AdminConfig = toml::from_str(
            "[[tokens]]\nname = \"scada\"\ntoken = \"0123456789abcdef\"\nroutes = [\"rpc\"]\nservices = [\"echo\"]\n",
        )
        .unwrap();
        let grants = Tokens::new(&config, Some("local-token-of-the-node")).unwrap();
        let g = grants
            .authorize(&bearer("0123456789abcdef"), ApiRoute::Rpc)
            .unwrap();
        assert!(g.allows("echo") && !g.allows("aggregator"));
        assert!(
            grants
                .authorize(&bearer("0123456789abcdef"), ApiRoute::Status)
                .is_err()
        );
        assert!(grants.authorize(&bearer("wrong"), ApiRoute::Rpc).is_err());
        assert!(grants.authorize(&HeaderMap::new(), ApiRoute::Rpc).is_err());
        let local = grants
            .authorize(&bearer("local-token-of-the-node"), ApiRoute::Metrics)
            .unwrap();
        assert!(local.sees_all());
    }

    #[test]
    fn short_tokens_are_refused() {
        let config: AdminConfig =
            toml::from_str("[[tokens]]\nname = \"x\"\ntoken = \"short\"\n").unwrap();
        let e = Tokens::new(&config, None).unwrap_err().to_string();
        assert!(e.contains("admin.tokens `x`"), "{e}");
    }
}
