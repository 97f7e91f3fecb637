//! The connection to the broker: one rumqttc event loop per session, a fresh one (with fresh
//! credentials) after every loss, jittered exponential backoff between attempts, and a
//! planned reconnection before an IoT Hub SAS token expires.
//!
//! A fresh event loop per session means rumqttc never replays a previous session's packets
//! on its own: Com resends what the broker did not acknowledge, from its spool, in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::MqttConfig;
use super::dialect::Dialect;

/// What the connection tells Com.
#[derive(Debug)]
pub enum LinkEvent {
    /// A session is up; publish through this client.
    Connected(AsyncClient),
    /// Something happened on the session.
    Mqtt(Event),
    /// The session ended (Com keeps everything unacknowledged for the next one).
    Lost(String),
}

/// How to open a session.
#[derive(Debug, Clone)]
pub struct Connector {
    host: String,
    port: u16,
    client_id: String,
    credentials: Credentials,
    tls: Option<Arc<rustls::ClientConfig>>,
    keep_alive: Duration,
    max_packet: usize,
    backoff_max: Duration,
    capacity: usize,
}

#[derive(Debug, Clone)]
enum Credentials {
    None,
    Password(String, Option<String>),
    Sas(super::azure::Device, Duration),
}

impl Connector {
    /// Checks the settings for `dialect` and prepares TLS.
    pub fn new(config: &MqttConfig, dialect: &Dialect, node_id: &str) -> anyhow::Result<Self> {
        let (host, client_id, credentials, tls_default) = match dialect {
            Dialect::Azure(device) => {
                for (set, field) in [
                    (config.host.is_some(), "host"),
                    (config.client_id.is_some(), "client_id"),
                    (config.username.is_some(), "username"),
                    (config.password.is_some(), "password"),
                ] {
                    anyhow::ensure!(
                        !set,
                        "com: `{field}` does not apply to kind = \"azure-iot-hub\" (it comes \
                         from connection_string)"
                    );
                }
                anyhow::ensure!(config.sas_ttl_s >= 1, "com: sas_ttl_s must be at least 1");
                (
                    device.host.clone(),
                    device.device_id.clone(),
                    Credentials::Sas(device.clone(), Duration::from_secs(config.sas_ttl_s)),
                    true,
                )
            }
            Dialect::Plain(_) => {
                anyhow::ensure!(
                    config.connection_string.is_none(),
                    "com: `connection_string` applies only to kind = \"azure-iot-hub\""
                );
                let host = config
                    .host
                    .clone()
                    .context("com: kind = \"mqtt\" needs `host` (the broker's address)")?;
                let credentials = match (&config.username, &config.password) {
                    (Some(u), p) => Credentials::Password(u.clone(), p.clone()),
                    (None, Some(_)) => anyhow::bail!("com: `password` without `username`"),
                    (None, None) => Credentials::None,
                };
                let client_id = config.client_id.clone().unwrap_or_else(|| node_id.into());
                (host, client_id, credentials, false)
            }
        };
        let (tls, port) = transport(
            config.tls.unwrap_or(tls_default),
            config.ca_file.as_deref(),
            "com",
            config.port,
        )?;
        Ok(Self {
            host,
            port,
            client_id,
            credentials,
            tls,
            keep_alive: config.keep_alive(),
            // Room for the largest message plus its topic and properties.
            max_packet: config.max_message_bytes + 64 * 1024,
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(100)),
            capacity: usize::from(config.in_flight) + 256,
        })
    }

    /// `host:port`, for log lines.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Options for a new session, and when it must be renewed (the SAS token's expiry).
    fn options(&self) -> (MqttOptions, Option<Instant>) {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(true);
        o.set_max_packet_size(self.max_packet, self.max_packet);
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        let mut renew = None;
        match &self.credentials {
            Credentials::None => {}
            Credentials::Password(u, p) => {
                o.set_credentials(u, p.clone().unwrap_or_default());
            }
            Credentials::Sas(device, ttl) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let expiry = (now + *ttl).as_secs();
                o.set_credentials(device.username(), device.sas_token(expiry));
                // Renew when 80% of the lifetime has passed.
                renew = Some(Instant::now() + ttl.mul_f64(0.8));
            }
        }
        (o, renew)
    }

    /// Keeps a session up until `cancel` fires, reporting to `events`. The backoff between
    /// attempts grows with every failure and is forgotten only once a session has stayed up
    /// for [`STABLE_SESSION`]: a broker that accepts and then drops the connection (a
    /// throttling hub, a bad ACL) is retried slower and slower, not in a tight loop.
    pub async fn run(self, events: mpsc::Sender<LinkEvent>, cancel: CancellationToken) {
        let mut failures = 0u32;
        let mut connected_at: Option<Instant> = None;
        loop {
            let (options, renew) = self.options();
            let (client, mut eventloop) = AsyncClient::new(options, self.capacity);
            let renew_at = renew.map(tokio::time::Instant::from_std);
            let mut planned = false;
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                    () = sleep_until(renew_at) => {
                        tracing::info!("Com: renewing the SAS token (reconnecting)");
                        planned = true;
                        let _ = events.send(LinkEvent::Lost("SAS token renewal".into())).await;
                        break;
                    }
                    e = eventloop.poll() => e,
                };
                let sent = match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if failures == 0 {
                            tracing::info!(broker = %self.address(), session_present = ack.session_present, "Com: connected");
                        } else {
                            // Always said: the last line about the link must be true.
                            tracing::info!(broker = %self.address(), attempts = failures, "Com: connected again");
                        }
                        connected_at = Some(Instant::now());
                        events.send(LinkEvent::Connected(client.clone())).await
                    }
                    Ok(e) => events.send(LinkEvent::Mqtt(e)).await,
                    Err(e) => {
                        if connected_at
                            .take()
                            .is_some_and(|at| at.elapsed() >= STABLE_SESSION)
                        {
                            failures = 0;
                        }
                        failures += 1;
                        let why = describe(&e);
                        if failures <= 3 || failures.is_power_of_two() {
                            tracing::warn!(broker = %self.address(), attempt = failures, error = %why, "Com: no connection to the broker");
                        }
                        let _ = events.send(LinkEvent::Lost(why)).await;
                        break;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            if !planned {
                let wait = busbar_base::net::backoff(failures, self.backoff_max);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// TLS (rustls, when `tls`; `ca_file` or the system's roots, `section` names the setting in
/// errors) and the port (`port`, else 1883, or 8883 with TLS) of a broker connection.
pub fn transport(
    tls: bool,
    ca_file: Option<&std::path::Path>,
    section: &str,
    port: Option<u16>,
) -> anyhow::Result<(Option<Arc<rustls::ClientConfig>>, u16)> {
    let tls = if tls {
        Some(Arc::new(busbar_base::net::tls_client_config(
            ca_file, section,
        )?))
    } else {
        None
    };
    let port = port.unwrap_or(if tls.is_some() { 8883 } else { 1883 });
    Ok((tls, port))
}

/// How long a session must stay up before the reconnect backoff starts over.
pub const STABLE_SESSION: Duration = Duration::from_secs(30);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn describe(e: &rumqttc::ConnectionError) -> String {
    match e {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}
