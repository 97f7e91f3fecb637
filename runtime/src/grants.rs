//! Capabilities, default deny. A service gets its own memory, its mailbox, `submit-message`
//! towards Com, its properties, timers and log; everything else is granted per service in the
//! manifest (`grants`): environment variables by name, a folder of its own under the node's
//! data dir, the services it may address, the addresses it may connect to, and the right to
//! use the control actions of the node's internal services.
//!
//! Components may import all of WASI 0.2 that wasmtime-wasi provides, sockets included (every
//! toolchain's standard library imports some; CPython imports all of `wasi:sockets`): what is
//! not granted fails when called (`access-denied`, Python's `PermissionError`), never at load.
//! A component that imports anything else is refused at load, naming the import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The interface families a component may import. Toolchains' standard libraries import the
/// WASI ones; the sandbox gives them nothing beyond the grants (no files outside the data
/// folder, no variables beyond `env`, no address outside `network`).
pub const IMPORTABLE: &[&str] = &[
    "busbar:service/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
];

pub use busbar_base::grants::{DataAccess, GUEST_DATA_DIR, Grants};
pub use busbar_base::outbound::OutboundRule;
use busbar_base::topic::{TopicFilter, TopicName, resolve as resolve_topic};

/// The grants of one service made concrete for its instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Granted {
    /// The variables and their values.
    pub env: Vec<(String, String)>,
    /// The host folder behind `/data`, and how it may be used.
    pub data: Option<(PathBuf, DataAccess)>,
    /// Who it may address.
    pub destinations: Vec<String>,
    /// Control actions allowed.
    pub privileged: bool,
    /// Addresses it may connect and send to.
    pub network: Vec<OutboundRule>,
    /// Its MQTT topics on each broker connection.
    pub topics: TopicAccess,
}

/// The base topic of every broker connection of the node, and the default one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerBases {
    /// Connection name → base topic (`{node}` filled in).
    pub bases: BTreeMap<String, String>,
    /// The connection services use when they name none.
    pub default: Option<String>,
}

/// A service's topics made concrete: on each connection it may use, its base topic and the
/// absolute filters granted there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAccess {
    /// Connection name → what the service may do on it.
    pub brokers: BTreeMap<String, BrokerAccess>,
    /// The connection used when the service names none.
    pub default: Option<String>,
    /// Every connection of the node, granted or not (for error messages).
    pub known: Vec<String>,
}

/// What one service may do on one broker connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerAccess {
    /// Its base topic here: `{base_topic}/{service}`.
    pub base: String,
    /// Absolute filters of the topics it may publish to.
    pub publish: Vec<TopicFilter>,
    /// Absolute filters covering what it may subscribe to.
    pub subscribe: Vec<TopicFilter>,
}

impl TopicAccess {
    /// Resolves `grants.topics` of service `name` against the node's connections.
    fn resolve(name: &str, grants: &Grants, brokers: &BrokerBases) -> anyhow::Result<Self> {
        let g = &grants.topics;
        for b in &g.brokers {
            anyhow::ensure!(
                brokers.bases.contains_key(b),
                "service `{name}`: grants.topics.brokers names `{b}`, which is not a broker \
                 connection of this node (it has: {})",
                names(brokers)
            );
        }
        let mut out = BTreeMap::new();
        for (broker, base_topic) in &brokers.bases {
            if !g.brokers.is_empty() && !g.brokers.contains(broker) {
                continue;
            }
            let base = resolve_topic(base_topic, name);
            let absolute = |list: &[TopicFilter], field: &str| {
                list.iter()
                    .map(|f| {
                        TopicFilter::parse(&resolve_topic(&base, f.as_str())).map_err(|e| {
                            anyhow::anyhow!(
                                "service `{name}`: grants.topics.{field} `{f}` on broker \
                                 `{broker}`: {e}"
                            )
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            let access = BrokerAccess {
                publish: absolute(&g.publish, "publish")?,
                subscribe: absolute(&g.subscribe, "subscribe")?,
                base,
            };
            out.insert(broker.clone(), access);
        }
        Ok(Self {
            brokers: out,
            default: brokers.default.clone(),
            known: brokers.bases.keys().cloned().collect(),
        })
    }

    /// The connection `broker` names (none: the default), and what the service may do there.
    pub fn on(
        &self,
        service: &str,
        broker: Option<&str>,
    ) -> Result<(&str, &BrokerAccess), TopicRefusal> {
        let name = match broker {
            Some(b) => b,
            None => self.default.as_deref().ok_or_else(|| {
                TopicRefusal::Unknown(
                    "this node has no default broker connection: name one ([brokers.*] in \
                     the node config), or set `default = true` on one"
                        .to_owned(),
                )
            })?,
        };
        if let Some((n, access)) = self.brokers.get_key_value(name) {
            return Ok((n.as_str(), access));
        }
        if self.known.iter().any(|k| k == name) {
            return Err(TopicRefusal::NotPermitted(format!(
                "`{service}` may not use broker connection `{name}`: its \
                 grants.topics.brokers leaves it out"
            )));
        }
        Err(TopicRefusal::Unknown(format!(
            "this node has no broker connection `{name}` ([brokers.{name}] in the node config)"
        )))
    }
}

impl BrokerAccess {
    /// The absolute topic `text` names, if it may publish there.
    pub fn publish_topic(&self, service: &str, text: &str) -> Result<TopicName, TopicRefusal> {
        let topic = TopicName::parse(&resolve_topic(&self.base, text))
            .map_err(|e| TopicRefusal::Invalid(e.to_string()))?;
        if topic.is_system() {
            return Err(TopicRefusal::NotPermitted(format!(
                "`{service}` may not publish to `{topic}`: topics beginning with `$` belong \
                 to the broker"
            )));
        }
        if self.publish.iter().any(|g| g.matches(&topic)) {
            return Ok(topic);
        }
        Err(TopicRefusal::NotPermitted(format!(
            "`{service}` may not publish to `{topic}`: no filter of its grants.topics.publish \
             matches it (granted here: {})",
            listed(&self.publish)
        )))
    }

    /// The absolute filter `text` names, if it may subscribe to it.
    pub fn subscribe_filter(&self, service: &str, text: &str) -> Result<TopicFilter, TopicRefusal> {
        let filter = TopicFilter::parse(&resolve_topic(&self.base, text))
            .map_err(|e| TopicRefusal::Invalid(e.to_string()))?;
        if self.subscribe.iter().any(|g| g.covers(&filter)) {
            return Ok(filter);
        }
        Err(TopicRefusal::NotPermitted(format!(
            "`{service}` may not subscribe to `{filter}`: no filter of its \
             grants.topics.subscribe covers it (granted here: {})",
            listed(&self.subscribe)
        )))
    }

    /// The absolute filter `text` names (for `unsubscribe`: no grant needed).
    pub fn filter(&self, text: &str) -> Result<TopicFilter, TopicRefusal> {
        TopicFilter::parse(&resolve_topic(&self.base, text))
            .map_err(|e| TopicRefusal::Invalid(e.to_string()))
    }
}

/// Why a topic or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRefusal {
    /// Not a valid topic or filter.
    Invalid(String),
    /// Outside the grants.
    NotPermitted(String),
    /// No such broker connection on this node.
    Unknown(String),
}

impl TopicRefusal {
    /// What is wrong.
    pub fn text(&self) -> &str {
        match self {
            TopicRefusal::Invalid(t) | TopicRefusal::NotPermitted(t) | TopicRefusal::Unknown(t) => {
                t
            }
        }
    }
}

fn names(brokers: &BrokerBases) -> String {
    if brokers.bases.is_empty() {
        return "none".into();
    }
    brokers.bases.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn listed(filters: &[TopicFilter]) -> String {
    if filters.is_empty() {
        return "nothing".into();
    }
    filters
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Granted {
    /// Resolves `grants` of service `name`: reads the variables from this process's
    /// environment, creates the data folder under `data_root` and makes its topic grants
    /// absolute on each of the node's `brokers`.
    pub fn resolve(
        name: &str,
        grants: &Grants,
        data_root: &Path,
        brokers: &BrokerBases,
    ) -> anyhow::Result<Self> {
        let topics = TopicAccess::resolve(name, grants, brokers)?;
        let env = grants
            .env
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        let data = match grants.data {
            None => None,
            Some(access) => {
                let dir = data_root.join("services").join(name);
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!(
                        "service `{name}`: cannot create its data folder {}",
                        dir.display()
                    )
                })?;
                Some((dir, access))
            }
        };
        Ok(Self {
            env,
            data,
            destinations: grants.destinations.clone(),
            privileged: grants.privileged,
            network: grants.network.clone(),
            topics,
        })
    }

    /// Whether the service may address `destination` (`*` is broadcast). A service on
    /// another node (`svc@node`) needs a grant naming it (`svc@node`, `svc@*`, `*@node`,
    /// `*@*`): `*` alone stays on this node.
    pub fn may_address(&self, destination: &str) -> bool {
        if busbar_base::address::is_remote(destination) {
            let Ok(address) = busbar_base::address::Address::parse(destination) else {
                return false;
            };
            return self
                .destinations
                .iter()
                .any(|d| busbar_base::address::grant_allows(d, &address));
        }
        self.destinations
            .iter()
            .any(|d| d == "*" || d == destination)
    }
}

/// The first import of `component` outside [`IMPORTABLE`], if any.
pub fn ungranted_import(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| !IMPORTABLE.iter().any(|p| name.starts_with(p)))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let g = Granted::resolve(
            "svc",
            &Grants::default(),
            dir.path(),
            &BrokerBases::default(),
        )
        .unwrap();
        assert_eq!(g, Granted::default());
        assert!(!g.may_address("anyone"));
        assert!(!dir.path().join("services").exists());
    }

    #[test]
    fn grants_resolve_to_values_and_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let grants: Grants = toml::from_str(
            "env = [\"PATH\", \"BUSBAR_SURELY_UNSET\"]\ndata = \"read-only\"\ndestinations = [\"a\"]\n",
        )
        .unwrap();
        let g = Granted::resolve("svc", &grants, dir.path(), &BrokerBases::default()).unwrap();
        assert_eq!(g.env.len(), 1, "unset variables are left out");
        assert_eq!(g.env[0].0, "PATH");
        let (path, access) = g.data.clone().unwrap();
        assert!(path.ends_with("services/svc") && path.is_dir());
        assert_eq!(access, DataAccess::ReadOnly);
        assert!(g.may_address("a") && !g.may_address("b") && !g.may_address("*"));
        let remote = Granted {
            destinations: vec!["*".into(), "resize@*".into(), "*@gw3".into()],
            ..Granted::default()
        };
        assert!(remote.may_address("resize@gw2") && remote.may_address("echo@gw3"));
        assert!(!remote.may_address("echo@gw2"), "`*` stays on this node");
        assert!(!remote.may_address("resize@bad/place"));
        let e = toml::from_str::<Grants>("sockets = true\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `sockets`"), "{e}");
        let e = toml::from_str::<Grants>("network = [\"plc.local:502\"]\n").unwrap_err();
        assert!(e.to_string().contains("name lookup is not granted"), "{e}");
    }
}
