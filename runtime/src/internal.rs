//! The loop every small native service on the bus shares (`logger`, `orchestrator`): a
//! mailbox, a handler per message, answers to callers, failures back to the sender.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Delivery, OnFull, Route, RouteKind};
use crate::message::{BusError, Message, Reply};

/// Registers internal service `name` with a mailbox of `capacity` (senders get `queue-full`
/// when it is full) and runs `handle` for each message until `cancel` fires. An error is
/// logged, answered to a caller, or sent back to a sending service as `$error`.
pub fn spawn(
    name: &'static str,
    capacity: usize,
    bus: &Bus,
    tracker: &TaskTracker,
    cancel: CancellationToken,
    mut handle: impl FnMut(&Message) -> Result<Option<Reply>, BusError> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, mut inbox) = mpsc::channel::<Delivery>(capacity);
    bus.register(name, Route::new(tx, OnFull::Refuse, RouteKind::Internal))?;
    let bus = bus.clone();
    tracker.spawn(async move {
        loop {
            let d = tokio::select! {
                d = inbox.recv() => d,
                () = cancel.cancelled() => None,
            };
            let Some(d) = d else { break };
            let began = std::time::Instant::now();
            let result = handle(&d.msg);
            bus.processed(
                &d.msg,
                d.is_call(),
                began.elapsed(),
                result.as_ref().map(|_| ()),
            );
            if let Err(e) = &result {
                tracing::warn!(service = name, from = %d.msg.source, action = %d.msg.action, error = %e, "request refused");
            }
            let msg = d.msg.clone();
            if let Some(Err(e)) = d.answer(result) {
                bus.notify_failure(&msg, name, &e);
            }
        }
    });
    Ok(())
}
