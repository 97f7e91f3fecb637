//! Incoming messages and the replies to them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::busbar::service::types::{Message as RawMessage, Reply as RawReply};
use crate::error::Error;

/// The content type of JSON payloads.
pub(crate) const JSON: &str = "application/json";
/// The content type of text payloads.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// One message handed to [`Service::process`](crate::Service::process).
#[derive(Debug, Clone)]
pub struct Message(RawMessage);

impl Message {
    /// Unique id the node gave the message.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Name of the sender: a service, or `com` / `busbar` for the node itself.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Name of the service the message is addressed to (`*` for a broadcast).
    pub fn destination(&self) -> &str {
        &self.0.destination
    }

    /// What the sender asks for.
    pub fn action(&self) -> &str {
        &self.0.action
    }

    /// MIME type of the payload, e.g. `application/json`.
    pub fn content_type(&self) -> &str {
        &self.0.content_type
    }

    /// The body, as sent.
    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    /// The body as UTF-8 text; a `bad-payload` error if it is not.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.0.payload).map_err(|e| {
            Error::bad_payload(format!(
                "action `{}`: payload is not UTF-8 text: {e}",
                self.action()
            ))
        })
    }

    /// The body parsed as JSON into `T`; a `bad-payload` error naming the action if it does not
    /// fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.0.payload).map_err(|e| {
            Error::bad_payload(format!(
                "action `{}`: payload is not the expected JSON: {e}",
                self.action()
            ))
        })
    }

    /// The value of header `name` (exact match), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// For a publish on a subscribed MQTT topic (action `$topic`): the topic it was
    /// published to.
    pub fn topic(&self) -> Option<&str> {
        self.header("topic")
    }

    /// For a publish on a subscribed MQTT topic: the broker connection it came through.
    pub fn broker(&self) -> Option<&str> {
        self.header("broker")
    }

    /// For a publish on a subscribed MQTT topic: whether the broker kept it as the topic's
    /// last value (a subscriber gets retained values when it subscribes).
    pub fn retained(&self) -> bool {
        self.header("retain") == Some("true")
    }

    /// Id of the message this one answers or refers to.
    pub fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }
}

impl From<RawMessage> for Message {
    fn from(raw: RawMessage) -> Self {
        Message(raw)
    }
}

/// An answer: what [`Service::process`](crate::Service::process) returns to a
/// [`call`](crate::call), and what [`call_raw`](crate::call_raw) receives.
#[derive(Debug, Clone)]
pub struct Reply(RawReply);

impl Reply {
    /// A JSON reply (`application/json`) serialized from `value`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Reply, Error> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::other(format!("cannot serialize reply as JSON: {e}")))?;
        Ok(Self::bytes(JSON, payload))
    }

    /// A plain-text reply (`text/plain; charset=utf-8`).
    pub fn text(text: impl Into<String>) -> Reply {
        Self::bytes(TEXT, text.into().into_bytes())
    }

    /// A reply with any content type.
    pub fn bytes(content_type: impl Into<String>, payload: Vec<u8>) -> Reply {
        Reply(RawReply {
            content_type: content_type.into(),
            payload,
        })
    }

    /// MIME type of the payload.
    pub fn content_type(&self) -> &str {
        &self.0.content_type
    }

    /// The body.
    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    /// The body, consuming the reply.
    pub fn into_payload(self) -> Vec<u8> {
        self.0.payload
    }

    /// The body as UTF-8 text; a `bad-payload` error if it is not.
    pub fn text_payload(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.0.payload)
            .map_err(|e| Error::bad_payload(format!("reply is not UTF-8 text: {e}")))
    }

    /// The body parsed as JSON into `T`. An empty body reads as `null`, so `()` and `Option`
    /// accept a reply-less answer.
    pub fn json_payload<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let payload: &[u8] = if self.0.payload.is_empty() {
            b"null"
        } else {
            &self.0.payload
        };
        serde_json::from_slice(payload)
            .map_err(|e| Error::bad_payload(format!("reply is not the expected JSON: {e}")))
    }

    /// The WIT reply record this wraps.
    #[doc(hidden)]
    pub fn into_raw(self) -> RawReply {
        self.0
    }
}

impl From<RawReply> for Reply {
    fn from(raw: RawReply) -> Self {
        Reply(raw)
    }
}
