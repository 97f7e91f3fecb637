//! What operators watch: the bus traffic and the node's log lines, each offered through a
//! [`Tap`] that costs one atomic load when nobody watches.

mod counters;
mod logs;
mod tap;
mod traffic;

pub use counters::{CounterSnapshot, ServiceCounters};
pub use logs::{LogHub, LogLayer, LogLevel, LogLine, log_hub};
pub use tap::{Tap, TapReceiver};
pub use traffic::{Outcome, Traffic, TrafficKind};

pub use busbar_base::time::unix_ms;
