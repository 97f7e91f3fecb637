//! One message seen on the bus, as the monitor shows it.

use serde::{Deserialize, Serialize};

use crate::message::{BusError, Message, code_name};

/// A message that was processed by its destination or refused on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// When it was processed or refused (ms since the Unix epoch).
    pub ts_ms: u64,
    /// The message id.
    pub id: String,
    /// Who sent it.
    pub source: String,
    /// Who it was for.
    pub destination: String,
    /// The action.
    pub action: String,
    /// Payload size in bytes.
    pub size: usize,
    /// `call` when the sender waited for a reply, else `send`.
    pub kind: String,
    /// How long the destination took to process it, in µs (absent when it was refused
    /// before reaching the destination).
    pub latency_us: Option<u64>,
    /// `ok`, or the error code (e.g. `unknown-destination`, `service-fault`).
    pub outcome: String,
    /// The error message, when there was one.
    pub error: Option<String>,
}

impl Traffic {
    /// The event for `msg`, with its outcome.
    pub fn new(
        msg: &Message,
        call: bool,
        latency: Option<std::time::Duration>,
        result: Result<(), &BusError>,
    ) -> Self {
        let (outcome, error) = match result {
            Ok(()) => ("ok".to_owned(), None),
            Err(e) => (code_name(e.code).to_owned(), Some(e.message.clone())),
        };
        Self {
            ts_ms: super::unix_ms(),
            id: msg.id.clone(),
            source: msg.source.clone(),
            destination: msg.destination.clone(),
            action: msg.action.clone(),
            size: msg.payload.len(),
            kind: if call { "call" } else { "send" }.to_owned(),
            latency_us: latency.map(|d| d.as_micros() as u64),
            outcome,
            error,
        }
    }
}
