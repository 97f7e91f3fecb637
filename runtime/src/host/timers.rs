//! Named timers of one instance. Each timer is a small task that puts a `$timer` tick into
//! the service's own mailbox; a tick still waiting there makes the next one skip, so a slow
//! service sees at most one pending tick per timer. Dropping `Timers` stops them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::HostState;
use crate::bindings::busbar::service::timers::Host;
use crate::bus::{Bus, Delivery, ReplyTo};
use crate::message::{ACTION_TIMER, BusError, ErrorCode, NODE_SOURCE, WitError, new_message};

/// Shortest period or delay a timer accepts.
pub const MIN_PERIOD: Duration = Duration::from_millis(10);
/// Most timers one instance may have at once.
pub const MAX_TIMERS: usize = 64;

/// The timers of one instance.
#[derive(Debug)]
pub struct Timers {
    service: Arc<str>,
    bus: Bus,
    mailbox: mpsc::Sender<Delivery>,
    running: HashMap<String, JoinHandle<()>>,
}

impl Timers {
    pub(crate) fn new(service: Arc<str>, bus: Bus, mailbox: mpsc::Sender<Delivery>) -> Self {
        Self {
            service,
            bus,
            mailbox,
            running: HashMap::new(),
        }
    }

    fn start(&mut self, name: String, period: Duration, repeat: bool) -> Result<(), WitError> {
        if period < MIN_PERIOD {
            return Err(invalid(format!(
                "timer `{name}`: {} ms is shorter than the minimum of {} ms",
                period.as_millis(),
                MIN_PERIOD.as_millis()
            )));
        }
        if !self.running.contains_key(&name) && self.running.len() >= MAX_TIMERS {
            return Err(invalid(format!(
                "timer `{name}`: a service may have at most {MAX_TIMERS} timers"
            )));
        }
        let task = tokio::spawn(tick(
            self.service.clone(),
            self.bus.clone(),
            self.mailbox.clone(),
            name.clone(),
            period,
            repeat,
        ));
        if let Some(old) = self.running.insert(name, task) {
            old.abort();
        }
        Ok(())
    }

    fn cancel(&mut self, name: &str) {
        if let Some(task) = self.running.remove(name) {
            task.abort();
        }
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

fn invalid(message: String) -> WitError {
    BusError::new(ErrorCode::Other, message).into()
}

async fn tick(
    service: Arc<str>,
    bus: Bus,
    mailbox: mpsc::Sender<Delivery>,
    name: String,
    period: Duration,
    repeat: bool,
) {
    let pending = Arc::new(AtomicBool::new(false));
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !pending.swap(true, Ordering::AcqRel) {
            let msg = new_message(
                bus.next_id(),
                NODE_SOURCE,
                &service,
                ACTION_TIMER,
                "text/plain",
                name.clone().into_bytes(),
            );
            let d = Delivery {
                msg: Arc::new(msg),
                reply: ReplyTo::Tick(pending.clone()),
            };
            if mailbox.try_send(d).is_err() {
                pending.store(false, Ordering::Release);
                tracing::debug!(service = %service, timer = %name, "tick skipped: mailbox full");
            }
        }
        if !repeat {
            return;
        }
    }
}

impl Host for HostState {
    async fn set_interval(&mut self, name: String, period_ms: u32) -> Result<(), WitError> {
        let period = Duration::from_millis(u64::from(period_ms));
        self.timers.start(name, period, true)
    }

    async fn set_timeout(&mut self, name: String, delay_ms: u32) -> Result<(), WitError> {
        let delay = Duration::from_millis(u64::from(delay_ms));
        self.timers.start(name, delay, false)
    }

    async fn cancel(&mut self, name: String) {
        self.timers.cancel(&name);
    }
}
