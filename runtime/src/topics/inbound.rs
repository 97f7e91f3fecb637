//! Publishes arriving on subscribed filters: matched in the trie by the connection's task,
//! put into the subscribers' mailboxes by a worker beside it, so a full mailbox (its policy:
//! wait `block_ms`, or refuse) holds up only the publishes behind it, never the session.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;

use super::broker::Broker;
use super::stats::BrokerStats;
use crate::bus::Bus;
use crate::message::{ACTION_TOPIC, Message, TOPICS};

/// A publish on its way to the services whose filters match it.
#[derive(Debug)]
pub struct Inbound {
    topic: String,
    publish: Publish,
    recipients: Vec<Arc<str>>,
}

impl Broker {
    /// A publish arrived: who gets it is decided here, delivery is the worker's.
    pub(super) async fn arrived(&mut self, publish: Publish) {
        self.stats.received.fetch_add(1, Relaxed);
        let Ok(topic) = std::str::from_utf8(&publish.topic).map(str::to_owned) else {
            tracing::warn!(broker = %self.name, "a publish whose topic is not UTF-8 was dropped");
            return;
        };
        let ids = publish
            .properties
            .as_ref()
            .map(|p| p.subscription_identifiers.as_slice())
            .unwrap_or_default();
        let recipients = self
            .subs
            .recipients(&topic, if self.ids { ids } else { &[] });
        if recipients.is_empty() {
            return;
        }
        let inbound = Inbound {
            topic,
            publish,
            recipients,
        };
        // Waiting here slows the broker down (MQTT flow control), it loses nothing.
        let _ = self.inbound.send(inbound).await;
    }
}

/// Puts each publish into its recipients' mailboxes, in order, counting what a mailbox did
/// not take.
pub async fn deliver(
    broker: Arc<str>,
    bus: Bus,
    stats: Arc<BrokerStats>,
    mut inbound: mpsc::Receiver<Inbound>,
) {
    let mut refusals = 0u64;
    while let Some(i) = inbound.recv().await {
        for service in &i.recipients {
            let msg = message(&bus, &broker, &i, service);
            match bus.send(msg).await {
                Ok(_) => {
                    stats.delivered.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    stats.drop_for(service);
                    refusals += 1;
                    if refusals.is_power_of_two() {
                        tracing::warn!(%broker, %service, topic = %i.topic, error = %e, dropped = refusals,
                            "a publish was not delivered to a subscriber");
                    }
                }
            }
        }
    }
}

/// The `$topic` message of a publish for `service`.
fn message(bus: &Bus, broker: &str, i: &Inbound, service: &str) -> Message {
    let p = &i.publish;
    let qos = match p.qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    };
    let mut headers = vec![
        ("topic".to_owned(), i.topic.clone()),
        ("broker".to_owned(), broker.to_owned()),
        ("qos".to_owned(), qos.to_owned()),
        ("retain".to_owned(), p.retain.to_string()),
    ];
    let mut content_type = None;
    if let Some(props) = &p.properties {
        if let Some(rt) = &props.response_topic {
            headers.push(("response-topic".to_owned(), rt.clone()));
        }
        headers.extend(props.user_properties.iter().cloned());
        content_type = props.content_type.clone();
    }
    Message {
        id: bus.next_id(),
        source: TOPICS.to_owned(),
        destination: service.to_owned(),
        action: ACTION_TOPIC.to_owned(),
        content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
        payload: p.payload.to_vec(),
        correlation_id: None,
        headers,
    }
}
