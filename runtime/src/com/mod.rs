//! Com: the node's link towards the IoT hub.
//!
//! Com is an internal service named `com` on the bus. Services reach it with `submit-message`
//! (action `submit`); everything Com takes out of its mailbox is on its way to the hub. A Com
//! implementation is an actor with one `run(link)` loop: it consumes [`ComLink::inbox`]
//! (device-to-cloud) and puts what arrives from the hub on the bus through [`ComLink::bus`]
//! (cloud-to-device). When [`ComLink::cancel`] fires — after every service has stopped — it
//! drains its inbox, flushes, and returns.
//!
//! `console` and `file` write one JSON line per message (the embedded default); `mqtt` and
//! `azure-iot-hub` bridge to a broker through a durable spool ([`mqtt`], [`spool`]).

mod json_lines;
pub mod mqtt;
pub mod spool;
mod stats;

pub use stats::ComStats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Delivery, OnFull, Route, RouteKind};
use crate::message::{BusError, ErrorCode};
use crate::orchestrator::ServiceTable;

pub use crate::message::{COM, COM_SUBMIT};
/// Messages Com holds before senders wait.
const INBOX: usize = 1024;

/// `unknown-action` unless `msg` is a `submit`: the one action every Com takes.
pub(crate) fn check_action(msg: &crate::message::Message) -> Result<(), BusError> {
    if msg.action == COM_SUBMIT {
        return Ok(());
    }
    Err(BusError::new(
        ErrorCode::UnknownAction,
        format!(
            "`{COM}` has no action `{}` (it takes `{COM_SUBMIT}`)",
            msg.action
        ),
    ))
}

/// Which Com the node runs (`[com]` in the node config).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ComConfig {
    /// One JSON line per message on standard output.
    #[default]
    Console,
    /// One JSON line per message appended to a file.
    File {
        /// The file to append to (created if missing).
        path: PathBuf,
    },
    /// A plain MQTT broker.
    Mqtt(Box<mqtt::MqttConfig>),
    /// Azure IoT Hub over MQTT.
    AzureIotHub(Box<mqtt::MqttConfig>),
}

/// What a Com implementation works with.
#[derive(Debug)]
pub struct ComLink {
    /// Messages on their way to the hub.
    pub inbox: mpsc::Receiver<Delivery>,
    /// The bus, for what arrives from the hub.
    pub bus: Bus,
    /// Fires when the node has stopped its services: drain, flush, return.
    pub cancel: CancellationToken,
}

/// What the node hands Com.
#[derive(Debug)]
pub struct ComParts<'a> {
    /// `[com]` of the node config.
    pub config: &'a ComConfig,
    /// The node's identity towards the hub.
    pub node_id: &'a str,
    /// Where the spool lives (under `spool/`).
    pub data_dir: &'a std::path::Path,
    /// Where Com reports its link and spool.
    pub stats: Arc<ComStats>,
    /// The node's services, for the reported properties.
    pub services: Arc<ServiceTable>,
}

/// Registers `com` on the bus and starts the configured Com.
pub async fn spawn(
    parts: ComParts<'_>,
    bus: &Bus,
    tracker: &TaskTracker,
    health: &Arc<busbar_base::supervise::Health>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let ComParts {
        config: com,
        node_id,
        data_dir,
        stats,
        services,
    } = parts;
    let watching = cancel.clone();
    let broker = match com {
        ComConfig::Mqtt(c) => Some((false, c)),
        ComConfig::AzureIotHub(c) => Some((true, c)),
        ComConfig::Console | ComConfig::File { .. } => None,
    };
    let (tx, inbox) = mpsc::channel(INBOX);
    bus.register(
        COM,
        Route::new(
            tx,
            OnFull::Block(Duration::from_secs(1)),
            RouteKind::Internal,
        ),
    )?;
    let link = ComLink {
        inbox,
        bus: bus.clone(),
        cancel,
    };
    match broker {
        Some((azure, config)) => {
            let (dialect, connector, spool) = mqtt::prepare(azure, config, node_id, data_dir)?;
            let setup = mqtt::Setup {
                dialect,
                config: (**config).clone(),
                node_id: node_id.to_owned(),
                spool,
                stats,
                services,
            };
            tracker.spawn(busbar_base::supervise::watch(
                health,
                "com",
                watching,
                async move {
                    mqtt::run(link, connector, setup).await;
                    Ok(())
                },
            ));
        }
        None => {
            let out = json_lines::open(com).await?;
            tracker.spawn(busbar_base::supervise::watch(
                health,
                "com",
                watching,
                async move {
                    json_lines::run(out, link).await;
                    Ok(())
                },
            ));
        }
    }
    Ok(())
}
