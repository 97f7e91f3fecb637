//! The `topics` imports: `publish`, `subscribe`, `unsubscribe` on the node's broker
//! connections. Topics are made absolute and checked against the grants here; the request
//! then goes to the internal service `topics` on the bus, which answers once it is done
//! (a publish at least once: in the durable outbox; a subscribe: acknowledged by the broker,
//! or registered while the connection is down).

use std::time::{Duration, Instant};

use super::HostState;
use crate::bindings::busbar::service::topics::{Host, PublishOptions, Qos};
use crate::grants::{BrokerAccess, TopicRefusal};
use crate::message::{BusError, ErrorCode, PublishMode, TopicRequest, WitError};

/// Longest wait for a broker connection to take a request.
const TOPICS_TIMEOUT: Duration = Duration::from_secs(10);

impl HostState {
    /// The connection `broker` names and what this service may do there.
    fn broker_access(&self, broker: Option<&str>) -> Result<(String, &BrokerAccess), WitError> {
        self.granted
            .topics
            .on(&self.service, broker)
            .map(|(name, access)| (name.to_owned(), access))
            .map_err(|r| self.refused(r))
    }

    fn refused(&self, r: TopicRefusal) -> WitError {
        let code = match r {
            TopicRefusal::Invalid(_) => ErrorCode::Other,
            TopicRefusal::NotPermitted(_) => ErrorCode::NotPermitted,
            TopicRefusal::Unknown(_) => ErrorCode::UnknownDestination,
        };
        let e = BusError::new(code, r.text());
        tracing::warn!(error = %e, "topic request refused");
        e.into()
    }

    /// Sends `request` to `topics` and waits for its answer.
    async fn ask_topics(&mut self, request: TopicRequest) -> Result<(), WitError> {
        let msg = request.into_message(self.bus.next_id(), &self.service);
        let started = Instant::now();
        let answer = self.bus.call(msg, TOPICS_TIMEOUT).await;
        self.credit_wait(started);
        answer.map(drop).map_err(|e| {
            tracing::warn!(error = %e, "topic request failed");
            e.into()
        })
    }
}

impl Host for HostState {
    async fn publish(
        &mut self,
        broker: Option<String>,
        topic: String,
        payload: Vec<u8>,
        options: PublishOptions,
    ) -> Result<(), WitError> {
        let (broker, access) = self.broker_access(broker.as_deref())?;
        let topic = access
            .publish_topic(&self.service, &topic)
            .map_err(|r| self.refused(r))?;
        self.throttle().await;
        let request = TopicRequest::Publish {
            broker,
            topic,
            mode: if matches!(options.qos, Qos::AtLeastOnce) {
                PublishMode::AtLeastOnce
            } else {
                PublishMode::AtMostOnce
            },
            response_topic: None,
            correlation: None,
            retain: options.retain,
            content_type: options.content_type,
            properties: options.properties,
            payload,
        };
        let sent = self.ask_topics(request).await;
        self.counters.record_sent(sent.is_ok());
        sent
    }

    async fn subscribe(&mut self, broker: Option<String>, filter: String) -> Result<(), WitError> {
        let (broker, access) = self.broker_access(broker.as_deref())?;
        let filter = access
            .subscribe_filter(&self.service, &filter)
            .map_err(|r| self.refused(r))?;
        self.ask_topics(TopicRequest::Subscribe { broker, filter })
            .await
    }

    async fn unsubscribe(
        &mut self,
        broker: Option<String>,
        filter: String,
    ) -> Result<(), WitError> {
        let (broker, access) = self.broker_access(broker.as_deref())?;
        let filter = access.filter(&filter).map_err(|r| self.refused(r))?;
        self.ask_topics(TopicRequest::Unsubscribe { broker, filter })
            .await
    }
}
