//! One message seen on the bus, as the monitor shows it.

use serde::{Deserialize, Serialize};

use crate::message::{BusError, ErrorCode, Message, code_from_name, code_name};

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
    pub kind: TrafficKind,
    /// How long the destination took to process it, in µs (absent when it was refused
    /// before reaching the destination).
    pub latency_us: Option<u64>,
    /// `ok`, or the error code (e.g. `unknown-destination`, `service-fault`).
    pub outcome: Outcome,
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
            Ok(()) => (Outcome::Ok, None),
            Err(e) => (Outcome::Failed(e.code), Some(e.message.clone())),
        };
        Self {
            ts_ms: super::unix_ms(),
            id: msg.id.clone(),
            source: msg.source.clone(),
            destination: msg.destination.clone(),
            action: msg.action.clone(),
            size: msg.payload.len(),
            kind: if call {
                TrafficKind::Call
            } else {
                TrafficKind::Send
            },
            latency_us: latency.map(|d| d.as_micros() as u64),
            outcome,
            error,
        }
    }
}

/// Whether the sender of a message waited for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficKind {
    /// `send`: fire and forget.
    Send,
    /// `call`: the sender waited for the reply.
    Call,
}

impl std::fmt::Display for TrafficKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            TrafficKind::Send => "send",
            TrafficKind::Call => "call",
        })
    }
}

/// How a message ended; shown (and sent as JSON) as `ok` or the error code's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed.
    Ok,
    /// Refused on the way or failed at the destination.
    Failed(ErrorCode),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Outcome::Ok => "ok",
            Outcome::Failed(code) => code_name(*code),
        })
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        if name == "ok" {
            return Ok(Outcome::Ok);
        }
        code_from_name(&name)
            .map(Outcome::Failed)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown outcome `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_outcomes_read_as_words() {
        let json = serde_json::json!(["call", "ok", "service-fault"]);
        let (kind, ok, failed): (TrafficKind, Outcome, Outcome) =
            serde_json::from_value(json.clone()).unwrap();
        assert_eq!(kind, TrafficKind::Call);
        assert_eq!(ok, Outcome::Ok);
        assert_eq!(failed, Outcome::Failed(ErrorCode::ServiceFault));
        assert_eq!(serde_json::to_value((kind, ok, failed)).unwrap(), json);
        assert!(serde_json::from_str::<Outcome>("\"nope\"").is_err());
        assert_eq!(format!("{:>6}|", TrafficKind::Send), "  send|");
    }
}
