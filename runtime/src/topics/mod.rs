//! Services on MQTT topics: the node's broker connections (`[brokers.*]`, and the Com's
//! broker as `com`), each one task with one MQTT 5 session, a durable outbox for what
//! services publish at least once, and a trie of what they subscribed to.
//!
//! Services reach them through the internal service `topics` on the bus (the `topics`
//! imports send it a [`TopicRequest`]); it hands each request to its connection's task,
//! which answers it. Publishes arriving on subscribed filters reach services as `$topic`
//! messages.

mod broker;
pub mod config;
mod confirm;
mod inbound;
mod link;
mod requests;
mod session;
mod stats;
pub mod subscriptions;
pub mod trie;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{BrokerConfig, Brokers, COM_BROKER};
pub use stats::{BrokerStats, TopicsStats};

use crate::bus::{Bus, Delivery};
use crate::internal::Handled;
use crate::message::{BusError, ErrorCode, TOPICS, TopicRequest};

/// Requests a connection holds before `topics` answers `queue-full`.
const MAILBOX: usize = 1024;

/// Opens every connection's outbox, registers `topics` on the bus and starts the
/// connections; an error (a bad setting, an outbox that cannot be opened) stops the node
/// from starting. Each connection's task is watched: if it ends, the node goes down.
pub fn spawn(
    brokers: &Brokers,
    bus: &Bus,
    tracker: &TaskTracker,
    health: &Arc<busbar_base::supervise::Health>,
    cancel: CancellationToken,
) -> anyhow::Result<TopicsStats> {
    let mut stats = TopicsStats::new();
    if brokers.connections.is_empty() {
        return Ok(stats);
    }
    let mut prepared = Vec::new();
    for (name, config) in &brokers.connections {
        prepared.push((name.clone(), broker::prepare(name, config)?));
    }
    let mut routes: BTreeMap<String, mpsc::Sender<Delivery>> = BTreeMap::new();
    for (name, p) in prepared {
        let (tx, rx) = mpsc::channel(MAILBOX);
        routes.insert(name.clone(), tx);
        let s = Arc::new(BrokerStats::default());
        stats.insert(name.clone(), s.clone());
        // A handful of connections, fixed for the life of the process.
        let task: &'static str = Box::leak(format!("broker {name}").into_boxed_str());
        let name: Arc<str> = Arc::from(name.as_str());
        tracker.spawn(busbar_base::supervise::watch(
            health,
            task,
            cancel.clone(),
            {
                let bus = bus.clone();
                let cancel = cancel.clone();
                async move {
                    broker::run(name, p, bus, rx, s, cancel).await;
                    Ok(())
                }
            },
        ));
    }
    crate::internal::spawn(TOPICS, MAILBOX, bus, tracker, cancel, move |msg| {
        route(&routes, msg)
    })?;
    Ok(stats)
}

/// Hands a request to its connection, in order (a full one answers `queue-full`).
fn route(
    routes: &BTreeMap<String, mpsc::Sender<Delivery>>,
    msg: &crate::message::Message,
) -> Handled {
    let request = match TopicRequest::from_message(msg) {
        Ok(r) => r,
        Err(e) => return Handled::Done(Err(e)),
    };
    let name = request.broker();
    match routes.get(name) {
        Some(tx) => Handled::Forward(tx.clone()),
        None => Handled::Done(Err(BusError::new(
            ErrorCode::UnknownDestination,
            format!("this node has no broker connection `{name}`"),
        ))),
    }
}
