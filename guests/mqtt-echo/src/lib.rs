//! Answers MQTT requests, as the MQTT service daemon's README example does: subscribes to
//! `requests/+` under its base topic and publishes each payload back — to the request's MQTT
//! 5 response topic when it has one, else to `replies/{last level}` under its base topic.
//!
//! Properties: `broker` (default: the node's default broker). Action `stats` answers
//! `{"echoed": n}`.

use busbar_guest::{Error, Message, Reply, Service, property, topics};
use serde_json::json;

struct MqttEcho {
    broker: Option<String>,
    echoed: u64,
}

impl Service for MqttEcho {
    fn start() -> Result<Self, String> {
        let broker: Option<String> = property("broker");
        match &broker {
            Some(b) => topics::subscribe_on(b, "requests/+"),
            None => topics::subscribe("requests/+"),
        }
        .map_err(|e| format!("cannot subscribe to requests/+: {e}"))?;
        Ok(MqttEcho { broker, echoed: 0 })
    }

    fn on_topic(&mut self, msg: &Message) -> Result<(), Error> {
        let reply_to = match msg.header("response-topic") {
            // Absolute: the requester chose it.
            Some(t) => format!("/{t}"),
            None => {
                let id = msg
                    .topic()
                    .and_then(|t| t.rsplit('/').next())
                    .unwrap_or("0");
                format!("replies/{id}")
            }
        };
        let options = topics::Options {
            content_type: Some(msg.content_type().to_owned()),
            ..topics::Options::default()
        };
        topics::publish_with(self.broker.as_deref(), &reply_to, msg.payload(), &options)?;
        self.echoed += 1;
        Ok(())
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "stats" => Reply::json(&json!({ "echoed": self.echoed })).map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(MqttEcho);
