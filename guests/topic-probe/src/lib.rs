//! Drives MQTT topics on request and records what arrives; a test service.
//!
//! Property `keep` (default true): false only counts what arrives (for benchmarks).
//!
//! Actions (JSON payloads; `broker` is optional everywhere, none: the default one):
//! - `subscribe` / `unsubscribe` `{"broker", "filters": [..]}` → `{"done": n}`, or the first
//!   error as `{"error": {"code", "message"}, "done": n}`;
//! - `publish` `{"broker", "topic", "payload": "text", "qos": 0|1, "retain", "count": n,
//!   "properties": {..}}` → `{"done": n}` or `{"error": .., "done": n}` (with `count`, the
//!   payloads are `{payload}-{i}`);
//! - `received` `{"since": n}` → `{"count": total, "messages": [{"topic", "payload",
//!   "broker", "retain", "headers"}]}` from the `since`-th on;
//! - `count` → `{"count": total}` (kept or not);
//! - `sleep` `{"ms": n, "announce": "topic"}` → publishes to `announce` (if given), sleeps
//!   (a busy service), then answers `{"slept_ms": n}`.

use busbar_guest::{Error, Message, Reply, Service, topics};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
struct Filters {
    broker: Option<String>,
    filters: Vec<String>,
}

#[derive(Deserialize)]
struct Publish {
    broker: Option<String>,
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default = "one")]
    qos: u8,
    #[serde(default)]
    retain: bool,
    count: Option<u32>,
    #[serde(default)]
    properties: Map<String, Value>,
}

fn one() -> u8 {
    1
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: usize,
}

struct TopicProbe {
    received: Vec<Value>,
    keep: bool,
    count: usize,
}

fn outcome(done: usize, error: Option<Error>) -> Result<Option<Reply>, Error> {
    let mut out = json!({ "done": done });
    if let Some(e) = error {
        out["error"] = json!({ "code": e.code().to_string(), "message": e.message() });
    }
    Reply::json(&out).map(Some)
}

impl Service for TopicProbe {
    fn start() -> Result<Self, String> {
        Ok(TopicProbe {
            received: Vec::new(),
            keep: busbar_guest::property_or("keep", true),
            count: 0,
        })
    }

    fn on_topic(&mut self, msg: &Message) -> Result<(), Error> {
        self.count += 1;
        if !self.keep {
            return Ok(());
        }
        let headers: Map<String, Value> = msg
            .headers()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        self.received.push(json!({
            "topic": msg.topic(),
            "payload": String::from_utf8_lossy(msg.payload()),
            "broker": msg.broker(),
            "retain": msg.retained(),
            "content_type": msg.content_type(),
            "headers": headers,
        }));
        Ok(())
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "subscribe" | "unsubscribe" => {
                let req: Filters = msg.json()?;
                let subscribe = msg.action() == "subscribe";
                for (done, f) in req.filters.iter().enumerate() {
                    let result = match (&req.broker, subscribe) {
                        (Some(b), true) => topics::subscribe_on(b, f),
                        (None, true) => topics::subscribe(f),
                        (Some(b), false) => topics::unsubscribe_on(b, f),
                        (None, false) => topics::unsubscribe(f),
                    };
                    if let Err(e) = result {
                        return outcome(done, Some(e));
                    }
                }
                outcome(req.filters.len(), None)
            }
            "publish" => {
                let req: Publish = msg.json()?;
                let options = topics::Options {
                    qos: if req.qos == 0 {
                        topics::Qos::AtMostOnce
                    } else {
                        topics::Qos::AtLeastOnce
                    },
                    retain: req.retain,
                    content_type: Some("text/plain".into()),
                    properties: req
                        .properties
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect(),
                };
                let count = req.count.unwrap_or(1) as usize;
                for i in 0..count {
                    let payload = match req.count {
                        Some(_) => format!("{}-{i}", req.payload),
                        None => req.payload.clone(),
                    };
                    let sent = topics::publish_with(
                        req.broker.as_deref(),
                        &req.topic,
                        payload.as_bytes(),
                        &options,
                    );
                    if let Err(e) = sent {
                        return outcome(i, Some(e));
                    }
                }
                outcome(count, None)
            }
            "received" => {
                let req: Since = msg.json()?;
                let messages: Vec<&Value> = self.received.iter().skip(req.since).collect();
                Reply::json(&json!({ "count": self.received.len(), "messages": messages }))
                    .map(Some)
            }
            "count" => Reply::json(&json!({ "count": self.count })).map(Some),
            "sleep" => {
                let req = msg.json::<Value>()?;
                let ms = req["ms"].as_u64().unwrap_or(0);
                if let Some(topic) = req["announce"].as_str() {
                    topics::publish(topic, b"busy")?;
                }
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Reply::json(&json!({ "slept_ms": ms })).map(Some)
            }
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(TopicProbe);
