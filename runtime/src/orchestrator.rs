//! The `orchestrator` internal service and the table of running services it reports on.
//!
//! Services (and later the admin API) ask the orchestrator about the node over the bus:
//!
//! | action     | reply                                                             |
//! |------------|-------------------------------------------------------------------|
//! | `status`   | JSON array: one object per service (name, state, restarts, last fault, counters) |
//! | `services` | JSON array of the custom services' names                          |
//! | `ping`     | `pong`                                                            |
//! | `dead-letters` | JSON array of the dead letters, oldest first; payload `{"service": "x"}` keeps one service's |
//! | `start`, `stop`, `restart` | payload `{"service": "x"}`: starts, stops (until started again) or restarts one service of the manifest; answers what changed |
//! | `desired-state` | payload: the hub's desired state (JSON object); hands it to every service's `state-update`; `msb-state.enabled` starts or stops every custom service |
//!
//! `dead-letters` and the control actions are privileged: the node, the admin API, Com and
//! services granted `privileged`. Any other action is answered with `unknown-action`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Delivery};
use crate::dead_letter::DeadLetters;
use crate::internal::Handled;
use crate::message::{BusError, ErrorCode, Reply};
use crate::service::{CounterSnapshot, ServiceCounters, Status};

/// The orchestrator's name on the bus.
pub const ORCHESTRATOR: &str = "orchestrator";

/// The node's control actions: they change what runs, so the orchestrator hands them to the
/// node (privileged senders only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    /// `start` one service (`{"service": "name"}`) stopped by `stop`.
    Start,
    /// `stop` one service until started again.
    Stop,
    /// `restart` one service.
    Restart,
    /// `desired-state`: the hub's desired properties as JSON, for every service.
    DesiredState,
}

impl ControlAction {
    /// The control action named `action`, if it is one.
    pub fn parse(action: &str) -> Option<Self> {
        match action {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "restart" => Some(Self::Restart),
            "desired-state" => Some(Self::DesiredState),
            _ => None,
        }
    }
}

/// What the node keeps of one spawned service: its status and counters, both written by the
/// service's own task.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    /// Follows the service's lifecycle.
    pub status: watch::Receiver<Status>,
    /// The service's counters.
    pub counters: Arc<ServiceCounters>,
    /// Whether its grants allow control actions.
    pub privileged: bool,
}

/// One service as the node reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceReport {
    /// The service's name.
    pub name: String,
    /// State, restarts, last fault.
    #[serde(flatten)]
    pub status: Status,
    /// Counters at the time of the report.
    pub counters: CounterSnapshot,
}

/// The services of the node by name. Written when services are added or removed, read by
/// reports; never touched on the message path.
#[derive(Debug, Default)]
pub struct ServiceTable {
    services: RwLock<BTreeMap<String, ServiceHandle>>,
}

impl ServiceTable {
    /// Adds (or replaces) a service.
    pub fn insert(&self, name: &str, handle: ServiceHandle) {
        self.write().insert(name.to_owned(), handle);
    }

    /// Removes a service.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// The handle of one service.
    pub fn get(&self, name: &str) -> Option<ServiceHandle> {
        self.read().get(name).cloned()
    }

    /// Names of all services, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many services the table holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A report of every service, sorted by name.
    pub fn report(&self) -> Vec<ServiceReport> {
        self.read()
            .iter()
            .map(|(name, h)| ServiceReport {
                name: name.clone(),
                status: h.status.borrow().clone(),
                counters: h.counters.snapshot(),
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ServiceHandle>> {
        busbar_base::sync::read(&self.services)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ServiceHandle>> {
        busbar_base::sync::write(&self.services)
    }
}

/// Registers `orchestrator` on the bus and starts it.
pub fn spawn(
    bus: &Bus,
    dead: Arc<DeadLetters>,
    table: Arc<ServiceTable>,
    control: mpsc::Sender<Delivery>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    crate::internal::spawn(ORCHESTRATOR, 64, bus, tracker, cancel, move |msg| {
        let control_action = ControlAction::parse(&msg.action).is_some();
        if (control_action || msg.action == "dead-letters")
            && let Err(e) = check_privileged(&table, msg)
        {
            return Handled::Done(Err(e));
        }
        if control_action {
            return Handled::Forward(control.clone());
        }
        if msg.action == "dead-letters" {
            return dead_letters(&dead, msg).map(Some).into();
        }
        answer(&table, &msg.action).map(Some).into()
    })
}

/// Control actions are for the node itself, the admin API and privileged services.
fn check_privileged(table: &ServiceTable, msg: &crate::message::Message) -> Result<(), BusError> {
    match table.get(&msg.source) {
        Some(sender) if !sender.privileged => Err(BusError::new(
            ErrorCode::NotPermitted,
            format!(
                "`{}` is not privileged: `{}` is a control action (grant it with \
                 grants.privileged = true)",
                msg.source, msg.action
            ),
        )),
        _ => Ok(()),
    }
}

fn dead_letters(dead: &DeadLetters, msg: &crate::message::Message) -> Result<Reply, BusError> {
    #[derive(serde::Deserialize)]
    struct Filter {
        service: Option<String>,
    }
    let filter: Filter = if msg.payload.is_empty() {
        Filter { service: None }
    } else {
        serde_json::from_slice(&msg.payload).map_err(|e| {
            BusError::new(
                ErrorCode::BadPayload,
                format!("`dead-letters` takes {{\"service\": \"name\"}} or nothing: {e}"),
            )
        })?
    };
    let list = dead.list(filter.service.as_deref());
    Ok(Reply {
        content_type: "application/json".into(),
        payload: serde_json::Value::Array(list).to_string().into_bytes(),
    })
}

fn answer(table: &ServiceTable, action: &str) -> Result<Reply, BusError> {
    let json = |v: serde_json::Value| Reply {
        content_type: "application/json".into(),
        payload: v.to_string().into_bytes(),
    };
    match action {
        "status" => Ok(json(
            serde_json::to_value(table.report()).unwrap_or_default(),
        )),
        "services" => Ok(json(
            serde_json::to_value(table.names()).unwrap_or_default(),
        )),
        "ping" => Ok(Reply {
            content_type: "text/plain".into(),
            payload: b"pong".to_vec(),
        }),
        other => Err(BusError::new(
            ErrorCode::UnknownAction,
            format!(
                "`{ORCHESTRATOR}` has no action `{other}` (it knows status, services, ping, dead-letters, start, stop, restart, desired-state)"
            ),
        )),
    }
}
