//! The node's desired state as busbar reads it.
//!
//! The desired state is a JSON object: the hub's desired properties (Azure IoT Hub: the
//! device twin's), e.g. `{"msb-state": {"enabled": true, "debug": false}, "threshold": 5}`.
//! The node hands the whole object to every service's `state-update`. What busbar itself
//! reads is `msb-state`, the part named after the microservicebus node design:
//!
//! - `enabled`: whether custom services run (`false` stops every custom service; `true`
//!   starts them again). Not given: no change, and a service reads it as `true`.
//! - `debug`: whether services' log lines are forwarded to the hub. Not given: `false`.
//!
//! The node (`busbar`) and the guest SDK (`busbar-guest`) both parse it with [`MsbState`].

use serde_json::Value;

/// The key of busbar's own part of the desired state.
pub const KEY: &str = "msb-state";

/// `msb-state` of a desired state; a field not given is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsbState {
    /// Whether custom services should run.
    pub enabled: Option<bool>,
    /// Whether services' log lines are forwarded to the hub.
    pub debug: Option<bool>,
}

impl MsbState {
    /// Reads `msb-state` out of a desired-state document. The document must be a JSON
    /// object; `msb-state`, when there, an object whose `enabled` and `debug`, when there,
    /// are booleans. Other fields of `msb-state` are left for others. The error names what
    /// is wrong.
    pub fn of(doc: &Value) -> Result<Self, String> {
        let Some(doc) = doc.as_object() else {
            return Err("the desired state must be a JSON object".into());
        };
        let Some(msb) = doc.get(KEY) else {
            return Ok(Self::default());
        };
        let Some(msb) = msb.as_object() else {
            return Err(format!("`{KEY}` must be a JSON object"));
        };
        let flag = |name: &str| match msb.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("`{KEY}.{name}` must be true or false, not {other}")),
        };
        Ok(Self {
            enabled: flag("enabled")?,
            debug: flag("debug")?,
        })
    }

    /// Reads what it can: like [`MsbState::of`], but a flag that is not a boolean (or a
    /// document that is not an object) reads as not given. For those who only follow the
    /// state (Com, services); the node refuses such a state with [`MsbState::of`]'s error.
    pub fn lenient(doc: &Value) -> Self {
        let flag = |name: &str| doc.get(KEY)?.get(name)?.as_bool();
        Self {
            enabled: flag("enabled"),
            debug: flag("debug"),
        }
    }

    /// Parses a desired-state document from JSON text, as `state-update` receives it.
    /// Flags it cannot read are not given ([`MsbState::lenient`]); only text that is not JSON
    /// is an error.
    pub fn parse(json: &str) -> Result<(Self, Value), String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        Ok((Self::lenient(&doc), doc))
    }

    /// Whether custom services should run (`true` when not given).
    pub fn enabled_or_default(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// Whether log lines are forwarded (`false` when not given).
    pub fn debug_or_default(&self) -> bool {
        self.debug.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_msb_state_and_leaves_the_rest() {
        let doc = json!({"msb-state": {"enabled": false, "debug": true, "other": 1}, "x": 2});
        let msb = MsbState::of(&doc).unwrap();
        assert_eq!((msb.enabled, msb.debug), (Some(false), Some(true)));
        let none = MsbState::of(&json!({"threshold": 5})).unwrap();
        assert_eq!(none, MsbState::default());
        assert!(none.enabled_or_default() && !none.debug_or_default());
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(
            MsbState::of(&json!([1]))
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            MsbState::of(&json!({"msb-state": 3}))
                .unwrap_err()
                .contains("`msb-state` must be a JSON object")
        );
        assert!(
            MsbState::of(&json!({"msb-state": {"enabled": "yes"}}))
                .unwrap_err()
                .contains("`msb-state.enabled` must be true or false")
        );
        assert!(MsbState::parse("{").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn followers_read_what_they_can() {
        let doc = json!({"msb-state": {"enabled": false, "debug": "yes"}});
        let msb = MsbState::lenient(&doc);
        assert_eq!((msb.enabled, msb.debug), (Some(false), None));
        assert_eq!(MsbState::lenient(&Value::Null), MsbState::default());
        let (parsed, raw) = MsbState::parse(r#"{"msb-state": {"debug": true}}"#).unwrap();
        assert_eq!(parsed.debug, Some(true));
        assert_eq!(raw["msb-state"]["debug"], true);
    }
}
