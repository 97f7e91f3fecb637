//! Sends numbered messages at a steady pace; a test service for hot swaps and back-pressure.
//!
//! Every `period_ms` it sends action `seq` with `{"n": n}` to `target`, for up to `batch`
//! numbers n = 0, 1, 2, ... in order. A number counts as sent once `submit_action` accepted
//! it; when the bus refuses one (e.g. `queue-full`) the tick ends there and the same number
//! is tried again on the next tick, so no number is skipped and none is sent twice.
//!
//! Properties:
//! - `target`: the receiving service (default `seq-receiver`);
//! - `period_ms`: time between ticks (default 10);
//! - `batch`: numbers per tick (default 10);
//! - `count`: stop after this many numbers were accepted (default 0: never).
//!
//! Actions:
//! - `sent` → `{"sent": <numbers accepted>, "failed": <delivery failures reported back>}`.

use std::time::Duration;

use busbar_guest::{
    DeliveryFailure, Error, Message, Reply, Service, debug, info, property_or, submit_action,
    timers, warn,
};
use serde_json::json;

const TIMER: &str = "send";

struct SeqSender {
    target: String,
    batch: u64,
    /// Stop once `next` reaches this; 0 for never.
    count: u64,
    /// The next number to send; also how many were accepted so far.
    next: u64,
    /// Delivery failures the node reported back through `$error`.
    failed: u64,
    /// Whether the last attempt was refused (to log a refusal streak only once).
    refused: bool,
}

impl SeqSender {
    fn done(&self) -> bool {
        self.count > 0 && self.next >= self.count
    }
}

impl Service for SeqSender {
    fn start() -> Result<Self, String> {
        let target = property_or("target", "seq-receiver".to_owned());
        let period_ms = property_or("period_ms", 10u64);
        let batch = property_or("batch", 10u64);
        let count = property_or("count", 0u64);
        timers::set_interval(TIMER, Duration::from_millis(period_ms))
            .map_err(|e| format!("cannot start timer `{TIMER}`: {e}"))?;
        info!("sending {batch} numbers every {period_ms} ms to `{target}` (count {count})");
        Ok(SeqSender {
            target,
            batch,
            count,
            next: 0,
            failed: 0,
            refused: false,
        })
    }

    fn on_timer(&mut self, _name: &str) {
        let before = self.next;
        for _ in 0..self.batch {
            if self.done() {
                break;
            }
            match submit_action(&self.target, "seq", &json!({ "n": self.next })) {
                Ok(_) => {
                    self.next += 1;
                    self.refused = false;
                }
                Err(e) => {
                    if !self.refused {
                        warn!("number {} refused, retrying next tick: {e}", self.next);
                    }
                    self.refused = true;
                    return;
                }
            }
        }
        if self.done() {
            timers::cancel(TIMER);
            if self.next > before {
                info!("all {} numbers sent", self.next);
            }
        }
    }

    fn on_error(&mut self, failure: &DeliveryFailure) {
        self.failed += 1;
        debug!(
            "message {} failed: {}: {}",
            failure.message_id, failure.code, failure.message
        );
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "sent" => Reply::json(&json!({ "sent": self.next, "failed": self.failed })).map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(SeqSender);
