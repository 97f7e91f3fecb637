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
    /// Services it may address with `submit-action` and `call`: names on this node, `*` for
    /// any of them (and broadcast); on other nodes `svc@node`, `svc@group`, `svc@*`, `*@node`
    /// or `*@*` (`*` alone does not reach across gateways).
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

/// Checks `grants.destinations`: how many, and that each is a service name, `*` or an
/// address pattern.
pub fn check_destinations(list: &[String]) -> Result<(), String> {
    if list.len() > MAX_TOPIC_ENTRIES {
        return Err(format!(
            "grants.destinations: {} entries, at most {MAX_TOPIC_ENTRIES}",
            list.len()
        ));
    }
    for (i, d) in list.iter().enumerate() {
        crate::address::check_destination(d)
            .map_err(|e| format!("grants.destinations[{i}]: {e}"))?;
    }
    Ok(())
}

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
            if !grants.brokers.is_empty() && !grants.brokers.contains(b) {
                return Err(format!(
                    "subscribe[{i}].broker: `{b}` is not in grants.topics.brokers"
                ));
            }
        }
        covered(grants, &s.filter).map_err(|e| format!("subscribe[{i}] `{}`: {e}", s.filter))?;
    }
    Ok(())
}

/// Whether the grants can cover a declared filter on any node. Relative and absolute filters
/// compare only with their own kind (a relative one lands under a base topic only a node
/// knows), so this refuses only what no node would allow.
fn covered(grants: &TopicGrants, filter: &crate::topic::TopicFilter) -> Result<(), String> {
    let absolute = |f: &crate::topic::TopicFilter| f.pattern().starts_with('/');
    if grants.subscribe.is_empty() {
        return Err("grants.topics.subscribe is empty, so no node allows it".into());
    }
    let (same, other): (Vec<_>, Vec<_>) = grants
        .subscribe
        .iter()
        .partition(|g| absolute(g) == absolute(filter));
    if other.is_empty() && !same.iter().any(|g| g.covers(filter)) {
        return Err("no filter of grants.topics.subscribe covers it".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_grants_and_subscriptions_are_typed_bounded_and_left_out_when_empty() {
        let g: Grants = toml::from_str(
            "topics = { publish = [\"out/#\"], subscribe = [\"/zigbee2mqtt/+\"], brokers = [\"field\"] }\n",
        )
        .unwrap();
        assert_eq!(g.topics.subscribe[0].as_str(), "/zigbee2mqtt/+");
        check_topics(&g.topics, &[]).unwrap();
        // Empty topic grants do not change the encoding (signatures made before them hold).
        let plain = serde_json::to_string(&Grants::default()).unwrap();
        assert!(!plain.contains("topics"), "{plain}");
        let e = toml::from_str::<Grants>("topics = { subscribe = [\"a/#/b\"] }\n").unwrap_err();
        assert!(e.to_string().contains("last level"), "{e}");
        let many = TopicGrants {
            publish: vec![crate::topic::TopicFilter::parse("a").unwrap(); MAX_TOPIC_ENTRIES + 1],
            ..TopicGrants::default()
        };
        let e = check_topics(&many, &[]).unwrap_err();
        assert!(
            e.starts_with("grants.topics.publish: 257 items, at most 256"),
            "{e}"
        );
        let bad = TopicGrants {
            brokers: vec!["Field!".into()],
            ..TopicGrants::default()
        };
        let e = check_topics(&bad, &[]).unwrap_err();
        assert!(
            e.starts_with("grants.topics.brokers[0]: `Field!` is not a broker name"),
            "{e}"
        );
        let subscribe = |f: &str, b: Option<&str>| Subscription {
            filter: crate::topic::TopicFilter::parse(f).unwrap(),
            broker: b.map(str::to_owned),
        };
        check_topics(&g.topics, &[subscribe("/zigbee2mqtt/+", Some("field"))]).unwrap();
        let e = check_topics(&g.topics, &[subscribe("/other/#", None)]).unwrap_err();
        assert!(
            e.contains("no filter of grants.topics.subscribe covers it"),
            "{e}"
        );
        let e = check_topics(&g.topics, &[subscribe("/zigbee2mqtt/+", Some("cloud"))]).unwrap_err();
        assert!(e.contains("is not in grants.topics.brokers"), "{e}");
        let e = check_topics(&TopicGrants::default(), &[subscribe("x", None)]).unwrap_err();
        assert!(e.contains("grants.topics.subscribe is empty"), "{e}");
        let sub: Subscription =
            serde_json::from_str(r#"{"filter": "$share/g/jobs/+", "broker": "field"}"#).unwrap();
        assert_eq!(sub.filter.share_group(), Some("g"));
        let e = serde_json::from_str::<Subscription>(r#"{"filter": "a", "qos": 2}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `qos`"), "{e}");
    }
}
