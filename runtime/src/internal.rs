//! The loop every small native service on the bus shares (`logger`, `orchestrator`): a
//! mailbox, a handler per message, answers to callers, failures back to the sender.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Delivery, OnFull, Route, RouteKind};
use crate::message::{BusError, ErrorCode, Message, Reply};

/// What a handler did with a message.
#[derive(Debug)]
pub enum Handled {
    /// Handled now: the answer (or error).
    Done(Result<Option<Reply>, BusError>),
    /// Handed to another task, which answers it when done.
    Forward(mpsc::Sender<Delivery>),
}

impl From<Result<Option<Reply>, BusError>> for Handled {
    fn from(result: Result<Option<Reply>, BusError>) -> Self {
        Handled::Done(result)
    }
}

/// Registers internal service `name` with a mailbox of `capacity` (senders get `queue-full`
/// when it is full) and runs `handle` for each message until `cancel` fires. An error is
/// logged, answered to a caller, or sent back to a sending service as `$error`.
pub fn spawn(
    name: &'static str,
    capacity: usize,
    bus: &Bus,
    tracker: &TaskTracker,
    cancel: CancellationToken,
    mut handle: impl FnMut(&Message) -> Handled + Send + 'static,
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
            let result = match handle(&d.msg) {
                Handled::Done(result) => result,
                Handled::Forward(to) => match to.try_send(d) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(d)) => {
                        forward_failed(&bus, name, d, ErrorCode::QueueFull, "busy");
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(d)) => {
                        forward_failed(&bus, name, d, ErrorCode::Unavailable, "stopping");
                        continue;
                    }
                },
            };
            if let Err(e) = &result {
                tracing::warn!(service = name, from = %d.msg.source, action = %d.msg.action, error = %e, "request refused");
            }
            bus.finish(name, d, began.elapsed(), result);
        }
    });
    Ok(())
}

/// Answers a message that could not be handed over.
fn forward_failed(bus: &Bus, name: &str, d: Delivery, code: ErrorCode, why: &str) {
    let e = BusError::new(
        code,
        format!("`{name}` is {why}: `{}` was not handled", d.msg.action),
    );
    bus.finish(name, d, std::time::Duration::ZERO, Err(e));
}
