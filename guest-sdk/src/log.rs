//! Logging and diagnostics. Every line carries the service's name.

use crate::bindings::busbar::service::log as raw;

/// Severity of a log line.
pub use raw::Level;

/// Writes one log line at `level`. The [`info!`](crate::info) family of macros is usually
/// handier.
pub fn log(level: Level, message: &str) {
    raw::log(level, message)
}

/// Records a tracking event with properties (counted and logged; forwarded to the hub when
/// tracking is on).
pub fn track(event: &str, properties: &[(&str, &str)]) {
    let properties: Vec<(String, String)> = properties
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    raw::track(event, &properties)
}

/// Reports a fault without stopping: logged as an error with its code and counted against the
/// service.
pub fn throw_error(code: u32, description: &str) {
    raw::throw_error(code, description)
}

/// Logs a `trace` line: `trace!("got {n} bytes")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a `debug` line: `debug!("state {state:?}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs an `info` line: `info!("started with {n} sensors")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a `warn` line: `warn!("submit failed: {e}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs an `error` line: `error!("cannot parse {text:?}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Error, &::std::format!($($arg)+))
    };
}
