//! The `logger` internal service: any message sent to it becomes a log line. Handy for
//! services that want a human to see something without going through the hub.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::message::PayloadPreview;

/// The logger's name on the bus.
pub const LOGGER: &str = "logger";

/// Registers `logger` on the bus and starts it.
pub fn spawn(bus: &Bus, tracker: &TaskTracker, cancel: CancellationToken) -> anyhow::Result<()> {
    crate::internal::spawn(LOGGER, 256, bus, tracker, cancel, |msg| {
        tracing::info!(
            target: "busbar::logger",
            from = %msg.source, action = %msg.action,
            "{}", PayloadPreview(&msg.payload)
        );
        Ok(None).into()
    })
}
