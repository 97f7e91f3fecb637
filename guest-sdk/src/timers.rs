//! Named timers. Each tick reaches the service as [`Service::on_timer`] with the timer's name.
//! Ticks never queue up: while one is still waiting in the mailbox, the next is skipped.
//!
//! [`Service::on_timer`]: crate::Service::on_timer

use std::time::Duration;

use crate::bindings::busbar::service::timers;
use crate::bus::millis;
use crate::error::Error;

/// Starts (or replaces) timer `name`, firing every `period` (at least 10 ms).
pub fn set_interval(name: &str, period: Duration) -> Result<(), Error> {
    timers::set_interval(name, millis(period)).map_err(Error::from)
}

/// Starts (or replaces) timer `name`, firing once after `delay`.
pub fn set_timeout(name: &str, delay: Duration) -> Result<(), Error> {
    timers::set_timeout(name, millis(delay)).map_err(Error::from)
}

/// Stops timer `name`; nothing happens if there is none.
pub fn cancel(name: &str) {
    timers::cancel(name)
}
