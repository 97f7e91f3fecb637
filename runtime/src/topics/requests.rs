//! The requests of services to a broker connection: publishes (at least once into the
//! outbox, in batches; at most once straight to the session), subscriptions and their end.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS;

use rumqttc::v5::mqttbytes::v5::PublishProperties;

use super::broker::Broker;
use super::config::COM_BROKER;
use super::subscriptions::Change;
use crate::bus::Delivery;
use crate::com::spool::{Record, SpoolError};
use crate::message::{BusError, ErrorCode, PublishMode, TopicRequest};

impl Broker {
    /// Serves a batch of requests: publishes at least once go to the outbox in one write.
    pub(super) fn handle(&mut self, batch: Vec<Delivery>) {
        // A publish or a subscribe is a use (a prune is not).
        if batch
            .iter()
            .any(|d| matches!(d.msg.action.as_str(), "publish" | "subscribe"))
        {
            self.wake_up();
        }
        let mut records = Vec::new();
        let mut takers = Vec::new();
        let now = crate::observe::unix_ms();
        for d in batch {
            let request = match TopicRequest::from_message(&d.msg) {
                Ok(r) => r,
                Err(e) => {
                    self.answer(d, Err(e));
                    continue;
                }
            };
            match request {
                TopicRequest::Publish {
                    topic,
                    mode: PublishMode::AtLeastOnce,
                    retain,
                    content_type,
                    properties,
                    payload,
                    ..
                } => {
                    if let Err(e) = self.fits(size_of(&topic, &properties, &payload)) {
                        self.answer(d, Err(e));
                        continue;
                    }
                    records.push(Record {
                        id: d.msg.id.clone(),
                        source: d.msg.source.clone(),
                        content_type: content_type.unwrap_or_default(),
                        headers: properties,
                        payload,
                        accepted_ms: now,
                        topic: Some(topic.to_string()),
                        retain,
                    });
                    takers.push(d);
                }
                TopicRequest::Publish {
                    topic,
                    mode,
                    retain,
                    content_type,
                    response_topic,
                    correlation,
                    properties,
                    payload,
                    ..
                } => {
                    let size = size_of(&topic, &properties, &payload);
                    if let Err(e) = self.fits(size) {
                        self.answer(d, Err(e));
                        continue;
                    }
                    let properties = PublishProperties {
                        content_type,
                        user_properties: properties,
                        response_topic: response_topic.map(String::from),
                        correlation_data: correlation.map(|c| c.into_bytes().into()),
                        ..Default::default()
                    };
                    let topic = topic.to_string();
                    if mode == PublishMode::Confirmed {
                        let _ = self.publish_now(
                            topic,
                            QoS::AtLeastOnce,
                            retain,
                            payload,
                            properties,
                            None,
                            Some(d),
                        );
                        continue;
                    }
                    let result = self.publish_now(
                        topic,
                        QoS::AtMostOnce,
                        retain,
                        payload,
                        properties,
                        None,
                        None,
                    );
                    self.answer(d, result);
                }
                TopicRequest::Subscribe { filter, .. } => {
                    let service: Arc<str> = Arc::from(d.msg.source.as_str());
                    match self.subs.add(&service, &filter) {
                        Err(e) => {
                            let raise = if &*self.name == COM_BROKER {
                                "the Com's connection allows that many; use a [brokers.*] \
                                 connection for more"
                                    .to_owned()
                            } else {
                                format!("raise brokers.{}.max_filters", self.name)
                            };
                            let e = BusError::new(
                                ErrorCode::QueueFull,
                                format!(
                                    "broker `{}`: cannot subscribe to `{filter}`: {e} ({raise})",
                                    self.name
                                ),
                            );
                            self.answer(d, Err(e));
                        }
                        Ok(Change::Subscribe(id)) if self.client.is_some() => {
                            self.to_subscribe.push_back(id);
                            self.waiting.entry(id).or_default().push(d);
                        }
                        Ok(_) => match self.subs.id_of(&filter) {
                            Some(id) if self.waiting.contains_key(&id) => {
                                self.waiting.entry(id).or_default().push(d);
                            }
                            // Registered: made (again) on every session.
                            _ => self.answer(d, Ok(())),
                        },
                    }
                }
                TopicRequest::Unsubscribe { filter, .. } => {
                    if let Change::Unsubscribe(f) = self.subs.remove(&d.msg.source, &filter) {
                        self.to_unsubscribe.push_back(f);
                    }
                    self.settle(&d.msg.source);
                    self.answer(d, Ok(()));
                }
                TopicRequest::Prune { keep, .. } => {
                    let ended = self.subs.prune(&d.msg.source, &keep);
                    if !ended.is_empty() {
                        tracing::info!(broker = %self.name, service = %d.msg.source,
                            ended = ?ended.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                            "subscriptions outside the service's grants ended");
                    }
                    self.to_unsubscribe.extend(ended);
                    self.settle(&d.msg.source);
                    self.answer(d, Ok(()));
                }
            }
        }
        if records.is_empty() {
            return;
        }
        let results = self.outbox.append(&records);
        self.update_stats();
        for (d, r) in takers.into_iter().zip(results) {
            let result = r.map(drop).map_err(|e| self.outbox_error(&e));
            self.answer(d, result);
        }
    }

    /// A service with no subscription left here needs no forwarder.
    pub(super) fn settle(&mut self, service: &str) {
        if !self.subs.holds(service) {
            self.forwarders.forget(service);
        }
    }

    fn fits(&self, size: usize) -> Result<(), BusError> {
        if size <= self.max_message {
            return Ok(());
        }
        Err(BusError::new(
            ErrorCode::TooLarge,
            format!(
                "a publish of {size} bytes (payload, topic and properties) exceeds broker `{}`'s \
                 limit of {} bytes (brokers.{}.max_message_bytes)",
                self.name, self.max_message, self.name
            ),
        ))
    }

    fn outbox_error(&self, e: &SpoolError) -> BusError {
        let name = &self.name;
        e.to_bus(
            &format!("broker `{name}`'s outbox"),
            &format!("brokers.{name}.outbox.max_bytes"),
        )
    }
}

/// What a publish weighs against `max_message_bytes`: payload, topic and properties.
pub(super) fn size_of(
    topic: &busbar_base::topic::TopicName,
    properties: &[(String, String)],
    payload: &[u8],
) -> usize {
    payload.len()
        + topic.as_str().len()
        + properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}
