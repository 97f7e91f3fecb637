//! One instance at work: instantiated and started, fed its mailbox one message at a time,
//! drained and stopped, or failed (messages then answered `unavailable`).

use std::time::{Duration, Instant};

use super::super::{Fault, Instance, State};
use super::{Actor, Ended};
use crate::bus::Delivery;
use crate::component::LoadedComponent;
use crate::host::HostContext;
use crate::message::{
    BusError, ErrorCode, FABRIC, FABRIC_SHARE, PayloadPreview, TOPICS, TopicRequest,
};

impl Actor {
    pub(super) async fn instantiate(&self, component: &LoadedComponent) -> Result<Instance, Fault> {
        let ctx = HostContext {
            service: self.spec.name.clone(),
            bus: self.bus.clone(),
            mailbox: self.self_tx.clone(),
            properties: self.spec.properties.clone(),
            counters: self.counters.clone(),
            memory_bytes: self.spec.memory_bytes,
            sandbox: self.spec.sandbox.clone(),
            granted: self.spec.granted.clone(),
        };
        Instance::new(component, ctx, self.spec.deadline).await
    }

    /// Restores the handed-over state (if any), runs `start`, then gives the instance the
    /// current desired state.
    pub(super) async fn start_instance(
        &mut self,
        mut instance: Instance,
        state: Option<Vec<u8>>,
    ) -> Result<Instance, Fault> {
        self.set_state(State::Starting);
        if let Some(state) = state {
            let bytes = state.len();
            if instance.restore(state).await? {
                tracing::info!(bytes, "state restored from the previous version");
            } else {
                tracing::warn!(
                    bytes,
                    "the previous version handed over its state, but this one does not export `restore`; it starts fresh"
                );
            }
        }
        self.subscribe_declared().await?;
        self.join_group().await?;
        instance.start().await?;
        let state = self.desired.borrow_and_update().clone();
        if let Some(state) = state {
            instance.state_update(&state).await?;
        }
        Ok(instance)
    }

    /// Before each start: ends the subscriptions this version's grants no longer cover (a
    /// new version may have narrower ones), then makes the subscriptions the manifest
    /// declares, as if the service had called `subscribe` (they hold across restarts and
    /// swaps: asking again is harmless).
    async fn subscribe_declared(&self) -> Result<(), Fault> {
        if !self.bus.knows(TOPICS) {
            return Ok(());
        }
        let topics = &self.spec.granted.topics;
        // Only a version replacing another (a swap, a rollback) can inherit subscriptions its
        // grants do not cover; a first start has none.
        let replacing = self.spec.handover.is_some() || self.spec.fallback.is_some();
        for broker in topics.known.iter().filter(|_| replacing) {
            let keep = topics
                .brokers
                .get(broker)
                .map(|a| a.subscribe.clone())
                .unwrap_or_default();
            let request = TopicRequest::Prune {
                broker: broker.clone(),
                keep,
            };
            let msg = request.into_message(self.bus.next_id(), &self.spec.name);
            if let Err(e) = self.bus.call(msg, Duration::from_secs(10)).await {
                tracing::warn!(%broker, error = %e, "subscriptions outside the grants could not be ended");
            }
        }
        for (broker, filter) in &self.spec.subscribe {
            let request = TopicRequest::Subscribe {
                broker: broker.clone(),
                filter: filter.clone(),
            };
            let msg = request.into_message(self.bus.next_id(), &self.spec.name);
            self.bus
                .call(msg, Duration::from_secs(10))
                .await
                .map_err(|e| {
                    Fault::StartFailed(format!(
                        "its subscription to `{filter}` on broker `{broker}` (manifest \
                         `subscribe`) failed: {e}"
                    ))
                })?;
        }
        Ok(())
    }

    /// On a fabric: takes the service into its group (`shared`), or out of the one a
    /// previous version was in.
    async fn join_group(&self) -> Result<(), Fault> {
        let replacing = self.spec.handover.is_some() || self.spec.fallback.is_some();
        if !self.bus.knows(FABRIC) || (self.spec.shared.is_none() && !replacing) {
            return Ok(());
        }
        let group = self.spec.shared.as_ref().map_or("", |g| g.as_str());
        self.share(group).await.map_err(|e| {
            Fault::StartFailed(format!(
                "it could not join group `{group}` on the fabric (manifest `shared`): {e}"
            ))
        })
    }

    /// Tells the fabric which group the service is in (empty: none).
    async fn share(&self, group: &str) -> Result<(), BusError> {
        let msg = crate::message::new_message(
            self.bus.next_id(),
            &self.spec.name,
            FABRIC,
            FABRIC_SHARE,
            "text/plain",
            group.as_bytes().to_vec(),
        );
        self.bus.call(msg, Duration::from_secs(10)).await.map(drop)
    }

    /// The service stopped for good (no new version takes over): its subscriptions end, on
    /// every connection, in order with what it asked before (a busy connection is asked
    /// again).
    pub(super) async fn release_subscriptions(&self) {
        if self.spec.successor.get().is_some() || !self.bus.knows(TOPICS) {
            return;
        }
        if self.spec.shared.is_some()
            && self.bus.knows(FABRIC)
            && let Err(e) = self.share("").await
        {
            tracing::warn!(error = %e, "it could not leave its group on the fabric");
        }
        for broker in &self.spec.granted.topics.known {
            for attempt in 1..=20u32 {
                let request = TopicRequest::Prune {
                    broker: broker.clone(),
                    keep: Vec::new(),
                };
                let msg = request.into_message(self.bus.next_id(), &self.spec.name);
                match self.bus.call(msg, Duration::from_secs(10)).await {
                    Ok(_) => break,
                    Err(e) if e.code == ErrorCode::QueueFull && attempt < 20 => {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    }
                    Err(e) => {
                        tracing::warn!(%broker, error = %e, "its MQTT subscriptions could not be ended");
                        break;
                    }
                }
            }
        }
    }

    pub(super) async fn serve(&mut self, mut instance: Instance) -> Ended {
        self.set_state(State::Running);
        loop {
            if let Some(d) = self.pending.pop_front() {
                if let Err(fault) = self.handle(&mut instance, d).await {
                    return Ended::Faulted(fault);
                }
                continue;
            }
            let d = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return self.shut_down(instance).await,
                Ok(()) = self.desired.changed() => {
                    let state = self.desired.borrow_and_update().clone();
                    if let Some(state) = state
                        && let Err(fault) = instance.state_update(&state).await
                    {
                        return Ended::Faulted(fault);
                    }
                    continue;
                }
                d = self.mailbox.recv() => d,
            };
            let Some(d) = d else {
                return self.shut_down(instance).await;
            };
            if let Err(fault) = self.handle(&mut instance, d).await {
                return Ended::Faulted(fault);
            }
        }
    }

    /// Processes one delivery and routes its outcome. A fault leaves the instance unusable.
    pub(super) async fn handle(&self, instance: &mut Instance, d: Delivery) -> Result<(), Fault> {
        d.take_tick();
        let msg = d.msg.clone();
        let began = Instant::now();
        let outcome = instance.process(&msg).await;
        let took = began.elapsed();
        let (result, fault) = match outcome {
            Ok(r) => (r.map_err(BusError::from), None),
            Err(fault) => {
                let e = BusError::new(
                    ErrorCode::ServiceFault,
                    format!(
                        "`{}` {fault} while handling `{}`",
                        self.spec.name, msg.action
                    ),
                );
                (Err(e), Some(fault))
            }
        };
        self.counters.record_processed(result.is_ok());
        if let Some(fault) = &fault {
            self.dead_letter(&msg, &fault.to_string());
        }
        if let Err(e) = &result {
            tracing::warn!(
                id = %msg.id, from = %msg.source, action = %msg.action,
                payload = %PayloadPreview(&msg.payload), error = %e,
                "message not processed"
            );
        }
        self.bus.finish(&self.spec.name, d, took, result);
        fault.map_or(Ok(()), Err)
    }

    pub(super) fn dead_letter(&self, msg: &crate::message::Message, reason: &str) {
        self.counters.record_dead_lettered();
        self.dead_letters.put(&self.spec.name, msg, reason);
    }

    /// Processes what is already queued (up to the drain deadline), then calls `stop`. What
    /// is still queued after that goes to the dead-letter store.
    pub(super) async fn shut_down(&mut self, mut instance: Instance) -> Ended {
        self.set_state(State::Stopping);
        // Replaced by a new version: finish the whole queue (bounded: mailbox × deadline), so
        // messages keep their order; stopping for good: up to `drain`.
        let until = self
            .spec
            .successor
            .get()
            .is_none()
            .then(|| Instant::now() + self.spec.drain);
        let mut drained = 0u32;
        let mut healthy = true;
        while until.is_none_or(|u| Instant::now() < u) {
            let Some(d) = self.try_next() else {
                break;
            };
            drained += 1;
            if let Err(fault) = self.handle(&mut instance, d).await {
                tracing::warn!(%fault, "fault while draining; stop is skipped");
                healthy = false;
                break;
            }
        }
        if drained > 0 {
            tracing::info!(drained, "processed queued messages before stopping");
        }
        if let Some(next) = self.spec.successor.get() {
            let previous = self.status.borrow().sha256.clone();
            {
                let mut handed = next.handover.lock();
                handed.drained_at = Some(Instant::now());
                handed.previous_sha256 = previous;
            }
            if healthy {
                match instance.snapshot().await {
                    Ok(Some(state)) => next.handover.lock().snapshot = Some(state),
                    Ok(None) => {}
                    Err(fault) => {
                        tracing::warn!(%fault, "snapshot failed; the new version starts fresh");
                        healthy = false;
                    }
                }
            }
        }
        self.release_queue();
        if healthy && let Err(fault) = instance.stop().await {
            tracing::warn!(%fault, "stop did not complete");
        }
        Ended::Cancelled
    }

    /// Marks the service failed and answers everything sent to it with `unavailable` until
    /// the node shuts down.
    pub(super) async fn fail(&mut self) {
        self.set_state(State::Failed);
        let reason = self.status.borrow().last_fault.clone().unwrap_or_default();
        loop {
            let d = match self.pending.pop_front() {
                Some(d) => Some(d),
                None => tokio::select! {
                    () = self.cancel.cancelled() => return,
                    d = self.mailbox.recv() => d,
                },
            };
            let Some(d) = d else { return };
            d.take_tick();
            let e = BusError::new(
                ErrorCode::Unavailable,
                format!("service `{}` has failed: {reason}", self.spec.name),
            );
            self.bus.finish(&self.spec.name, d, Duration::ZERO, Err(e));
        }
    }
}
