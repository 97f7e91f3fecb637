//! The `log` imports. Each line is a tracing event inside the service's span, so it carries
//! the service's name.

use super::HostState;
use crate::bindings::busbar::service::log::{Host, Level};

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String) {
        match level {
            Level::Trace => tracing::trace!(target: "guest", "{message}"),
            Level::Debug => tracing::debug!(target: "guest", "{message}"),
            Level::Info => tracing::info!(target: "guest", "{message}"),
            Level::Warn => tracing::warn!(target: "guest", "{message}"),
            Level::Error => tracing::error!(target: "guest", "{message}"),
        }
    }

    async fn debug(&mut self, message: String) {
        tracing::debug!(target: "guest", "{message}");
    }

    async fn track(&mut self, event: String, properties: Vec<(String, String)>) {
        self.counters.record_tracked();
        let properties = serde_json::Value::Object(
            properties
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        );
        tracing::info!(target: "guest", %event, %properties, "track");
    }

    async fn throw_error(&mut self, code: u32, description: String) {
        self.counters.record_thrown();
        tracing::error!(target: "guest", fault_code = code, "{description}");
    }
}
