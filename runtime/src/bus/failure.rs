//! Failures told back to their sender: a delivery nobody waited for that could not be
//! handled becomes an `$error` message to the wasm service that sent it.

use std::sync::Arc;

use super::{Bus, Delivery, RouteKind};
use crate::message::{ACTION_ERROR, ACTION_TIMER, BusError, Message, NODE_SOURCE, new_message};

impl Bus {
    /// Tells the sender of `failed` (when it is a wasm service) that `receiver` could not
    /// handle it, as an `$error` message. Never blocks: if the sender's mailbox is full the
    /// notice is dropped (the failure is logged by the caller either way).
    pub fn report_failure(&self, failed: &Message, receiver: &str, error: &BusError) {
        if failed.action == ACTION_ERROR || failed.action == ACTION_TIMER {
            return;
        }
        let Some(route) = self
            .inner
            .routes
            .load()
            .get(failed.source.as_str())
            .cloned()
        else {
            return;
        };
        if route.kind != RouteKind::Custom {
            return;
        }
        let payload = serde_json::json!({
            "message_id": failed.id,
            "destination": receiver,
            "action": failed.action,
            "code": crate::message::code_name(error.code),
            "message": error.message,
        });
        let mut notice = new_message(
            self.next_id(),
            NODE_SOURCE,
            &failed.source,
            ACTION_ERROR,
            "application/json",
            payload.to_string().into_bytes(),
        );
        notice.correlation_id = Some(failed.id.clone());
        let _ = route.tx.try_send(Delivery::oneway(Arc::new(notice)));
    }
}
