//! Messages on the bus: ids, constructors and the error every failed send carries.

mod json;
mod remote;
mod topic_request;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::bindings::{ErrorCode, Message, Reply, WitError};
pub use json::{message_json, reply_json};
pub use remote::{FABRIC, FABRIC_INBOX, FABRIC_SHARE, Remote};
pub use topic_request::{ACTION_TOPIC, PublishMode, TOPICS, TopicRequest};

/// Source name the node uses for what it sends itself (timer ticks, delivery failures).
pub const NODE_SOURCE: &str = "busbar";
/// Com's name on the bus.
pub const COM: &str = "com";
/// The action `submit-message` sends to Com.
pub const COM_SUBMIT: &str = "submit";
/// Destination that reaches every custom service except the sender.
pub const BROADCAST: &str = "*";
/// Reserved action of a timer tick; the payload is the timer's name.
pub const ACTION_TIMER: &str = "$timer";
/// Reserved action of a delivery failure sent back to the sender; the payload is JSON.
pub const ACTION_ERROR: &str = "$error";

/// Hands out message ids unique across restarts of the node: a per-boot prefix and a counter.
#[derive(Debug)]
pub struct IdGen {
    boot: u64,
    next: AtomicU64,
}

impl IdGen {
    /// A generator whose prefix comes from the boot time.
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Self {
            boot: nanos ^ u64::from(std::process::id()).rotate_left(40),
            next: AtomicU64::new(1),
        }
    }

    /// The next id, e.g. `18a2f3c4d5e6f708-42`.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n}", self.boot)
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a message with no correlation id and no headers.
pub fn new_message(
    id: String,
    source: &str,
    destination: &str,
    action: &str,
    content_type: &str,
    payload: Vec<u8>,
) -> Message {
    Message {
        id,
        source: source.to_owned(),
        destination: destination.to_owned(),
        action: action.to_owned(),
        content_type: content_type.to_owned(),
        payload,
        correlation_id: None,
        headers: Vec::new(),
    }
}

/// Why a message could not be submitted, delivered or processed; mirrors the WIT `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code_name(*.code))]
pub struct BusError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A sentence naming the service, action or limit at fault.
    pub message: String,
}

impl BusError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error as a JSON object: `{"code": "unknown-action", "message": "..."}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "code": code_name(self.code), "message": self.message })
    }
}

impl From<WitError> for BusError {
    fn from(e: WitError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<BusError> for WitError {
    fn from(e: BusError) -> Self {
        WitError {
            code: e.code,
            message: e.message,
        }
    }
}

/// Every error code, in the WIT's order.
pub const ERROR_CODES: [ErrorCode; 10] = [
    ErrorCode::UnknownDestination,
    ErrorCode::UnknownAction,
    ErrorCode::QueueFull,
    ErrorCode::TooLarge,
    ErrorCode::NotPermitted,
    ErrorCode::Timeout,
    ErrorCode::ServiceFault,
    ErrorCode::BadPayload,
    ErrorCode::Unavailable,
    ErrorCode::Other,
];

/// The error code a WIT (kebab-case) name stands for.
pub fn code_from_name(name: &str) -> Option<ErrorCode> {
    ERROR_CODES.into_iter().find(|c| code_name(*c) == name)
}

/// The WIT (kebab-case) name of an error code, as used in logs and JSON.
pub fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnknownDestination => "unknown-destination",
        ErrorCode::UnknownAction => "unknown-action",
        ErrorCode::QueueFull => "queue-full",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::NotPermitted => "not-permitted",
        ErrorCode::Timeout => "timeout",
        ErrorCode::ServiceFault => "service-fault",
        ErrorCode::BadPayload => "bad-payload",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Other => "other",
    }
}

/// Shows a payload for a log line: UTF-8 text as it is (shortened), anything else by size.
#[derive(Debug)]
pub struct PayloadPreview<'a>(pub &'a [u8]);

impl fmt::Display for PayloadPreview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        match std::str::from_utf8(self.0) {
            Ok(s) if s.len() <= MAX => f.write_str(s),
            Ok(s) => {
                let cut = s.floor_char_boundary(MAX);
                write!(f, "{}… ({} bytes)", &s[..cut], s.len())
            }
            Err(_) => write!(f, "<{} bytes of binary>", self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_share_the_boot_prefix() {
        let ids = IdGen::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.split('-').next(), b.split('-').next());
        assert!(a.ends_with("-1") && b.ends_with("-2"));
    }

    #[test]
    fn bus_error_displays_code_and_message() {
        let e = BusError::new(ErrorCode::UnknownDestination, "no service named `x`");
        assert_eq!(e.to_string(), "unknown-destination: no service named `x`");
        assert_eq!(e.to_json()["code"], "unknown-destination");
        for code in ERROR_CODES {
            assert_eq!(code_from_name(code_name(code)), Some(code));
        }
        assert_eq!(code_from_name("nope"), None);
    }

    #[test]
    fn preview_shortens_text_and_hides_binary() {
        assert_eq!(PayloadPreview(b"hi").to_string(), "hi");
        assert_eq!(
            PayloadPreview(&[0xff, 0xfe]).to_string(),
            "<2 bytes of binary>"
        );
        let long = "x".repeat(300);
        assert!(
            PayloadPreview(long.as_bytes())
                .to_string()
                .ends_with("(300 bytes)")
        );
    }
}
