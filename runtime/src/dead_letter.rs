//! The dead-letter store: messages a service took but could not finish (it trapped or ran
//! past its deadline while processing them, or the node stopped before their turn), kept
//! with the reason so an operator can see what was lost and replay it.
//!
//! The store keeps the last [`CAPACITY`] entries in memory; the `orchestrator` service
//! answers `dead-letters` with them (`busbar call orchestrator dead-letters`), and
//! `busbar_messages_dead_lettered_total` counts them per service.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::message::Message;
use crate::observe::unix_ms;

/// Entries kept; older ones are dropped first (they stay counted).
pub const CAPACITY: usize = 1000;

/// The node's dead letters, oldest first.
#[derive(Debug, Default)]
pub struct DeadLetters {
    entries: Mutex<VecDeque<Value>>,
}

impl DeadLetters {
    /// Keeps `msg`, which `service` could not finish because of `reason`.
    pub fn put(&self, service: &str, msg: &Message, reason: &str) {
        tracing::warn!(
            service, id = %msg.id, from = %msg.source, action = %msg.action, %reason,
            "message dead-lettered"
        );
        let entry = json!({
            "ts_ms": unix_ms(),
            "service": service,
            "action": msg.action,
            "reason": reason,
            "message": crate::message::message_json(msg),
        });
        let mut entries = busbar_base::sync::lock(&self.entries);
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The kept entries (of `service` only, when given), oldest first.
    pub fn list(&self, service: Option<&str>) -> Vec<Value> {
        let entries = busbar_base::sync::lock(&self.entries);
        entries
            .iter()
            .filter(|e| service.is_none_or(|s| e["service"] == s))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::new_message;

    #[test]
    fn keeps_the_message_with_its_reason_and_forgets_the_oldest() {
        let store = DeadLetters::default();
        for i in 0..=CAPACITY {
            let msg = new_message(
                format!("m{i}"),
                "sensor",
                "alert",
                "reading",
                "application/json",
                br#"{"celsius":30}"#.to_vec(),
            );
            store.put("alert", &msg, "trapped: boom");
        }
        let all = store.list(None);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0]["message"]["id"], "m1");
        assert_eq!(all[0]["reason"], "trapped: boom");
        assert_eq!(all[0]["message"]["payload"]["celsius"], 30);
        assert!(store.list(Some("other")).is_empty());
    }
}
