//! The fabric's task: one loop over its mailbox (messages for other nodes, publishes
//! arriving from the broker, services joining groups), the outcomes of the work it handed to
//! small tasks, and a tick for deadlines and resends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::config::FabricSettings;
use super::incoming::{Key, Seen};
use super::outgoing::{Call, Send};
use super::protocol::Topics;
use super::stats::FabricStats;
use crate::bus::{Bus, Delivery};
use crate::com::spool::Spool;
use crate::message::{
    ACTION_TOPIC, BusError, ErrorCode, FABRIC, FABRIC_SHARE, Message, Reply, TOPICS, TopicRequest,
};
use busbar_base::address::Place;
use busbar_base::topic::TopicName;

/// How often deadlines, resends and the outbox's sync are looked at.
const TICK: Duration = Duration::from_millis(100);
/// Longest wait for the broker connection to take a request.
pub(super) const BROKER_WAIT: Duration = Duration::from_secs(10);

/// What a small task the fabric handed work to came back with.
#[derive(Debug)]
pub(super) enum Done {
    /// The broker acknowledged (or did not) the request with message id `id`.
    Published {
        id: String,
        result: Result<(), BusError>,
    },
    /// A local service handled a request from another node.
    Processed {
        key: Key,
        reply_to: TopicName,
        send: bool,
        result: Result<Reply, BusError>,
    },
    /// A send from another node still waits for its service: say so, so its sender waits.
    Working { key: Key, reply_to: TopicName },
    /// The inbox subscription was made (or not).
    Subscribed(Result<(), BusError>),
}

pub(super) struct Fabric {
    pub(super) topics: Topics,
    pub(super) broker: String,
    pub(super) resend: Duration,
    pub(super) bus: Bus,
    pub(super) stats: Arc<FabricStats>,
    /// Calls waiting for their reply, by message id.
    pub(super) calls: HashMap<String, Call>,
    /// Sends not yet processed at the other end, by message id.
    pub(super) sends: HashMap<String, Send>,
    pub(super) outbox: Spool,
    pub(super) seen: Seen,
    /// Local services shared in a group, and the group.
    pub(super) members: BTreeMap<String, Place>,
    pub(super) done: mpsc::Sender<Done>,
    pub(super) inbound: Arc<Semaphore>,
    inbox: InboxState,
    sync_failures: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum InboxState {
    Asked,
    Made,
    Retry(Instant),
}

/// Runs the fabric until `cancel` fires.
pub(super) async fn run(
    settings: FabricSettings,
    outbox: Spool,
    bus: Bus,
    mut mailbox: mpsc::Receiver<Delivery>,
    stats: Arc<FabricStats>,
    cancel: CancellationToken,
) {
    let (done, mut outcomes) = mpsc::channel(4_096);
    let mut f = Fabric {
        topics: Topics::new(&settings.prefix, settings.node.clone()),
        broker: settings.broker.clone(),
        resend: settings.resend,
        bus,
        stats,
        calls: HashMap::new(),
        sends: HashMap::new(),
        outbox,
        seen: Seen::default(),
        members: BTreeMap::new(),
        done,
        inbound: Arc::new(Semaphore::new(settings.max_inbound)),
        inbox: InboxState::Asked,
        sync_failures: 0,
    };
    f.restore();
    f.subscribe_inbox();
    tracing::info!(node = %settings.node, broker = %settings.broker, prefix = %settings.prefix,
        waiting = f.sends.len(), "fabric ready");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(done) = outcomes.recv() => f.on_done(done),
            Some(d) = mailbox.recv() => f.on_delivery(d),
            _ = tick.tick() => f.on_tick(),
        }
    }
    f.stop();
}

impl Fabric {
    fn on_delivery(&mut self, d: Delivery) {
        if d.msg.destination != FABRIC {
            return self.outgoing(d);
        }
        if d.msg.action == ACTION_TOPIC && d.msg.source == TOPICS {
            self.arrived(&d.msg);
            return self.finish(d, Duration::ZERO, Ok(None));
        }
        if d.msg.action == FABRIC_SHARE {
            return self.share(d);
        }
        let e = BusError::new(
            ErrorCode::UnknownAction,
            format!(
                "`{FABRIC}` takes messages for other nodes (`service@node`), not action `{}`",
                d.msg.action
            ),
        );
        self.finish(d, Duration::ZERO, Err(e));
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Published { id, result } => self.published(&id, result),
            Done::Processed {
                key,
                reply_to,
                send,
                result,
            } => self.processed(key, reply_to, send, result),
            Done::Working { key, reply_to } => self.working(&key, reply_to),
            Done::Subscribed(Ok(())) => {
                tracing::info!(inbox = %self.topics.inbox(), broker = %self.broker,
                    "fabric inbox subscribed (made again on every session with the broker)");
                self.inbox = InboxState::Made;
            }
            Done::Subscribed(Err(e)) => {
                tracing::error!(error = %e, broker = %self.broker,
                    "the fabric could not subscribe to its inbox; trying again in 5 s");
                self.inbox = InboxState::Retry(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if matches!(self.inbox, InboxState::Retry(at) if at <= now) {
            self.subscribe_inbox();
        }
        self.expire_calls(now);
        self.resend_due(now);
        if self.outbox.unsynced() {
            self.sync();
        }
        self.stats.outbox.store(
            self.sends.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.stats.calls_waiting.store(
            self.calls.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Finishes a delivery of this mailbox: the answer to its sender, the traffic report.
    pub(super) fn finish(
        &self,
        d: Delivery,
        took: Duration,
        result: Result<Option<Reply>, BusError>,
    ) {
        self.bus.finish(FABRIC, d, took, result);
    }

    /// Asks the broker connection for `request`, in a task of its own; `then` turns its
    /// answer into what comes back to the loop (nothing, to only log a failure).
    pub(super) fn ask(
        &self,
        request: TopicRequest,
        then: impl FnOnce(Result<(), BusError>) -> Option<Done> + std::marker::Send + 'static,
    ) {
        let msg: Message = request.into_message(self.bus.next_id(), FABRIC);
        let (bus, done) = (self.bus.clone(), self.done.clone());
        tokio::spawn(async move {
            let result = bus.call(msg, BROKER_WAIT).await.map(drop);
            if let Some(d) = then(result) {
                let _ = done.send(d).await;
            }
        });
    }

    fn subscribe_inbox(&mut self) {
        self.inbox = InboxState::Asked;
        let request = TopicRequest::Subscribe {
            broker: self.broker.clone(),
            filter: self.topics.inbox(),
        };
        self.ask(request, |r| Some(Done::Subscribed(r)));
    }

    /// A local service joins its group (the payload names it) or leaves it (empty).
    fn share(&mut self, d: Delivery) {
        let service = d.msg.source.clone();
        let group = match std::str::from_utf8(&d.msg.payload).map(str::trim) {
            Ok("") => None,
            Ok(g) => match Place::parse(g) {
                Ok(p) => Some(p),
                Err(e) => {
                    let e = BusError::new(ErrorCode::BadPayload, format!("group {e}"));
                    return self.finish(d, Duration::ZERO, Err(e));
                }
            },
            Err(_) => {
                let e = BusError::new(ErrorCode::BadPayload, "a group name is text");
                return self.finish(d, Duration::ZERO, Err(e));
            }
        };
        let old = self.members.get(&service).cloned();
        if old == group {
            return self.finish(d, Duration::ZERO, Ok(None));
        }
        let mut requests = Vec::new();
        if let Some(g) = old {
            self.members.remove(&service);
            requests.push(TopicRequest::Unsubscribe {
                broker: self.broker.clone(),
                filter: self.topics.group_filter(&g, &service),
            });
        }
        if let Some(g) = group {
            requests.push(TopicRequest::Subscribe {
                broker: self.broker.clone(),
                filter: self.topics.group_filter(&g, &service),
            });
            tracing::info!(%service, group = %g, "service shared in its group on the fabric");
            self.members.insert(service, g);
        }
        let bus = self.bus.clone();
        let msgs: Vec<Message> = requests
            .into_iter()
            .map(|r| r.into_message(bus.next_id(), FABRIC))
            .collect();
        tokio::spawn(async move {
            let mut result = Ok(None);
            for msg in msgs {
                if let Err(e) = bus.call(msg, BROKER_WAIT).await {
                    result = Err(e);
                    break;
                }
            }
            bus.finish(FABRIC, d, Duration::ZERO, result);
        });
    }

    fn sync(&mut self) {
        match self.outbox.sync() {
            Ok(()) if self.sync_failures > 0 => {
                tracing::info!(
                    failures = self.sync_failures,
                    "fabric outbox sync works again"
                );
                self.sync_failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.sync_failures += 1;
                if self.sync_failures.is_power_of_two() {
                    tracing::error!(error = %e, failures = self.sync_failures, "fabric outbox sync failed");
                }
            }
        }
    }

    /// Stopping: calls waiting are answered `unavailable`; sends not yet processed stay in
    /// the outbox and go again at the next start.
    fn stop(&mut self) {
        for (_, c) in std::mem::take(&mut self.calls) {
            let e = BusError::new(
                ErrorCode::Unavailable,
                "the node is stopping: the call's reply will not be waited for",
            );
            self.finish(c.d, Duration::ZERO, Err(e));
        }
        for s in self.sends.values_mut() {
            if let Some(d) = s.waiting.take() {
                self.bus.finish(FABRIC, d, Duration::ZERO, Ok(None));
            }
        }
        self.sync();
        tracing::info!(
            waiting = self.sends.len(),
            "fabric stopped; messages not yet processed at the other end wait in its outbox"
        );
    }
}
