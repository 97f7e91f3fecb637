//! What the fabric's tick does for messages it sent: calls past their deadline answered
//! `timeout`, sends with no word for `resend_ms` sent again, sends older than the outbox's
//! TTL given up.

use std::time::Instant;

use super::outgoing::failed_message;
use super::task::Fabric;
use crate::message::{BusError, ErrorCode};

/// Sends sent again per tick, at most.
const RESEND_BATCH: usize = 512;

impl Fabric {
    /// Calls past their deadline are answered `timeout`; calls whose caller gave up are
    /// forgotten.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let over: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now || c.d.abandoned())
            .map(|(id, _)| id.clone())
            .collect();
        for id in over {
            let Some(c) = self.calls.remove(&id) else {
                continue;
            };
            self.stats.failed(&c.place);
            let e = BusError::new(
                ErrorCode::Timeout,
                format!(
                    "no reply from `{}` within {} ms (is `{}` up? the call may still be \
                     processed there)",
                    c.d.msg.destination, c.timeout_ms, c.place
                ),
            );
            self.finish(c.d, c.started.elapsed(), Err(e));
        }
    }

    /// Sends with no word for `resend_ms` go again (to whichever member, for a group);
    /// sends older than the outbox's TTL are given up, their senders told.
    pub(super) fn resend_due(&mut self, now: Instant) {
        let ttl_ms = u64::try_from(self.outbox.ttl().as_millis()).unwrap_or(u64::MAX);
        let now_ms = busbar_base::time::unix_ms();
        let mut expired = Vec::new();
        let mut due = Vec::new();
        for (id, s) in &self.sends {
            if s.waiting.is_some() {
                continue;
            }
            if s.record.accepted_ms.saturating_add(ttl_ms) <= now_ms {
                expired.push(id.clone());
            } else if due.len() < RESEND_BATCH
                && s.sent_at
                    .is_none_or(|t| now.duration_since(t) >= self.resend)
            {
                due.push(id.clone());
            }
        }
        for id in expired {
            let Some(s) = self.sends.get(&id) else {
                continue;
            };
            let e = BusError::new(
                ErrorCode::Timeout,
                format!(
                    "not processed at `{}` within the fabric outbox's TTL; dropped",
                    s.place
                ),
            );
            let failed = failed_message(&s.record);
            let at = s.place.clone();
            tracing::error!(%id, place = %at, "a message for another node outlived the fabric outbox's TTL and was dropped");
            self.retire(&id);
            self.bus.report_failure(&failed, &at, &e);
        }
        for id in due {
            let Some(s) = self.sends.get_mut(&id) else {
                continue;
            };
            if s.sent_at.is_some() {
                self.stats.resent(&s.place);
            }
            s.sent_at = Some(now);
            let record = s.record.clone();
            self.publish_record(&record);
        }
    }
}
