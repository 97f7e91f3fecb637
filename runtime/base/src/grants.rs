//! Capabilities a manifest grants a service, as it states them (default deny). The node makes
//! them concrete (`busbar::grants::Granted`).

use serde::{Deserialize, Serialize};

/// Where a service sees its data folder.
pub const GUEST_DATA_DIR: &str = "/data";

/// What the manifest grants one service. Everything is off by default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Environment variables it sees, copied from the node's environment when set there.
    pub env: Vec<String>,
    /// A folder of its own, `{data_dir}/services/{name}`, seen as `/data`.
    pub data: Option<DataAccess>,
    /// Services it may address with `submit-action` and `call`; `*` for any (and broadcast).
    pub destinations: Vec<String>,
    /// May use the control actions of the internal services (e.g. `orchestrator`
    /// `dead-letters`, which shows other services' messages).
    pub privileged: bool,
    /// Addresses it may connect and send to over TCP and UDP (`wasi:sockets`). Empty (the
    /// default): every socket call fails with "access denied". Never listening, never name
    /// lookup. Left out of the encoding when empty, so entries signed before it existed keep
    /// their signature.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<crate::outbound::OutboundRule>,
    /// MQTT topics it may publish to and subscribe to on the node's broker connections.
    /// Nothing by default; left out of the encoding when empty (old signatures hold).
    #[serde(skip_serializing_if = "TopicGrants::is_empty")]
    pub topics: TopicGrants,
}

/// `grants.topics`: MQTT filters (`+`, `#`) a service's topics must lie within. A filter
/// beginning with `/` is absolute; any other is relative to the service's base topic on the
/// broker it is used on, as the service's own topics are.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicGrants {
    /// Topics it may publish to: a topic is allowed when one of these matches it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<crate::topic::TopicFilter>,
    /// Filters it may subscribe to: a filter is allowed when one of these covers every topic
    /// it can match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<crate::topic::TopicFilter>,
    /// The broker connections these apply on (by name, `[brokers.{name}]`, `com` for the
    /// Com's); empty: all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<String>,
}

impl TopicGrants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty() && self.brokers.is_empty()
    }
}

/// Filters a manifest entry may grant or subscribe to, each list.
pub const MAX_TOPIC_ENTRIES: usize = 256;

/// Checks a broker connection's name: 1 to 64 lowercase letters, digits, `-` or `_`.
pub fn check_broker_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a broker name (1 to 64 lowercase letters, digits, `-`, `_`)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// Checks an entry's topic grants and subscriptions: how many, and the broker names. What
/// the filters mean on a node (inside the grants, a broker it has) the node checks. Errors
/// start with the field.
pub fn check_topics(grants: &TopicGrants, subscribe: &[Subscription]) -> Result<(), String> {
    for (field, n) in [
        ("grants.topics.publish", grants.publish.len()),
        ("grants.topics.subscribe", grants.subscribe.len()),
        ("grants.topics.brokers", grants.brokers.len()),
        ("subscribe", subscribe.len()),
    ] {
        if n > MAX_TOPIC_ENTRIES {
            return Err(format!("{field}: {n} items, at most {MAX_TOPIC_ENTRIES}"));
        }
    }
    for (i, b) in grants.brokers.iter().enumerate() {
        check_broker_name(b).map_err(|e| format!("grants.topics.brokers[{i}]: {e}"))?;
    }
    for (i, s) in subscribe.iter().enumerate() {
        if let Some(b) = &s.broker {
            check_broker_name(b).map_err(|e| format!("subscribe[{i}].broker: {e}"))?;
        }
    }
    Ok(())
}

/// A subscription a manifest entry declares: made before the service's `start`, as if the
/// service had called `subscribe`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The filter, as `subscribe` takes it (relative unless it begins with `/`).
    pub filter: crate::topic::TopicFilter,
    /// The broker connection (none: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
}

/// How a service may use its data folder.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataAccess {
    /// Read files, list folders.
    ReadOnly,
    /// Also create, write and delete.
    ReadWrite,
}
