//! The `config` imports.

use super::HostState;
use crate::bindings::busbar::service::config::Host;

impl Host for HostState {
    async fn service_name(&mut self) -> String {
        self.service.to_string()
    }

    async fn get_property(&mut self, name: String) -> Option<String> {
        self.properties.get(&name).cloned()
    }
}
