//! A routing-table entry: the way into one service's mailbox, and what to do when it is full.

use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Delivery;
use crate::message::{BusError, ErrorCode};

/// What a sender experiences when the destination's mailbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// The sender waits up to this long for room (backpressure), then gets `queue-full`.
    Block(Duration),
    /// The sender gets `queue-full` at once and the message is not accepted.
    Refuse,
}

impl OnFull {
    /// The policy a service's limits ask for (`on_full`, `block_ms`).
    pub fn of(limits: &busbar_base::limits::Limits) -> Self {
        match limits.on_full {
            busbar_base::limits::FullPolicy::Block => {
                OnFull::Block(Duration::from_millis(limits.block_ms))
            }
            busbar_base::limits::FullPolicy::Refuse => OnFull::Refuse,
        }
    }
}

/// Whether a route leads to a native part of the node or to a wasm service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Com, logger: native, not reached by broadcasts, cannot be stopped remotely.
    Internal,
    /// A wasm component.
    Custom,
}

/// The way into one mailbox.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) tx: mpsc::Sender<Delivery>,
    pub(crate) on_full: OnFull,
    pub(crate) kind: RouteKind,
    /// Round-trip times of the calls to this route's service, in seconds.
    pub(crate) calls: Histogram,
}

impl Route {
    /// A route into `tx`.
    pub fn new(tx: mpsc::Sender<Delivery>, on_full: OnFull, kind: RouteKind) -> Self {
        Self {
            tx,
            on_full,
            kind,
            // 10 µs .. 2.6 s
            calls: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
        }
    }

    /// Puts `d` into the mailbox of `name`, applying the full-mailbox policy.
    pub(crate) async fn deliver(&self, name: &str, d: Delivery) -> Result<(), BusError> {
        let d = match self.tx.try_send(d) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(gone(name)),
            Err(TrySendError::Full(d)) => d,
        };
        let full = || {
            BusError::new(
                ErrorCode::QueueFull,
                format!(
                    "the mailbox of `{name}` is full ({} messages)",
                    self.tx.max_capacity()
                ),
            )
        };
        match self.on_full {
            OnFull::Refuse => Err(full()),
            OnFull::Block(wait) => match tokio::time::timeout(wait, self.tx.send(d)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(gone(name)),
                Err(_) => Err(full()),
            },
        }
    }
}

fn gone(name: &str) -> BusError {
    BusError::new(
        ErrorCode::Unavailable,
        format!("service `{name}` has shut down"),
    )
}
