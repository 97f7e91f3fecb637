//! Exit codes of the operator commands, so scripts can tell failures apart.
//!
//! | code | meaning                                                         |
//! |------|-----------------------------------------------------------------|
//! | 0    | done                                                            |
//! | 1    | any other error (bad payload file, bad config, ...)            |
//! | 2    | bad command line                                                |
//! | 3    | the node cannot be reached                                      |
//! | 4    | the token is missing, unknown or not allowed to do this, or the action is not permitted |
//! | 5    | unknown service or action, or a request/payload the node refused |
//! | 6    | the service failed (fault, unavailable, queue full, too large)  |
//! | 7    | no reply within the timeout                                     |

/// An error with the exit code it stands for.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A failure with exit code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Exit code 1.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(1, message)
    }

    /// Exit code 3.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(3, message)
    }

    /// Exit code 4.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(4, message)
    }
}

/// The exit code for an error a command returned.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Failure>().map_or(1, |f| f.code)
}
