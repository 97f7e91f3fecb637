//! The hub's HTTP errors: a status and `{"error": "<what is wrong>"}`.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error with a JSON body `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubApiError {
    /// The status.
    pub status: StatusCode,
    /// What is wrong, in words.
    pub message: String,
}

impl HubApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no token, an unknown one, or a revoked one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: a known token asking for what it may not.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for HubApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"busbar-hub\"")],
                body,
            )
                .into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for HubApiError {
    fn from(r: JsonRejection) -> Self {
        Self::new(r.status(), format!("bad request body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for HubApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(r.status(), format!("bad query: {}", r.body_text()))
    }
}

impl From<BytesRejection> for HubApiError {
    fn from(r: BytesRejection) -> Self {
        Self::new(r.status(), format!("bad request body: {}", r.body_text()))
    }
}

/// Runs blocking file work off the async threads; its error becomes a 500.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, HubApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HubApiError::internal(format!("{e:#}"))),
        Err(e) => Err(HubApiError::internal(format!("file task failed: {e}"))),
    }
}
