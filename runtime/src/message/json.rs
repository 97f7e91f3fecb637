//! Messages and replies as JSON, one rule for every place that shows them (the JSON-lines
//! Com, D2C bodies, dead letters, MQTT method answers, the admin API): a payload whose
//! content type is JSON (`application/json` or `+json`) and parses is embedded as JSON,
//! UTF-8 text is a string, anything else is base64 under `payload_base64`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Message, Reply};

/// A payload as JSON: `("payload", value)`, or `("payload_base64", text)` for bytes.
fn payload(content_type: &str, bytes: &[u8]) -> (&'static str, Value) {
    if names_json(content_type)
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
    {
        return ("payload", v);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => ("payload", json!(text)),
        Err(_) => (
            "payload_base64",
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// Whether a content type is JSON: `application/json` or a `+json` type, parameters aside.
fn names_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// The JSON form of a message: id, source, content type, correlation id and headers when
/// set, the time it was shown (`ts_ms`) and its payload.
pub fn message_json(msg: &Message) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(msg.id));
    o.insert("source".into(), json!(msg.source));
    o.insert("content_type".into(), json!(msg.content_type));
    if let Some(c) = &msg.correlation_id {
        o.insert("correlation_id".into(), json!(c));
    }
    if !msg.headers.is_empty() {
        let headers: Map<String, Value> = msg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o.insert("headers".into(), Value::Object(headers));
    }
    o.insert("ts_ms".into(), json!(busbar_base::time::unix_ms()));
    let (key, value) = payload(&msg.content_type, &msg.payload);
    o.insert(key.into(), value);
    Value::Object(o)
}

/// The JSON form of a reply: `null` when empty, its payload as JSON or text, or
/// `{"content_type", "payload_base64"}` for bytes.
pub fn reply_json(reply: &Reply) -> Value {
    if reply.payload.is_empty() {
        return Value::Null;
    }
    match payload(&reply.content_type, &reply.payload) {
        ("payload", v) => v,
        (key, v) => json!({ "content_type": reply.content_type, key: v }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::new_message;

    #[test]
    fn json_payload_is_embedded_text_is_a_string_binary_is_base64() {
        let mut m = new_message(
            "1".into(),
            "s",
            "com",
            "a",
            "application/json",
            br#"{"t":1}"#.to_vec(),
        );
        m.headers.push(("kind".into(), "alert".into()));
        let v = message_json(&m);
        assert_eq!(v["payload"]["t"], 1);
        assert_eq!(v["headers"]["kind"], "alert");
        assert_eq!(v["source"], "s");
        m.content_type = "text/plain".into();
        assert_eq!(message_json(&m)["payload"], r#"{"t":1}"#);
        m.payload = vec![0xff, 0x00];
        assert_eq!(message_json(&m)["payload_base64"], "/wA=");
    }

    #[test]
    fn replies_look_like_message_payloads() {
        let reply = |content_type: &str, payload: &[u8]| Reply {
            content_type: content_type.into(),
            payload: payload.to_vec(),
        };
        assert_eq!(reply_json(&reply("", b"")), Value::Null);
        assert_eq!(reply_json(&reply("application/json", b"[1]")), json!([1]));
        assert_eq!(reply_json(&reply("text/plain", b"[1]")), json!("[1]"));
        assert_eq!(
            reply_json(&reply("application/geo+json; charset=utf-8", b"[1]")),
            json!([1])
        );
        assert_eq!(
            reply_json(&reply("application/x-ndjson", b"[1]")),
            json!("[1]")
        );
        assert_eq!(
            reply_json(&reply("application/octet-stream", &[0xff])),
            json!({ "content_type": "application/octet-stream", "payload_base64": "/w==" })
        );
    }
}
