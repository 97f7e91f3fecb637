//! What the node says about one service it runs: its code, properties, limits and grants, and
//! for a new version the one it replaces.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Handover, RestartPolicy};
use crate::component::ComponentSource;

/// Everything needed to run one service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name on the bus.
    pub name: Arc<str>,
    /// Its component (and precompiled artifacts).
    pub source: ComponentSource,
    /// Configuration properties, rendered as strings.
    pub properties: Arc<BTreeMap<String, String>>,
    /// Maximum linear memory in bytes.
    pub memory_bytes: usize,
    /// Store limits beyond memory, the fuel per call and the submit quota.
    pub sandbox: crate::host::Sandbox,
    /// Deadline of each export call.
    pub deadline: Duration,
    /// How long queued messages may still be processed at shutdown.
    pub drain: Duration,
    /// Restart policy after faults.
    pub restart: RestartPolicy,
    /// Its capabilities.
    pub granted: Arc<crate::grants::Granted>,
    /// MQTT subscriptions made before `start`: broker connection and absolute filter.
    pub subscribe: Vec<(String, busbar_base::topic::TopicFilter)>,
    /// The group it is shared in across the fabric.
    pub shared: Option<busbar_base::address::Place>,
    /// Set when a new version replaces this one: the old one then finishes its whole queue
    /// (no drain deadline), hands its state over and whatever it could not process to the
    /// new mailbox.
    pub successor: Arc<std::sync::OnceLock<Successor>>,
    /// When this version replaces another: what the other hands over.
    pub handover: Option<Arc<Handover>>,
    /// When this version replaces another: how to run that one again should this one fail to
    /// load, fail to start, or fault repeatedly within [`PROBATION`].
    pub fallback: Option<Box<ServiceSpec>>,
}

/// How long a new version that replaced a running one is watched: a second fault within it
/// rolls the service back (a failed load or start does at once).
pub const PROBATION: Duration = Duration::from_secs(10);

/// Where a replaced version leaves what the new one takes over.
#[derive(Debug, Clone)]
pub struct Successor {
    /// The old version's state, unprocessed deliveries and the moment it stopped
    /// processing.
    pub handover: Arc<Handover>,
}

impl ServiceSpec {
    /// Instantiates `component` in the sandbox this spec gives (memory, tables, instances,
    /// grants), with a bus of its own, and drops it without calling `start`: a component
    /// that would fault on instantiation with these limits is refused here, naming the limit.
    pub async fn trial(
        &self,
        component: &crate::component::LoadedComponent,
    ) -> Result<(), super::Fault> {
        let (mailbox, _rx) = tokio::sync::mpsc::channel(1);
        let ctx = crate::host::HostContext {
            service: self.name.clone(),
            bus: crate::bus::Bus::new(0),
            mailbox,
            properties: self.properties.clone(),
            counters: Arc::default(),
            memory_bytes: self.memory_bytes,
            sandbox: self.sandbox.clone(),
            granted: self.granted.clone(),
        };
        super::Instance::new(component, ctx, self.deadline)
            .await
            .map(drop)
    }
}
