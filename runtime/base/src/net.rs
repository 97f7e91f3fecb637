//! What the node's network clients share: TLS set-up and reconnect backoff.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

/// Full-jitter exponential backoff: a random wait up to 100 ms × 2^(failures-1), capped.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let cap = Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(max);
    let ms = cap.as_millis().max(1) as u64;
    Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
}

/// rustls with the ring provider, trusting `ca_file` or the system's roots; errors name the
/// config `section` (`com`, `hub`). With an empty `section`, finding no system roots is not
/// an error (HTTPS then fails, plain HTTP works).
pub fn tls_client_config(
    ca_file: Option<&std::path::Path>,
    section: &str,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("{section}: reading ca_file {}", path.display()))?
            {
                let cert = cert
                    .with_context(|| format!("{section}: ca_file {} is not PEM", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("{section}: ca_file holds an unusable certificate"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            anyhow::ensure!(
                added > 0 || section.is_empty(),
                "{section}: no trusted root certificates found on this system (install \
                 ca-certificates or set {section}.ca_file)"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .with_context(|| format!("{section}: TLS setup"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client for the operator commands and tests. reqwest is built without a default
/// TLS provider (busbar uses ring everywhere, for the ARM cross builds), so every client is
/// given rustls with ring and the system's roots (none found: HTTPS fails, HTTP works).
pub fn http_client() -> reqwest::Client {
    http_builder()
        .build()
        .expect("an HTTP client with preconfigured TLS builds")
}

/// [`http_client`]'s builder, to set timeouts before building.
pub fn http_builder() -> reqwest::ClientBuilder {
    let tls = tls_client_config(None, "").expect("TLS set-up without a CA file");
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

/// The `error` text of an error answer `{"error": "..."}`, else the body as it is.
pub fn error_text(body: String) -> String {
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let max = Duration::from_secs(2);
        for f in 1..30 {
            let b = backoff(f, max);
            assert!(b <= max, "{b:?}");
        }
        assert!(backoff(1, max) <= Duration::from_millis(100));
        assert!(backoff(20, max) >= Duration::from_secs(1));
    }
}
