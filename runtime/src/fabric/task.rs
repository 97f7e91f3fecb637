//! The fabric's task: one loop over its mailbox (messages for other nodes, publishes
//! arriving from the broker, the node opening and closing its inbox, services joining
//! groups), the outcomes of the work it handed to small tasks, a tick for deadlines and
//! resends, and the outbox's sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::FabricSettings;
use super::incoming::{Key, Seen};
use super::membership::Inbox;
use super::outgoing::{Call, Send};
use super::protocol::Topics;
use super::stats::FabricStats;
use crate::bus::{Bus, Delivery};
use crate::com::spool::Spool;
use crate::message::{
    ACTION_TOPIC, BusError, ErrorCode, FABRIC, FABRIC_INBOX, FABRIC_SHARE, Message, Reply, TOPICS,
    TopicRequest,
};
use busbar_base::address::Place;
use busbar_base::topic::TopicName;

/// How often deadlines and resends are looked at.
const TICK: Duration = Duration::from_millis(100);
/// Longest wait for the broker connection to take a request.
pub(super) const BROKER_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping fabric waits for the work it handed out.
const STOP_GRACE: Duration = Duration::from_secs(1);

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
    /// Service `service` joined `group` (none: left its group), or could not.
    Shared {
        service: String,
        group: Option<Place>,
        result: Result<(), BusError>,
    },
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
    /// The outbox could not be read back: read it again on the next tick.
    pub(super) reread: bool,
    pub(super) seen: Seen,
    /// Local services shared in a group, and the group.
    pub(super) members: BTreeMap<String, Place>,
    pub(super) done: mpsc::Sender<Done>,
    pub(super) inbound: Arc<Semaphore>,
    /// The small tasks work was handed to.
    pub(super) tasks: TaskTracker,
    pub(super) inbox: Inbox,
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
    let sync_every = Duration::from_millis(settings.outbox.sync_ms.clamp(1, 1000));
    let mut f = Fabric {
        topics: Topics::new(&settings.prefix, settings.node.clone()),
        broker: settings.broker.clone(),
        resend: settings.resend,
        bus,
        stats,
        calls: HashMap::new(),
        sends: HashMap::new(),
        outbox,
        reread: false,
        seen: Seen::default(),
        members: BTreeMap::new(),
        done,
        inbound: Arc::new(Semaphore::new(settings.max_inbound)),
        tasks: TaskTracker::new(),
        inbox: Inbox::Closed,
    };
    f.restore();
    tracing::info!(node = %settings.node, broker = %settings.broker, prefix = %settings.prefix,
        waiting = f.sends.len(), "fabric ready; its inbox opens once the node's services are on the bus");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync = tokio::time::interval(sync_every);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(done) = outcomes.recv() => f.on_done(done),
            Some(d) = mailbox.recv() => f.on_delivery(d),
            _ = tick.tick() => f.on_tick(),
            _ = sync.tick() => if f.outbox.unsynced() { f.sync() },
        }
    }
    f.stop().await;
}

impl Fabric {
    fn on_delivery(&mut self, d: Delivery) {
        if d.msg.destination != FABRIC {
            return self.outgoing(d);
        }
        match d.msg.action.as_str() {
            ACTION_TOPIC if d.msg.source == TOPICS => {
                self.arrived(&d.msg);
                self.finish(d, Duration::ZERO, Ok(None))
            }
            FABRIC_SHARE => self.share(d),
            FABRIC_INBOX => self.open_or_close(d),
            other => {
                let e = BusError::new(
                    ErrorCode::UnknownAction,
                    format!(
                        "`{FABRIC}` takes messages for other nodes (`service@node`), not action \
                         `{other}`"
                    ),
                );
                self.finish(d, Duration::ZERO, Err(e));
            }
        }
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
            Done::Subscribed(result) => self.subscribed(result),
            Done::Shared {
                service,
                group,
                result,
            } => self.shared(service, group, result),
        }
    }

    fn on_tick(&mut self) {
        let now = std::time::Instant::now();
        self.retry_inbox(now);
        if self.reread {
            self.reread = false;
            self.take_outbox();
        }
        self.expire_calls(now);
        self.resend_due(now);
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
        self.tasks.spawn(async move {
            let result = bus.call(msg, BROKER_WAIT).await.map(drop);
            if let Some(d) = then(result) {
                let _ = done.send(d).await;
            }
        });
    }

    fn sync(&mut self) {
        self.outbox.sync_logged("fabric");
    }

    /// Stopping (the node closed the inbox and stopped its services first): calls waiting
    /// are answered `unavailable`; sends not yet processed stay in the outbox and go again at
    /// the next start; the small tasks get a moment to finish.
    async fn stop(&mut self) {
        for (_, c) in std::mem::take(&mut self.calls) {
            let e = BusError::new(
                ErrorCode::Unavailable,
                "the node is stopping: the call's reply will not be waited for",
            );
            self.finish(c.d, Duration::ZERO, Err(e));
        }
        for s in self.sends.values_mut() {
            if let Some(d) = s.waiting.take() {
                // Kept in the outbox: accepted.
                self.bus.finish(FABRIC, d, Duration::ZERO, Ok(None));
            }
        }
        self.sync();
        self.tasks.close();
        let _ = tokio::time::timeout(STOP_GRACE, self.tasks.wait()).await;
        tracing::info!(
            waiting = self.sends.len(),
            "fabric stopped; messages not yet processed at the other end wait in its outbox"
        );
    }
}
