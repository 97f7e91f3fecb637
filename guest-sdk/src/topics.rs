//! MQTT topics on the node's broker connections: publish, subscribe, unsubscribe.
//!
//! A topic or filter beginning with `/` is absolute (the `/` is dropped); any other is
//! relative to the service's base topic on that broker (`{base_topic}/{service}`). Every
//! topic must lie within the service's `grants.topics` in the manifest. Publishes arriving on
//! a subscribed filter reach [`Service::on_topic`](crate::Service::on_topic).
//!
//! ```rust,ignore
//! use busbar_guest::topics;
//! topics::subscribe_on("field", "/zigbee2mqtt/+/temperature")?;  // absolute, on `field`
//! topics::publish("status", b"online")?;                      // `{base}/{service}/status`
//! ```

use serde::Serialize;

use crate::bindings::busbar::service::topics as raw;
use crate::error::Error;
use crate::message::JSON;

/// MQTT quality of service of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// Sent once; the publish fails while the broker is not connected.
    AtMostOnce,
    /// Kept in the connection's durable outbox until the broker acknowledges it.
    #[default]
    AtLeastOnce,
}

/// How to publish: at least once, not retained, no properties by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Quality of service.
    pub qos: Qos,
    /// Whether the broker keeps it as the topic's last value.
    pub retain: bool,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 user properties.
    pub properties: Vec<(String, String)>,
}

/// Publishes `payload` to `topic` on the default broker, at least once: returns once the
/// message is in the connection's durable outbox.
pub fn publish(topic: &str, payload: &[u8]) -> Result<(), Error> {
    publish_with(None, topic, payload, &Options::default())
}

/// Publishes `value` as JSON (content type `application/json`) to `topic` on the default
/// broker, at least once.
pub fn publish_json<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<(), Error> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Error::other(format!("cannot serialize as JSON: {e}")))?;
    let options = Options {
        content_type: Some(JSON.into()),
        ..Options::default()
    };
    publish_with(None, topic, &payload, &options)
}

/// Publishes on `broker` (none: the default one) with `options`.
pub fn publish_with(
    broker: Option<&str>,
    topic: &str,
    payload: &[u8],
    options: &Options,
) -> Result<(), Error> {
    let raw_options = raw::PublishOptions {
        qos: match options.qos {
            Qos::AtMostOnce => raw::Qos::AtMostOnce,
            Qos::AtLeastOnce => raw::Qos::AtLeastOnce,
        },
        retain: options.retain,
        content_type: options.content_type.clone(),
        properties: options.properties.clone(),
    };
    raw::publish(broker, topic, payload, &raw_options).map_err(Error::from)
}

/// Subscribes to `filter` (`+`, `#`, `$share/{group}/...`) on the default broker.
pub fn subscribe(filter: &str) -> Result<(), Error> {
    raw::subscribe(None, filter).map_err(Error::from)
}

/// Subscribes to `filter` on `broker`.
pub fn subscribe_on(broker: &str, filter: &str) -> Result<(), Error> {
    raw::subscribe(Some(broker), filter).map_err(Error::from)
}

/// Ends the subscription to `filter` on the default broker.
pub fn unsubscribe(filter: &str) -> Result<(), Error> {
    raw::unsubscribe(None, filter).map_err(Error::from)
}

/// Ends the subscription to `filter` on `broker`.
pub fn unsubscribe_on(broker: &str, filter: &str) -> Result<(), Error> {
    raw::unsubscribe(Some(broker), filter).map_err(Error::from)
}
