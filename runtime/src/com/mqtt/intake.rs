//! What services submit, into the spool: checked, appended in batches, answered once on
//! disk; and the spool's syncs and counts.

use std::time::Duration;

use super::super::spool::{Record, SpoolError};
use super::report::unsettled;
use super::{COM, Com};
use crate::bus::Delivery;
use crate::message::{BusError, ErrorCode};

impl Com {
    /// Writes a batch of submitted messages to the spool and answers their senders.
    pub(super) fn accept(&mut self, batch: Vec<Delivery>) {
        let mut records = Vec::with_capacity(batch.len());
        let mut takers = Vec::with_capacity(batch.len());
        let now = crate::observe::unix_ms();
        for d in batch {
            let refused = if let Err(e) = crate::com::check_action(&d.msg) {
                Some(e)
            } else {
                let size = d.msg.payload.len()
                    + d.msg
                        .headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>();
                (size > self.max_message).then(|| {
                    BusError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "message of {size} bytes (payload and properties) exceeds the hub's \
                             limit of {} bytes (com.max_message_bytes)",
                            self.max_message
                        ),
                    )
                })
            };
            if let Some(e) = refused {
                self.answer(d, Err(e));
                continue;
            }
            records.push(Record {
                id: d.msg.id.clone(),
                source: d.msg.source.clone(),
                content_type: d.msg.content_type.clone(),
                headers: d.msg.headers.clone(),
                payload: d.msg.payload.clone(),
                accepted_ms: now,
                topic: None,
                retain: false,
            });
            takers.push(d);
        }
        if records.is_empty() {
            return;
        }
        let results = self.spool.append(&records);
        // Counts first: a submitter that hears back may read them at once.
        self.update_stats();
        for (d, r) in takers.into_iter().zip(results) {
            let result = r.map(|_| ()).map_err(|e| match e {
                SpoolError::Full { .. } | SpoolError::DiskFull { .. } => {
                    BusError::new(ErrorCode::QueueFull, e.to_string())
                }
                SpoolError::Io(_) => BusError::new(ErrorCode::Other, e.to_string()),
            });
            self.answer(d, result);
        }
    }

    pub(super) fn answer(&self, d: Delivery, result: Result<(), BusError>) {
        if let Err(e) = &result {
            tracing::warn!(from = %d.msg.source, id = %d.msg.id, error = %e, "Com refused a message");
        }
        self.bus
            .finish(COM, d, Duration::ZERO, result.map(|()| None));
    }

    pub(super) fn sync(&mut self) {
        self.spool.sync_logged("Com");
        self.update_stats();
        if self.report_when_settled
            && !self
                .services
                .report()
                .iter()
                .any(|s| unsettled(s.status.state))
        {
            self.report();
        }
    }

    pub(super) fn update_stats(&self) {
        self.stats.set_spool(self.spool.counts());
    }
}
