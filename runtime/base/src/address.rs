//! Addresses across gateways: `service@node` reaches a service on another node of the
//! fabric, `service@group` one of the instances shared in a group (`shared = "workers"`).
//! Node ids and group names share one namespace on the fabric (each is a topic level), so a
//! sender need not know which of the two it names.

use std::fmt;

use crate::names::{check_id, check_name};

/// A node id or a group name: 1 to 64 letters, digits, `.`, `_` or `-` (a valid MQTT topic
/// level with no wildcard), checked where it enters.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Place(String);

impl Place {
    /// `text`, if it is a valid node id or group name.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_id(text)?;
        Ok(Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Place {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        check_id(&text)?;
        Ok(Self(text))
    }
}

impl From<Place> for String {
    fn from(p: Place) -> String {
        p.0
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `service@place`: a service on another node, or shared in a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The service's name there.
    pub service: String,
    /// The node or the group.
    pub place: Place,
}

impl Address {
    /// `text` as the address of a service another node can reach; an error says what is
    /// wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_as(text, false)
    }

    /// `text` as the address of a sender: the node's internal services send too (`admin`
    /// sends what the admin API is asked).
    pub fn parse_sender(text: &str) -> Result<Self, String> {
        Self::parse_as(text, true)
    }

    fn parse_as(text: &str, internal: bool) -> Result<Self, String> {
        let Some((service, place)) = text.split_once('@') else {
            return Err(format!("`{text}` is not `service@node` or `service@group`"));
        };
        if !(internal && crate::names::RESERVED_NAMES.contains(&service)) {
            check_name(service).map_err(|e| format!("in address `{text}`: service {e}"))?;
        }
        let place =
            Place::parse(place).map_err(|e| format!("in address `{text}`: node or group {e}"))?;
        Ok(Self {
            service: service.to_owned(),
            place,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.service, self.place)
    }
}

/// Whether `destination` names a service on another node (it holds an `@`).
pub fn is_remote(destination: &str) -> bool {
    destination.contains('@')
}

/// Whether the grant `pattern` (an entry of `grants.destinations`: `svc@node`, `svc@*`,
/// `*@node` or `*@*`) allows `address`.
pub fn grant_allows(pattern: &str, address: &Address) -> bool {
    let Some((service, place)) = pattern.split_once('@') else {
        return false;
    };
    (service == "*" || service == address.service)
        && (place == "*" || place == address.place.as_str())
}

/// Checks an entry of `grants.destinations`: a local service name, `*`, or an address
/// pattern (`svc@node`, `svc@*`, `*@node`, `*@*`).
pub fn check_destination(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((service, place)) = pattern.split_once('@') else {
        return check_local(pattern);
    };
    if service != "*" {
        check_name(service).map_err(|e| format!("`{pattern}`: service {e}"))?;
    }
    if place != "*" {
        check_id(place).map_err(|e| format!("`{pattern}`: node or group {e}"))?;
    }
    Ok(())
}

/// A local destination: a service name or one of the node's internal services.
fn check_local(name: &str) -> Result<(), String> {
    if crate::names::RESERVED_NAMES.contains(&name) {
        return Ok(());
    }
    check_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_refuse_what_is_not_one() {
        let a = Address::parse("resize@gw-2").unwrap();
        assert_eq!((a.service.as_str(), a.place.as_str()), ("resize", "gw-2"));
        assert_eq!(a.to_string(), "resize@gw-2");
        for bad in [
            "resize",
            "@gw2",
            "resize@",
            "Resize@gw2",
            "a@b@c",
            "a@b/c",
            "a@+",
            "a@#",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        assert!(is_remote("a@b") && !is_remote("a"));
        assert_eq!(Address::parse_sender("admin@gw1").unwrap().service, "admin");
        let e = Address::parse("orchestrator@gw1").unwrap_err();
        assert!(e.contains("reserved"), "{e}");
        let e = Address::parse("x@a/b").unwrap_err();
        assert!(e.contains("node or group"), "{e}");
    }

    #[test]
    fn grants_match_service_and_place() {
        let a = Address::parse("resize@gw2").unwrap();
        for (pattern, ok) in [
            ("resize@gw2", true),
            ("resize@*", true),
            ("*@gw2", true),
            ("*@*", true),
            ("resize@gw3", false),
            ("other@*", false),
            ("resize", false),
            ("*", false),
        ] {
            assert_eq!(grant_allows(pattern, &a), ok, "{pattern}");
        }
    }

    #[test]
    fn destination_grants_are_checked() {
        for ok in ["*", "echo", "com", "echo@gw2", "echo@*", "*@gw2", "*@*"] {
            check_destination(ok).unwrap();
        }
        for bad in ["Echo", "echo@g/w", "echo@", "@gw2"] {
            assert!(check_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn places_are_checked_at_deserialization() {
        let p: Place = serde_json::from_str("\"workers\"").unwrap();
        assert_eq!(p.as_str(), "workers");
        assert!(serde_json::from_str::<Place>("\"a/b\"").is_err());
        assert!(serde_json::from_str::<Place>("\"\"").is_err());
    }
}
