//! The orchestrator's routing: one `Bus::send` entry point for every producer (services, Com,
//! the node itself), a routing table read without locks, and a bounded mailbox per service.
//!
//! Routing runs on the sender's task against a snapshot of the table (`arc-swap`): there is
//! no central router task to become a bottleneck, and a full mailbox back-pressures only the
//! services that send to it (see [`OnFull`]), never the rest of the node.

mod delivery;
mod failure;
mod route;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

pub use delivery::{Delivery, ReplyTo, empty_reply};
pub use route::{OnFull, Route, RouteKind};

use crate::message::{BROADCAST, BusError, ErrorCode, FABRIC, IdGen, Message, Remote, Reply};
use crate::observe::{Tap, Traffic};

/// Largest payload the bus accepts unless configured otherwise (Azure IoT Hub's D2C limit).
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

/// Longest wait for the fabric to take a message for another node (longer than the fabric
/// waits for its broker).
const REMOTE_ACCEPT: Duration = Duration::from_secs(30);

/// A cheap, cloneable handle on the node's message bus.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    routes: ArcSwap<HashMap<Arc<str>, Route>>,
    ids: IdGen,
    max_payload: usize,
    traffic: Tap<Arc<Traffic>>,
}

impl Bus {
    /// An empty bus that refuses payloads larger than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                routes: ArcSwap::from_pointee(HashMap::new()),
                ids: IdGen::new(),
                max_payload,
                traffic: Tap::new(4096),
            }),
        }
    }

    /// Every message processed or refused, for whoever watches (the monitor).
    pub fn traffic(&self) -> &Tap<Arc<Traffic>> {
        &self.inner.traffic
    }

    /// The call round-trip histogram of every service on the bus, by name.
    pub fn call_latencies(&self) -> Vec<(String, Histogram)> {
        let mut all: Vec<_> = self
            .inner
            .routes
            .load()
            .iter()
            .map(|(n, r)| (n.to_string(), r.calls.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Finishes a delivery `receiver` handled or refused, the one way every receiver does:
    /// reports it to the traffic watchers, hands the result to a caller waiting for it, and
    /// tells a sending service of a failure nobody waits for (an `$error` message).
    pub fn finish(
        &self,
        receiver: &str,
        d: Delivery,
        took: Duration,
        result: Result<Option<Reply>, BusError>,
    ) {
        self.processed(&d.msg, d.is_call(), took, result.as_ref().map(|_| ()));
        let msg = d.msg.clone();
        if let Some(Err(e)) = d.answer(result) {
            self.report_failure(&msg, receiver, &e);
        }
    }

    /// Reports a message its destination processed (or refused to) to the traffic watchers.
    fn processed(
        &self,
        msg: &Message,
        call: bool,
        latency: Duration,
        result: Result<(), &BusError>,
    ) {
        self.inner
            .traffic
            .emit(|| Arc::new(Traffic::new(msg, call, Some(latency), result)));
    }

    /// Reports a message the bus refused to the traffic watchers.
    fn refused(&self, msg: &Message, call: bool, e: &BusError) {
        self.inner
            .traffic
            .emit(|| Arc::new(Traffic::new(msg, call, None, Err(e))));
    }

    /// A fresh message id.
    pub fn next_id(&self) -> String {
        self.inner.ids.next()
    }

    /// Adds `name` to the routing table. Fails if the name is taken.
    pub fn register(&self, name: &str, route: Route) -> Result<(), BusError> {
        let mut taken = false;
        self.inner.routes.rcu(|routes| {
            taken = routes.contains_key(name);
            let mut next = HashMap::clone(routes);
            if !taken {
                next.insert(Arc::from(name), route.clone());
            }
            next
        });
        if taken {
            return Err(BusError::new(
                ErrorCode::Other,
                format!("a service named `{name}` is already on the bus"),
            ));
        }
        Ok(())
    }

    /// Puts `route` in the table under `name`, replacing the route there (a new version of
    /// a service takes over its name: new messages go to its mailbox).
    pub fn replace(&self, name: &str, route: Route) {
        self.inner.routes.rcu(|routes| {
            let mut next = HashMap::clone(routes);
            next.insert(Arc::from(name), route.clone());
            next
        });
    }

    /// Removes `name` from the routing table; later sends to it fail with `unknown-destination`.
    pub fn unregister(&self, name: &str) {
        self.inner.routes.rcu(|routes| {
            let mut next = HashMap::clone(routes);
            next.remove(name);
            next
        });
    }

    /// Whether `name` is on the bus.
    pub fn knows(&self, name: &str) -> bool {
        self.inner.routes.load().contains_key(name)
    }

    /// Names of the wasm services on the bus, sorted.
    pub fn custom_services(&self) -> Vec<String> {
        let routes = self.inner.routes.load();
        let mut names: Vec<String> = routes
            .iter()
            .filter(|(_, r)| r.kind == RouteKind::Custom)
            .map(|(n, _)| n.to_string())
            .collect();
        names.sort();
        names
    }

    fn route(&self, destination: &str) -> Result<Route, BusError> {
        let routes = self.inner.routes.load();
        if busbar_base::address::is_remote(destination) {
            // `service@node`: the fabric carries it, if this node is on one.
            return routes.get(FABRIC).cloned().ok_or_else(|| {
                BusError::new(
                    ErrorCode::UnknownDestination,
                    format!(
                        "`{destination}` is a service on another node, and this node is on no \
                         fabric ([fabric] in the node config)"
                    ),
                )
            });
        }
        if let Some(route) = routes.get(destination) {
            return Ok(route.clone());
        }
        Err(BusError::new(
            ErrorCode::UnknownDestination,
            format!(
                "no service named `{destination}` on this node (running: {})",
                self.custom_services().join(", ")
            ),
        ))
    }

    fn check_size(&self, msg: &Message) -> Result<(), BusError> {
        if msg.payload.len() > self.inner.max_payload {
            return Err(BusError::new(
                ErrorCode::TooLarge,
                format!(
                    "payload of {} bytes for `{}` action `{}` exceeds the node's limit of {} bytes",
                    msg.payload.len(),
                    msg.destination,
                    msg.action,
                    self.inner.max_payload
                ),
            ));
        }
        Ok(())
    }

    /// Sends `msg` without waiting for it to be processed; `*` reaches every wasm service but
    /// the sender. Returns the message id once the message is in the receiver's mailbox.
    pub async fn send(&self, msg: Message) -> Result<String, BusError> {
        let id = msg.id.clone();
        if busbar_base::address::is_remote(&msg.destination) {
            // Accepted once the fabric has it: it answers once it has kept it.
            let mut msg = msg;
            Remote::Send.mark(&mut msg);
            return self.send_for_outcome(msg, REMOTE_ACCEPT).await.map(|()| id);
        }
        let route = match self.check_size(&msg).and_then(|()| {
            if msg.destination == BROADCAST {
                Ok(None)
            } else {
                self.route(&msg.destination).map(Some)
            }
        }) {
            Ok(Some(route)) => route,
            Ok(None) => {
                self.broadcast(Arc::new(msg)).await;
                return Ok(id);
            }
            Err(e) => {
                self.refused(&msg, false, &e);
                return Err(e);
            }
        };
        let msg = Arc::new(msg);
        if let Err(e) = route
            .deliver(&msg.destination, Delivery::oneway(msg.clone()))
            .await
        {
            self.refused(&msg, false, &e);
            return Err(e);
        }
        Ok(id)
    }

    async fn broadcast(&self, msg: Arc<Message>) {
        let targets: Vec<(Arc<str>, Route)> = self
            .inner
            .routes
            .load()
            .iter()
            .filter(|(name, r)| r.kind == RouteKind::Custom && &***name != msg.source.as_str())
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for (name, route) in targets {
            if let Err(e) = route.deliver(&name, Delivery::oneway(msg.clone())).await {
                tracing::warn!(to = %name, action = %msg.action, error = %e, "broadcast not delivered");
                self.refused(&msg, false, &e);
                self.report_failure(&msg, &name, &e);
            }
        }
    }

    /// Sends `msg` (one destination) and waits up to `timeout` for its outcome: processed,
    /// or why not. Its receiver sees a send, not a call.
    pub async fn send_for_outcome(&self, msg: Message, timeout: Duration) -> Result<(), BusError> {
        let route = match self
            .check_size(&msg)
            .and_then(|()| self.route(&msg.destination))
        {
            Ok(route) => route,
            Err(e) => {
                self.refused(&msg, false, &e);
                return Err(e);
            }
        };
        let (tx, rx) = oneshot::channel();
        self.exchange(
            route,
            msg,
            ReplyTo::Outcome(tx),
            rx,
            timeout,
            |dest, action, ms| format!("`{dest}` did not finish `{action}` within {ms} ms"),
        )
        .await
    }

    /// Delivers `msg` to `route` with `reply` and waits up to `timeout` for what comes back
    /// on `rx`; `late` words the `timeout` error from the destination, action and ms.
    async fn exchange<T>(
        &self,
        route: Route,
        msg: Message,
        reply: ReplyTo,
        rx: oneshot::Receiver<Result<T, BusError>>,
        timeout: Duration,
        late: fn(&str, &str, u128) -> String,
    ) -> Result<T, BusError> {
        let call = matches!(reply, ReplyTo::Caller(_));
        let msg = Arc::new(msg);
        let (dest, action) = (msg.destination.as_str(), msg.action.as_str());
        let d = Delivery {
            msg: msg.clone(),
            reply,
        };
        let exchange = async {
            if let Err(e) = route.deliver(dest, d).await {
                self.refused(&msg, call, &e);
                return Err(e);
            }
            rx.await.unwrap_or_else(|_| {
                Err(BusError::new(
                    ErrorCode::Unavailable,
                    format!("`{dest}` stopped before it finished `{action}`"),
                ))
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(BusError::new(
                    ErrorCode::Timeout,
                    late(dest, action, timeout.as_millis()),
                ))
            })
    }

    /// Sends `msg` and waits up to `timeout` for the receiver's reply.
    pub async fn call(&self, mut msg: Message, timeout: Duration) -> Result<Reply, BusError> {
        if busbar_base::address::is_remote(&msg.destination) && !Remote::marked(&msg) {
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            Remote::Call { timeout_ms }.mark(&mut msg);
        }
        let route = match self.check_size(&msg).and_then(|()| {
            if msg.destination == BROADCAST {
                return Err(BusError::new(
                    ErrorCode::UnknownDestination,
                    "a call needs one destination, not `*`",
                ));
            }
            self.route(&msg.destination)
        }) {
            Ok(route) => route,
            Err(e) => {
                self.refused(&msg, true, &e);
                return Err(e);
            }
        };
        let began = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        let result = self
            .exchange(
                route.clone(),
                msg,
                ReplyTo::Caller(tx),
                rx,
                timeout,
                |dest, action, ms| format!("no reply from `{dest}` to `{action}` within {ms} ms"),
            )
            .await;
        route.calls.observe(began.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests;
