//! The error type shared by every fallible call.

use std::fmt;
use std::str::FromStr;

use crate::bindings::busbar::service::types::Error as RawError;
use crate::message::Message;

pub use crate::bindings::busbar::service::types::ErrorCode;

/// An error as the node understands it: an [`ErrorCode`] and a message naming what is wrong.
///
/// Returned by the imports (submitting, calling, timers) and by [`Service::process`] back to
/// the sender.
///
/// [`Service::process`]: crate::Service::process
#[derive(Clone)]
pub struct Error(RawError);

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error(RawError {
            code,
            message: message.into(),
        })
    }

    /// `unknown-action`: this service does not handle `msg`'s action.
    pub fn unknown_action(msg: &Message) -> Self {
        Self::new(
            ErrorCode::UnknownAction,
            format!(
                "action `{}` (from `{}`) is not handled by this service",
                msg.action(),
                msg.source()
            ),
        )
    }

    /// `bad-payload`: the payload could not be understood.
    pub fn bad_payload(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadPayload, message)
    }

    /// `other`: anything that has no better code.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Other, message)
    }

    /// What kind of error this is.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The human-readable explanation.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The WIT error record this wraps.
    #[doc(hidden)]
    pub fn into_raw(self) -> RawError {
        self.0
    }
}

impl From<RawError> for Error {
    fn from(raw: RawError) -> Self {
        Error(raw)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code().as_str())
            .field("message", &self.message())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code().as_str(), self.message())
    }
}

impl std::error::Error for Error {}

impl ErrorCode {
    /// The code's name as written in the WIT file, e.g. `"unknown-action"`.
    pub fn as_str(&self) -> &'static str {
        match self {
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
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = Error;

    /// Parses a code's WIT name, e.g. `"queue-full"`.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "unknown-destination" => ErrorCode::UnknownDestination,
            "unknown-action" => ErrorCode::UnknownAction,
            "queue-full" => ErrorCode::QueueFull,
            "too-large" => ErrorCode::TooLarge,
            "not-permitted" => ErrorCode::NotPermitted,
            "timeout" => ErrorCode::Timeout,
            "service-fault" => ErrorCode::ServiceFault,
            "bad-payload" => ErrorCode::BadPayload,
            "unavailable" => ErrorCode::Unavailable,
            "other" => ErrorCode::Other,
            _ => return Err(Error::other(format!("`{s}` is not an error code"))),
        })
    }
}
