//! The `bus` imports: `submit-message`, `submit-action`, `call`.

use std::time::{Duration, Instant};

use super::HostState;
use crate::bindings::busbar::service::bus::Host;
use crate::message::{BusError, COM, COM_SUBMIT, ErrorCode, Message, Reply, WitError};

/// Longest wait for Com to accept a submitted message.
const COM_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

impl HostState {
    /// A message from this service, built from the strings the import already owns.
    fn outgoing(
        &self,
        destination: String,
        action: String,
        content_type: String,
        payload: Vec<u8>,
    ) -> Message {
        Message {
            id: self.bus.next_id(),
            source: self.service.to_string(),
            destination,
            action,
            content_type,
            payload,
            correlation_id: None,
            headers: Vec::new(),
        }
    }

    /// `not-permitted` unless the grants let this service address `destination`.
    fn check_grant(&self, destination: &str) -> Result<(), WitError> {
        if self.granted.may_address(destination) {
            return Ok(());
        }
        self.counters.record_sent(false);
        if busbar_base::address::is_remote(destination)
            && let Err(e) = busbar_base::address::Address::parse(destination)
        {
            return Err(BusError::new(ErrorCode::UnknownDestination, e).into());
        }
        let e = BusError::new(
            ErrorCode::NotPermitted,
            format!(
                "`{}` may not address `{destination}`: add it to the service's \
                 grants.destinations in the manifest",
                self.service
            ),
        );
        tracing::warn!(error = %e, "send refused");
        Err(e.into())
    }

    /// Waits while the service is over its submit quota; the wait does not count against
    /// its deadline (the node imposed it), so a tight submit loop is slowed, not killed.
    pub(super) async fn throttle(&mut self) {
        let Some(quota) = self.quota.clone() else {
            return;
        };
        let Err(not_until) = quota.check() else {
            return;
        };
        self.counters.record_throttled();
        let started = Instant::now();
        let clock = governor::clock::DefaultClock::default();
        let mut wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
        loop {
            tokio::time::sleep(wait).await;
            match quota.check() {
                Ok(()) => break,
                Err(n) => wait = n.wait_time_from(governor::clock::Clock::now(&clock)),
            }
        }
        self.credit_wait(started);
    }

    async fn send_counted(&mut self, msg: Message) -> Result<String, WitError> {
        self.throttle().await;
        let started = Instant::now();
        let sent = self.bus.send(msg).await;
        self.credit_wait(started);
        self.counters.record_sent(sent.is_ok());
        sent.map_err(|e| {
            tracing::warn!(error = %e, "send refused");
            WitError::from(e)
        })
    }
}

impl Host for HostState {
    async fn submit_message(
        &mut self,
        content_type: String,
        payload: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> Result<String, WitError> {
        let mut msg = self.outgoing(COM.into(), COM_SUBMIT.into(), content_type, payload);
        msg.headers = headers;
        // Accepted means stored by Com (in the spool, for a broker): wait for its answer.
        self.throttle().await;
        let id = msg.id.clone();
        let started = Instant::now();
        let accepted = self.bus.call(msg, COM_ACCEPT_TIMEOUT).await;
        self.credit_wait(started);
        self.counters.record_sent(accepted.is_ok());
        accepted.map(|_| id).map_err(|e| {
            tracing::warn!(error = %e, "message to Com refused");
            WitError::from(e)
        })
    }

    async fn submit_action(
        &mut self,
        destination: String,
        action: String,
        content_type: String,
        payload: Vec<u8>,
    ) -> Result<String, WitError> {
        self.check_grant(&destination)?;
        let msg = self.outgoing(destination, action, content_type, payload);
        self.send_counted(msg).await
    }

    async fn call(
        &mut self,
        destination: String,
        action: String,
        content_type: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<Reply, WitError> {
        if destination == *self.service {
            let e = BusError::new(
                ErrorCode::NotPermitted,
                format!("`{destination}` cannot call itself: it would wait on its own mailbox"),
            );
            return Err(e.into());
        }
        self.check_grant(&destination)?;
        self.throttle().await;
        // Kept for the log line if the call fails.
        let msg = self.outgoing(destination.clone(), action.clone(), content_type, payload);
        let started = Instant::now();
        let reply = self
            .bus
            .call(msg, Duration::from_millis(u64::from(timeout_ms)))
            .await;
        self.credit_wait(started);
        self.counters.record_sent(reply.is_ok());
        reply.map_err(|e| {
            tracing::warn!(%destination, %action, error = %e, "call failed");
            e.into()
        })
    }
}
