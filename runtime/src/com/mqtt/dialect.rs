//! What differs between a plain broker and Azure IoT Hub: topics, property bags, the twin.

use serde_json::Value;

use super::azure::{self, Device};
use super::config::Topics;
use crate::com::spool::Record;
use crate::com::{COM, COM_SUBMIT};
use crate::message::Message;

/// The conventions a Com speaks.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// A plain broker with configurable topics.
    Plain(Topics),
    /// Azure IoT Hub.
    Azure(Device),
}

/// What arrived from the hub.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A cloud-to-device message.
    C2d {
        /// The service it names, if any.
        service: Option<String>,
        /// The action it names, if any.
        action: Option<String>,
        /// Its properties.
        props: Vec<(String, String)>,
    },
    /// The desired state: the whole document or a patch to merge.
    Desired {
        /// Whether it replaces the document (else it is merged).
        full: bool,
        /// The twin version, when the hub gives one.
        version: Option<i64>,
    },
    /// A direct method (a command) to answer with `rid`.
    Method {
        /// Its name.
        name: String,
        /// The request id to answer with.
        rid: String,
    },
    /// IoT Hub answering a twin request.
    TwinResponse {
        /// HTTP-like status.
        status: u16,
        /// The request id.
        rid: String,
    },
    /// A topic Com does not handle.
    Other,
}

const TWIN_RES: &str = "$iothub/twin/res/";
const TWIN_DESIRED: &str = "$iothub/twin/PATCH/properties/desired/";
const METHODS: &str = "$iothub/methods/POST/";

impl Dialect {
    /// The topics to subscribe to (at most 5 for IoT Hub).
    pub fn subscriptions(&self) -> Vec<String> {
        match self {
            Dialect::Plain(t) => vec![
                format!("{}/#", t.c2d),
                t.desired.clone(),
                format!("{}/+/+", t.commands),
            ],
            Dialect::Azure(d) => vec![
                format!("devices/{}/messages/devicebound/#", d.device_id),
                format!("{TWIN_RES}#"),
                format!("{TWIN_DESIRED}#"),
                format!("{METHODS}#"),
            ],
        }
    }

    /// Whether reported state is published retained (never on IoT Hub).
    pub fn retain_reports(&self) -> bool {
        matches!(self, Dialect::Plain(_))
    }

    /// Topic and payload of a device-to-cloud message.
    pub fn d2c(&self, r: &Record) -> (String, Vec<u8>) {
        match self {
            Dialect::Plain(t) => {
                let msg = Message {
                    id: r.id.clone(),
                    source: r.source.clone(),
                    destination: COM.into(),
                    action: COM_SUBMIT.into(),
                    content_type: r.content_type.clone(),
                    payload: r.payload.clone(),
                    correlation_id: None,
                    headers: r.headers.clone(),
                };
                let mut v = crate::message::message_json(&msg);
                v["ts_ms"] = r.accepted_ms.into();
                (t.d2c.clone(), v.to_string().into_bytes())
            }
            Dialect::Azure(d) => {
                let encoding = if std::str::from_utf8(&r.payload).is_ok() {
                    "utf-8"
                } else {
                    "binary"
                };
                let mut props: Vec<(&str, &str)> = vec![
                    ("$.mid", &r.id),
                    ("$.ct", &r.content_type),
                    ("$.ce", encoding),
                    ("source", &r.source),
                ];
                props.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let topic = format!(
                    "devices/{}/messages/events/{}",
                    d.device_id,
                    azure::property_bag(props)
                );
                (topic, r.payload.clone())
            }
        }
    }

    /// Topic of a service log line forwarded while `debug` is on.
    pub fn debug_topic(&self) -> String {
        match self {
            Dialect::Plain(t) => t.debug.clone(),
            Dialect::Azure(d) => format!(
                "devices/{}/messages/events/{}",
                d.device_id,
                azure::property_bag([
                    ("$.ct", "application/json"),
                    ("$.ce", "utf-8"),
                    ("busbar-kind", "debug")
                ])
            ),
        }
    }

    /// Topic of the reported state; `rid` numbers IoT Hub's twin requests.
    pub fn reported_topic(&self, rid: u64) -> String {
        match self {
            Dialect::Plain(t) => t.reported.clone(),
            Dialect::Azure(_) => format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
        }
    }

    /// IoT Hub: the topic that asks for the whole twin. A plain broker sends the retained
    /// desired state on subscription instead.
    pub fn twin_get_topic(&self, rid: u64) -> Option<String> {
        match self {
            Dialect::Plain(_) => None,
            Dialect::Azure(_) => Some(format!("$iothub/twin/GET/?$rid={rid}")),
        }
    }

    /// Where the answer to a method goes.
    pub fn method_response_topic(&self, rid: &str, status: u16) -> String {
        match self {
            Dialect::Plain(t) => format!("{}/{status}/{rid}", t.responses),
            Dialect::Azure(_) => format!("$iothub/methods/res/{status}/?$rid={rid}"),
        }
    }

    /// Classifies an incoming publish.
    pub fn parse(&self, topic: &str) -> Inbound {
        match self {
            Dialect::Plain(t) => {
                if topic == t.desired {
                    return Inbound::Desired {
                        full: true,
                        version: None,
                    };
                }
                if let Some(rest) = topic
                    .strip_prefix(t.c2d.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    let mut parts = rest.splitn(2, '/');
                    let service = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    let action = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    return Inbound::C2d {
                        service,
                        action,
                        props: Vec::new(),
                    };
                }
                if let Some(rest) = topic
                    .strip_prefix(t.commands.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    && let Some((name, rid)) = rest.split_once('/')
                {
                    return Inbound::Method {
                        name: name.into(),
                        rid: rid.into(),
                    };
                }
                Inbound::Other
            }
            Dialect::Azure(d) => {
                let c2d = format!("devices/{}/messages/devicebound/", d.device_id);
                if let Some(bag) = topic.strip_prefix(c2d.as_str()) {
                    let props = azure::parse_bag(bag);
                    let find = |k: &str| props.iter().find(|p| p.0 == k).map(|p| p.1.clone());
                    return Inbound::C2d {
                        service: find("service"),
                        action: find("action"),
                        props,
                    };
                }
                if let Some(rest) = topic.strip_prefix(TWIN_RES) {
                    let (status, bag) = rest.split_once('/').unwrap_or((rest, ""));
                    return Inbound::TwinResponse {
                        status: status.parse().unwrap_or(0),
                        rid: azure::bag_value(bag, "$rid").unwrap_or_default(),
                    };
                }
                if let Some(bag) = topic.strip_prefix(TWIN_DESIRED) {
                    return Inbound::Desired {
                        full: false,
                        version: azure::bag_value(bag, "$version").and_then(|v| v.parse().ok()),
                    };
                }
                if let Some(rest) = topic.strip_prefix(METHODS) {
                    let (name, bag) = rest.split_once('/').unwrap_or((rest, ""));
                    return Inbound::Method {
                        name: name.into(),
                        rid: azure::bag_value(bag, "$rid").unwrap_or_default(),
                    };
                }
                Inbound::Other
            }
        }
    }
}

/// RFC 7386 JSON merge patch: `patch` onto `doc` (`null` removes a member).
pub fn merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Default::default());
    }
    let d = doc.as_object_mut().expect("an object");
    for (k, v) in p {
        if v.is_null() {
            d.remove(k);
        } else {
            merge(d.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn azure() -> Dialect {
        Dialect::Azure(
            Device::parse("HostName=h.azure-devices.net;DeviceId=gw;SharedAccessKey=a2V5").unwrap(),
        )
    }

    #[test]
    fn azure_topics() {
        let d = azure();
        assert_eq!(d.subscriptions().len(), 4);
        let r = Record {
            id: "m-1".into(),
            source: "sensor".into(),
            content_type: "application/json".into(),
            headers: vec![("unit".into(), "°C".into())],
            payload: b"{}".to_vec(),
            accepted_ms: 0,
            topic: None,
            retain: false,
        };
        assert_eq!(
            d.d2c(&r).0,
            "devices/gw/messages/events/%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8\
             &source=sensor&unit=%C2%B0C"
        );
        assert_eq!(
            d.parse("devices/gw/messages/devicebound/%24.mid=1&service=echo&action=upper"),
            Inbound::C2d {
                service: Some("echo".into()),
                action: Some("upper".into()),
                props: vec![
                    ("$.mid".into(), "1".into()),
                    ("service".into(), "echo".into()),
                    ("action".into(), "upper".into())
                ]
            }
        );
        assert_eq!(
            d.parse("$iothub/methods/POST/restart/?$rid=42"),
            Inbound::Method {
                name: "restart".into(),
                rid: "42".into()
            }
        );
        assert_eq!(
            d.parse("$iothub/twin/PATCH/properties/desired/?$version=7"),
            Inbound::Desired {
                full: false,
                version: Some(7)
            }
        );
        assert_eq!(
            d.parse("$iothub/twin/res/200/?$rid=1"),
            Inbound::TwinResponse {
                status: 200,
                rid: "1".into()
            }
        );
        assert_eq!(
            d.method_response_topic("42", 200),
            "$iothub/methods/res/200/?$rid=42"
        );
    }

    #[test]
    fn plain_topics() {
        let d = Dialect::Plain(Topics::default().for_node("gw"));
        assert_eq!(
            d.parse("busbar/gw/c2d/echo/upper"),
            Inbound::C2d {
                service: Some("echo".into()),
                action: Some("upper".into()),
                props: vec![]
            }
        );
        assert_eq!(
            d.parse("busbar/gw/commands/call/9"),
            Inbound::Method {
                name: "call".into(),
                rid: "9".into()
            }
        );
        assert!(matches!(
            d.parse("busbar/gw/desired"),
            Inbound::Desired { full: true, .. }
        ));
        assert_eq!(d.parse("elsewhere"), Inbound::Other);
    }

    #[test]
    fn merge_patch() {
        let mut doc = json!({"msb-state": {"enabled": true, "debug": false}, "x": 1});
        merge(
            &mut doc,
            &json!({"msb-state": {"enabled": false}, "x": null, "y": 2}),
        );
        assert_eq!(
            doc,
            json!({"msb-state": {"enabled": false, "debug": false}, "y": 2})
        );
    }
}
