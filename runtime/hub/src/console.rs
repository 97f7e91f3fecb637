//! The fleet console: three static files (`console/index.html`, `app.js`, `style.css`) built
//! into the binary and served at `/console/`; the page talks to the admin API with the admin
//! token the operator types in (kept in the browser's session storage, sent as a bearer
//! header, never in a URL). Served under a strict Content-Security-Policy: only its own
//! script and style, no inline code, no other origin.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

/// The console's policy: its own files only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// One of the console's files with its type and the security headers.
fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /console/`.
pub async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    )
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    )
}

/// `GET /console/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("console/style.css"))
}

/// `GET /` and `GET /console`: to the console.
pub async fn home() -> Redirect {
    Redirect::to("/console/")
}
