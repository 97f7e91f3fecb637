//! `[com]` for the MQTT Com, `kind = "mqtt"` (a plain broker) or `kind = "azure-iot-hub"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::com::spool::SpoolConfig;

/// The MQTT Com's settings; which fields apply depends on the dialect (checked at start).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host (`mqtt`). Azure takes it from the connection string.
    pub host: Option<String>,
    /// Broker port (default 1883, or 8883 with TLS).
    pub port: Option<u16>,
    /// Client id (`mqtt`; default: the node id). Azure uses the device id.
    pub client_id: Option<String>,
    /// Username (`mqtt`).
    pub username: Option<String>,
    /// Password (`mqtt`).
    pub password: Option<String>,
    /// `azure-iot-hub`: `HostName=…;DeviceId=…;SharedAccessKey=…`.
    pub connection_string: Option<String>,
    /// `azure-iot-hub`: lifetime of each SAS token, in seconds; the node reconnects with a
    /// fresh one before it expires.
    pub sas_ttl_s: u64,
    /// TLS (rustls). Default: on for Azure, off for `mqtt`.
    pub tls: Option<bool>,
    /// PEM file of the CA to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive, in seconds.
    pub keep_alive_s: u64,
    /// Longest wait between reconnection attempts, in ms (jittered exponential backoff).
    pub backoff_max_ms: u64,
    /// Messages sent and not yet acknowledged by the broker, at most.
    pub in_flight: u16,
    /// Largest message Com sends, payload and properties (IoT Hub's limit is 256 KB).
    pub max_message_bytes: usize,
    /// Service that gets cloud-to-device messages naming none.
    pub default_service: Option<String>,
    /// How often the node reports its state, in seconds (also after every change).
    pub report_interval_s: u64,
    /// Topic templates of the `mqtt` dialect (`{node}` is the node id).
    pub topics: Topics,
    /// The durable store-and-forward spool.
    pub spool: SpoolConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            client_id: None,
            username: None,
            password: None,
            connection_string: None,
            sas_ttl_s: 3600,
            tls: None,
            ca_file: None,
            keep_alive_s: 30,
            backoff_max_ms: 30_000,
            in_flight: 64,
            max_message_bytes: 256 * 1024,
            default_service: None,
            report_interval_s: 60,
            topics: Topics::default(),
            spool: SpoolConfig::default(),
        }
    }
}

impl MqttConfig {
    /// The keep-alive.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_s.max(5))
    }
}

/// Where the `mqtt` dialect publishes and listens.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Device-to-cloud messages (a JSON envelope per message).
    pub d2c: String,
    /// Cloud-to-device: `{c2d}/{service}[/{action}]`.
    pub c2d: String,
    /// The desired state: a retained JSON document.
    pub desired: String,
    /// Where the node reports its state (retained).
    pub reported: String,
    /// Commands: `{commands}/{method}/{request id}`, JSON payload.
    pub commands: String,
    /// Command responses: `{responses}/{status}/{request id}`.
    pub responses: String,
    /// Service log lines while `debug` is on.
    pub debug: String,
    /// Base topic of services on the Com's broker (`topics` on connection `com`): a
    /// service's relative topics are under `{services}/{service}`.
    pub services: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            d2c: "busbar/{node}/d2c".into(),
            c2d: "busbar/{node}/c2d".into(),
            desired: "busbar/{node}/desired".into(),
            reported: "busbar/{node}/reported".into(),
            commands: "busbar/{node}/commands".into(),
            responses: "busbar/{node}/responses".into(),
            debug: "busbar/{node}/debug".into(),
            services: "busbar/{node}/services".into(),
        }
    }
}

impl Topics {
    /// The templates with `{node}` filled in.
    pub fn for_node(&self, node: &str) -> Topics {
        let f = |t: &str| t.replace("{node}", node);
        Topics {
            d2c: f(&self.d2c),
            c2d: f(&self.c2d),
            desired: f(&self.desired),
            reported: f(&self.reported),
            commands: f(&self.commands),
            responses: f(&self.responses),
            debug: f(&self.debug),
            services: f(&self.services),
        }
    }
}
