//! The connection of one broker connection: an MQTT 5 session per rumqttc event loop, a
//! fresh one after every loss, jittered exponential backoff between attempts — the Com's
//! connection pattern (`com::mqtt::connection`) on MQTT 5, which services' topics need for
//! user properties, content types and subscription identifiers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::BrokerConfig;
use crate::com::mqtt::STABLE_SESSION;

/// What the connection tells its broker task.
#[derive(Debug)]
pub enum LinkEvent {
    /// A session is up; publish and subscribe through this client. `ids`: the broker takes
    /// subscription identifiers.
    Connected {
        /// The session's client.
        client: AsyncClient,
        /// What the broker said it takes (CONNACK).
        takes: Takes,
    },
    /// Something happened on the session.
    Mqtt(Box<Event>),
    /// The session ended.
    Lost(String),
}

/// What the broker of a session takes, from its CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takes {
    /// Subscription identifiers.
    pub ids: bool,
    /// Retained messages.
    pub retain: bool,
    /// The largest packet it accepts, if it says.
    pub max_packet: Option<u32>,
}

/// How to open a session.
#[derive(Debug, Clone)]
pub struct Link {
    name: Arc<str>,
    host: String,
    port: u16,
    client_id: String,
    credentials: Option<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    keep_alive: Duration,
    max_packet: u32,
    backoff_max: Duration,
    capacity: usize,
}

impl Link {
    /// Checks connection `name`'s settings and prepares TLS.
    pub fn new(name: &str, config: &BrokerConfig) -> anyhow::Result<Self> {
        let host = config
            .host
            .clone()
            .ok_or_else(|| anyhow::anyhow!("[brokers.{name}]: `host` is required"))?;
        let credentials = match (&config.username, &config.password) {
            (Some(u), p) => Some((u.clone(), p.clone().unwrap_or_default())),
            (None, Some(_)) => anyhow::bail!("[brokers.{name}]: `password` without `username`"),
            (None, None) => None,
        };
        let (tls, port) = crate::com::mqtt::transport(
            config.tls,
            config.ca_file.as_deref(),
            &format!("brokers.{name}"),
            config.port,
        )?;
        Ok(Self {
            name: Arc::from(name),
            host,
            port,
            client_id: config.client_id.clone().unwrap_or_else(|| name.to_owned()),
            credentials,
            tls,
            keep_alive: config.keep_alive(),
            // Room for the largest message plus its topic and properties.
            max_packet: u32::try_from(config.max_message_bytes + 64 * 1024).unwrap_or(u32::MAX),
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(100)),
            capacity: usize::from(config.in_flight) + 1024,
        })
    }

    /// `host:port`, for log lines.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_start(true);
        o.set_max_packet_size(Some(self.max_packet));
        // Requests and replies are small: no Nagle delay on them (40 ms with delayed ACKs).
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        o.set_network_options(network);
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u, p);
        }
        o
    }

    /// Keeps a session up until `cancel` fires, reporting to `events`; the backoff grows with
    /// every failure and is forgotten once a session stayed up for [`STABLE_SESSION`]. With
    /// `wanted`, the first session opens only once it is notified (the first request).
    pub async fn run(
        self,
        events: mpsc::Sender<LinkEvent>,
        cancel: CancellationToken,
        wanted: Option<Arc<tokio::sync::Notify>>,
    ) {
        if let Some(wanted) = wanted {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = wanted.notified() => {}
            }
        }
        let mut failures = 0u32;
        let mut connected_at: Option<Instant> = None;
        let name = &self.name;
        loop {
            let (client, mut eventloop) = AsyncClient::new(self.options(), self.capacity);
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                    e = eventloop.poll() => e,
                };
                let sent = match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        // Always said: the last line about a connection must be true.
                        if failures == 0 {
                            tracing::info!(broker = %name, address = %self.address(), client_id = %self.client_id, "broker connection up");
                        } else {
                            tracing::info!(broker = %name, address = %self.address(), attempts = failures, "broker connection up again");
                        }
                        connected_at = Some(Instant::now());
                        let p = ack.properties.as_ref();
                        let takes = Takes {
                            ids: p.and_then(|p| p.subscription_identifiers_available) != Some(0),
                            retain: p.and_then(|p| p.retain_available) != Some(0),
                            max_packet: p.and_then(|p| p.max_packet_size),
                        };
                        events
                            .send(LinkEvent::Connected {
                                client: client.clone(),
                                takes,
                            })
                            .await
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        let hint = match d.reason_code {
                            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver => {
                                format!(
                                    ": another client connected with the same client id `{}` \
                                     (two nodes with one node_id?)",
                                    self.client_id
                                )
                            }
                            _ => String::new(),
                        };
                        tracing::warn!(broker = %name, reason = ?d.reason_code, "the broker ended the session{hint}");
                        Ok(())
                    }
                    Ok(e) => events.send(LinkEvent::Mqtt(Box::new(e))).await,
                    Err(e) => {
                        if connected_at
                            .take()
                            .is_some_and(|at| at.elapsed() >= STABLE_SESSION)
                        {
                            failures = 0;
                        }
                        failures += 1;
                        let why = e.to_string();
                        if failures <= 3 || failures.is_power_of_two() {
                            tracing::warn!(broker = %name, address = %self.address(), attempt = failures, error = %why, "no connection to the broker");
                        }
                        let _ = events.send(LinkEvent::Lost(why)).await;
                        break;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            let wait = busbar_base::net::backoff(failures, self.backoff_max);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
