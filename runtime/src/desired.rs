//! The node's desired state: the JSON document the hub last set (Azure IoT Hub: the twin's
//! desired properties). The node owns the one [`DesiredState`]; every service follows it and
//! gets each new document through `state-update`, and a service that starts later gets the
//! latest one.

use std::sync::Arc;

use tokio::sync::watch;

/// The latest desired state, `None` until the hub has sent one.
#[derive(Debug)]
pub struct DesiredState(watch::Sender<Option<Arc<str>>>);

impl Default for DesiredState {
    fn default() -> Self {
        Self(watch::Sender::new(None))
    }
}

impl DesiredState {
    /// Sets the desired state (a JSON document) for every follower.
    pub fn set(&self, json: &str) {
        self.0.send_replace(Some(Arc::from(json)));
    }

    /// Follows the desired state.
    pub fn follow(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.0.subscribe()
    }
}
