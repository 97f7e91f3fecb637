//! The `logger` internal service: any message sent to it becomes a log line. Handy for
//! services that want a human to see something without going through the hub.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Delivery, OnFull, Route, RouteKind};
use crate::message::PayloadPreview;

/// The logger's name on the bus.
pub const LOGGER: &str = "logger";

/// Registers `logger` on the bus and starts it.
pub fn spawn(bus: &Bus, tracker: &TaskTracker, cancel: CancellationToken) -> anyhow::Result<()> {
    let (tx, mut inbox) = mpsc::channel::<Delivery>(256);
    bus.register(LOGGER, Route::new(tx, OnFull::Refuse, RouteKind::Internal))?;
    tracker.spawn(async move {
        loop {
            let d = tokio::select! {
                d = inbox.recv() => d,
                () = cancel.cancelled() => None,
            };
            let Some(d) = d else { break };
            tracing::info!(
                target: "busbar::logger",
                from = %d.msg.source, action = %d.msg.action,
                "{}", PayloadPreview(&d.msg.payload)
            );
            d.answer(Ok(None));
        }
    });
    Ok(())
}
