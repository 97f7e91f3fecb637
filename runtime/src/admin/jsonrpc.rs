//! JSON-RPC 2.0 envelopes as typed structs: what `POST /rpc` answers, and what `busbar call`
//! sends and reads back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version, always `"2.0"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V2;

impl Serialize for V2 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for V2 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = std::borrow::Cow::<str>::deserialize(d)?;
        if v == "2.0" {
            Ok(V2)
        } else {
            Err(serde::de::Error::custom(format!(
                "`jsonrpc` must be \"2.0\", not \"{v}\""
            )))
        }
    }
}

/// A request: `method` is `SERVICE/ACTION`; without `id` it is a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestObject {
    /// `"2.0"`.
    pub jsonrpc: V2,
    /// The caller's id, echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// `SERVICE/ACTION`.
    pub method: String,
    /// The payload (an object or an array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The JSON-RPC code (`-32700`, `-32600`..`-32602`, `-32000`..`-32006`).
    pub code: i64,
    /// A sentence naming the service, action or limit at fault.
    pub message: String,
    /// Details: the bus error code, the service and the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A response: the request's id and its result or error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `"2.0"`.
    pub jsonrpc: V2,
    /// The request's id (`null` when it could not be read).
    pub id: Value,
    /// The result or the error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A response's result or error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The service's reply as JSON.
    Result(Value),
    /// Why there is no result.
    Error(ErrorObject),
}

impl ResponseObject {
    /// A result for request `id`.
    pub fn result(id: Value, result: Value) -> Self {
        Self {
            jsonrpc: V2,
            id,
            outcome: Outcome::Result(result),
        }
    }

    /// An error for request `id`.
    pub fn error(id: Value, code: i64, message: impl Into<String>, data: Option<Value>) -> Self {
        Self {
            jsonrpc: V2,
            id,
            outcome: Outcome::Error(ErrorObject {
                code,
                message: message.into(),
                data,
            }),
        }
    }

    /// The error, when it is one.
    pub fn error_object(&self) -> Option<&ErrorObject> {
        match &self.outcome {
            Outcome::Error(e) => Some(e),
            Outcome::Result(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_read_and_write_the_wire_shape() {
        let ok = ResponseObject::result(json!(7), json!({"t": 1}));
        let wire = json!({"jsonrpc": "2.0", "id": 7, "result": {"t": 1}});
        assert_eq!(serde_json::to_value(&ok).unwrap(), wire);
        assert_eq!(serde_json::from_value::<ResponseObject>(wire).unwrap(), ok);
        let null = ResponseObject::result(json!(1), Value::Null);
        let back: ResponseObject =
            serde_json::from_value(serde_json::to_value(&null).unwrap()).unwrap();
        assert_eq!(back, null);
        let err = ResponseObject::error(Value::Null, -32600, "bad", None);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "bad"}})
        );
        let req = RequestObject {
            jsonrpc: V2,
            id: Some(json!(1)),
            method: "echo/ping".into(),
            params: None,
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "echo/ping"})
        );
        assert!(serde_json::from_value::<V2>(json!("1.0")).is_err());
    }
}
