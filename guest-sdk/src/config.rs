//! The service's configuration from the node's manifest.

use std::str::FromStr;

use crate::bindings::busbar::service::config;

/// The service's name on this node.
pub fn service_name() -> String {
    config::service_name()
}

/// Configuration property `name`: strings as they are, other values (numbers, booleans,
/// arrays...) as JSON text. `None` when the manifest does not set it.
pub fn property(name: &str) -> Option<String> {
    config::get_property(name)
}

/// Configuration property `name` parsed as `T`, or `default` when it is not set. A value that
/// does not parse is logged as a warning and replaced by `default`.
pub fn property_or<T: FromStr>(name: &str, default: T) -> T {
    match property(name) {
        None => default,
        Some(text) => match text.trim().parse() {
            Ok(value) => value,
            Err(_) => {
                crate::warn!("property `{name}`: cannot use {text:?}, using the default");
                default
            }
        },
    }
}
