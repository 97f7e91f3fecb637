//! Hot swap and rollback as the service's task sees them: what the old version left (its
//! state, its leftovers, when it stopped), and going back to it when the new one fails.

use super::Actor;

impl Actor {
    /// Queues what the replaced version left, ahead of the mailbox.
    pub(super) fn take_leftovers(&mut self) {
        if let Some(h) = &self.spec.handover {
            let left = std::mem::take(&mut h.lock().leftovers);
            if !left.is_empty() {
                tracing::info!(
                    count = left.len(),
                    "handling what the previous version left"
                );
            }
            self.pending.extend(left);
        }
    }

    /// The state the replaced version handed over, if any.
    pub(super) fn handed_snapshot(&self) -> Option<Vec<u8>> {
        self.spec
            .handover
            .as_ref()
            .and_then(|h| h.lock().snapshot.clone())
    }

    /// After the first start that follows a swap: how long no version was processing.
    pub(super) fn record_swap_pause(&self) {
        let Some((drained_at, previous)) = self.spec.handover.as_ref().and_then(|h| {
            let mut handed = h.lock();
            Some((handed.drained_at.take()?, handed.previous_sha256.take()))
        }) else {
            return;
        };
        let pause = drained_at.elapsed();
        let pause_ms = pause.as_secs_f64() * 1e3;
        if previous.is_some() && previous == self.status.borrow().sha256 {
            tracing::info!(pause_ms, "restarted (same version)");
        } else {
            tracing::info!(pause_ms, "new version swapped in");
        }
        self.status
            .send_modify(|s| s.swap_pause_us = Some(pause.as_micros() as u64));
    }

    /// Goes back to the version this one replaced, with the same mailbox and the state the
    /// replaced version handed over.
    pub(super) fn roll_back(&mut self, reason: String) {
        let previous = *self
            .spec
            .fallback
            .take()
            .expect("a rollback needs a previous version");
        let failed = self
            .spec
            .source
            .sha256
            .clone()
            .or_else(|| self.status.borrow().sha256.clone());
        tracing::error!(
            sha256 = failed.as_deref().unwrap_or("?"),
            %reason,
            "the new version failed; rolling back to the previous version"
        );
        self.status.send_modify(|s| {
            s.rolled_back = Some(crate::service::Rollback {
                sha256: failed,
                reason,
            });
        });
        let spec = &mut self.spec;
        spec.source = previous.source;
        spec.properties = previous.properties;
        spec.memory_bytes = previous.memory_bytes;
        spec.sandbox = previous.sandbox;
        spec.deadline = previous.deadline;
        spec.granted = previous.granted;
    }
}
