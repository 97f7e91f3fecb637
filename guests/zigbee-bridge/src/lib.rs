//! Bridges zigbee2mqtt devices to the IoT hub: subscribes to the device topics on a field
//! broker, normalises each reading (units in the field names, unknown fields left out) and
//! submits it towards the hub.
//!
//! zigbee2mqtt publishes one JSON object per device state change on
//! `zigbee2mqtt/{friendly name}`, e.g. `{"temperature": 21.5, "humidity": 48, "battery": 97,
//! "linkquality": 120}`. Each becomes
//! `{"device": "kitchen", "temperature_c": 21.5, "humidity_pct": 48.0, "battery_pct": 97.0,
//! "link_quality": 120.0}`, submitted with header `device`.
//!
//! Properties: `broker` (default `field`), `filter` (default `/zigbee2mqtt/+`: absolute).
//! Action `stats` answers `{"readings": n, "skipped": n}`.

use busbar_guest::{Error, Message, Reply, Service, property_or, topics, warn};
use serde_json::{Map, Value, json};

/// zigbee2mqtt field → normalised field.
const FIELDS: &[(&str, &str)] = &[
    ("temperature", "temperature_c"),
    ("humidity", "humidity_pct"),
    ("pressure", "pressure_hpa"),
    ("battery", "battery_pct"),
    ("linkquality", "link_quality"),
    ("illuminance_lux", "illuminance_lux"),
    ("co2", "co2_ppm"),
];

struct ZigbeeBridge {
    readings: u64,
    skipped: u64,
}

impl Service for ZigbeeBridge {
    fn start() -> Result<Self, String> {
        let broker: String = property_or("broker", "field".to_owned());
        let filter: String = property_or("filter", "/zigbee2mqtt/+".to_owned());
        topics::subscribe_on(&broker, &filter)
            .map_err(|e| format!("cannot subscribe to `{filter}` on `{broker}`: {e}"))?;
        Ok(ZigbeeBridge {
            readings: 0,
            skipped: 0,
        })
    }

    fn on_topic(&mut self, msg: &Message) -> Result<(), Error> {
        let topic = msg.topic().unwrap_or_default();
        let device = topic.rsplit('/').next().unwrap_or_default();
        // zigbee2mqtt's own state lives under `bridge`; retained states are old news.
        if device == "bridge" || device.is_empty() {
            return Ok(());
        }
        let Some(reading) = normalise(device, msg.payload()) else {
            self.skipped += 1;
            warn!("`{topic}`: not a JSON object with a known reading; skipped");
            return Ok(());
        };
        busbar_guest::submit_with_headers(&reading, &[("device", device)])?;
        self.readings += 1;
        Ok(())
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "stats" => Reply::json(&json!({
                "readings": self.readings,
                "skipped": self.skipped,
            }))
            .map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

/// The normalised reading of `device`, if the payload holds at least one known field.
fn normalise(device: &str, payload: &[u8]) -> Option<Value> {
    let Ok(Value::Object(state)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    let mut out = Map::new();
    for (from, to) in FIELDS {
        if let Some(v) = state.get(*from).and_then(Value::as_f64) {
            out.insert((*to).to_owned(), json!(v));
        }
    }
    if out.is_empty() {
        return None;
    }
    out.insert("device".into(), json!(device));
    Some(Value::Object(out))
}

busbar_guest::export!(ZigbeeBridge);
