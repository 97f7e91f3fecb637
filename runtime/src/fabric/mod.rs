//! Services across gateways: the internal service `fabric` carries messages for
//! `service@node` and `service@group` over a broker connection the fleet already has
//! (`[fabric] broker = "site"`), and hands requests from other nodes to local services.
//!
//! The bus gives `fabric` every message whose destination holds an `@`, marked with what its
//! sender waits for ([`crate::message::Remote`]). A call waits for the reply; a send is kept
//! in a durable outbox until the receiving node says the service processed it, and sent again
//! until then (to whichever member, for a group). The protocol is in [`protocol`]; the loop in
//! `task`, what goes out in `outgoing`, what comes in in `incoming`.

mod config;
mod deadlines;
mod incoming;
mod membership;
mod outgoing;
pub mod protocol;
mod stats;
mod task;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{FabricConfig, FabricSettings};
pub use stats::{FabricStats, Peer};

use crate::bus::{Bus, OnFull, Route, RouteKind};
use crate::com::spool::Spool;
use crate::message::FABRIC;

/// Messages `fabric` holds before senders get `queue-full`.
const MAILBOX: usize = 4_096;

/// Opens the fabric's outbox, registers `fabric` on the bus and starts its task (watched:
/// if it ends, the node goes down). An outbox that cannot be opened stops the node from
/// starting.
pub fn spawn(
    settings: FabricSettings,
    bus: &Bus,
    tracker: &TaskTracker,
    health: &Arc<busbar_base::supervise::Health>,
    cancel: CancellationToken,
) -> anyhow::Result<Arc<FabricStats>> {
    let dir = settings
        .outbox
        .dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[fabric]: no outbox folder"))?;
    let outbox = Spool::open(&dir, settings.outbox.clone())
        .map_err(|e| anyhow::anyhow!("[fabric]: the outbox in {}: {e:#}", dir.display()))?;
    let (tx, rx) = mpsc::channel(MAILBOX);
    bus.register(FABRIC, Route::new(tx, OnFull::Refuse, RouteKind::Internal))?;
    let stats = Arc::new(FabricStats::default());
    let (bus, s) = (bus.clone(), stats.clone());
    tracker.spawn(busbar_base::supervise::watch(
        health,
        "fabric",
        cancel.clone(),
        async move {
            task::run(settings, outbox, bus, rx, s, cancel).await;
            Ok(())
        },
    ));
    Ok(stats)
}
