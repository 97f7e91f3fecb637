//! What operators watch: the bus traffic and the node's log lines, each offered through a
//! [`Tap`] that costs one atomic load when nobody watches.

mod logs;
mod tap;
mod traffic;

pub use logs::{LogHub, LogLayer, LogLine, log_hub};
pub use tap::{Tap, TapReceiver};
pub use traffic::Traffic;

/// Milliseconds since the Unix epoch, the timestamp of every observed event.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
