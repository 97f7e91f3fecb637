//! What travels through a mailbox: a shared message and where its answer goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

use crate::message::{BusError, Message, Reply};

/// Where the outcome of processing a delivery goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// Fire and forget: a failure goes back to the sender as an `$error` message.
    Nobody,
    /// A `call` waits for the answer.
    Caller(oneshot::Sender<Result<Reply, BusError>>),
    /// A send whose sender waits for its outcome, not for a reply (a send across gateways:
    /// the fabric, and the node that processes it for the fabric).
    Outcome(oneshot::Sender<Result<(), BusError>>),
    /// A timer tick; the flag is cleared when the tick is taken out of the mailbox so the
    /// timer can queue the next one (ticks never pile up).
    Tick(Arc<AtomicBool>),
}

/// One message in a service's mailbox. The message is shared: a broadcast is one allocation.
#[derive(Debug)]
pub struct Delivery {
    /// The message itself.
    pub msg: Arc<Message>,
    /// Where the result goes.
    pub reply: ReplyTo,
}

impl Delivery {
    /// A fire-and-forget delivery.
    pub fn oneway(msg: Arc<Message>) -> Self {
        Self {
            msg,
            reply: ReplyTo::Nobody,
        }
    }

    /// Marks a tick as taken so its timer may queue the next one.
    pub fn take_tick(&self) {
        if let ReplyTo::Tick(pending) = &self.reply {
            pending.store(false, Ordering::Release);
        }
    }

    /// Whether a caller waits for the result.
    pub fn is_call(&self) -> bool {
        matches!(self.reply, ReplyTo::Caller(_))
    }

    /// Whether whoever waited for the result has given up.
    pub fn abandoned(&self) -> bool {
        match &self.reply {
            ReplyTo::Caller(tx) => tx.is_closed(),
            ReplyTo::Outcome(tx) => tx.is_closed(),
            ReplyTo::Nobody | ReplyTo::Tick(_) => false,
        }
    }

    /// Hands the result to a waiting caller. Returns the result back when nobody waits for
    /// it, so a failure can be reported another way.
    pub fn answer(
        self,
        result: Result<Option<Reply>, BusError>,
    ) -> Option<Result<Option<Reply>, BusError>> {
        match self.reply {
            ReplyTo::Caller(tx) => {
                let _ = tx.send(result.map(|r| r.unwrap_or_else(empty_reply)));
                None
            }
            ReplyTo::Outcome(tx) => {
                let _ = tx.send(result.map(drop));
                None
            }
            ReplyTo::Nobody | ReplyTo::Tick(_) => Some(result),
        }
    }
}

/// What a call returns when the service handled it without answering.
pub fn empty_reply() -> Reply {
    Reply {
        content_type: String::new(),
        payload: Vec::new(),
    }
}
