//! What the fabric subscribes to: the node's inbox, opened once the node's services are on
//! the bus and closed before they stop (so a request never finds its service missing for a
//! moment), and the groups local services are shared in.

use std::time::{Duration, Instant};

use super::task::{BROKER_WAIT, Done, Fabric};
use crate::bus::Delivery;
use crate::message::{BusError, ErrorCode, FABRIC, TopicRequest};
use busbar_base::address::Place;

/// Where the inbox subscription stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inbox {
    /// Not subscribed (before the node opens it, after it closes it).
    Closed,
    /// Asked for.
    Asked,
    /// Made.
    Open,
    /// Refused or failed: asked again then.
    Retry(Instant),
}

impl Fabric {
    /// The node opens (payload `open`) or closes (`close`) its inbox.
    pub(super) fn open_or_close(&mut self, d: Delivery) {
        match d.msg.payload.as_slice() {
            b"open" => {
                self.subscribe_inbox();
                self.finish(d, Duration::ZERO, Ok(None));
            }
            b"close" => self.close(d),
            _ => {
                let e = BusError::new(ErrorCode::BadPayload, "`inbox` takes `open` or `close`");
                self.finish(d, Duration::ZERO, Err(e));
            }
        }
    }

    fn subscribe_inbox(&mut self) {
        self.inbox = Inbox::Asked;
        let request = TopicRequest::Subscribe {
            broker: self.broker.clone(),
            filter: self.topics.inbox(),
        };
        self.ask(request, |r| Some(Done::Subscribed(r)));
    }

    pub(super) fn subscribed(&mut self, result: Result<(), BusError>) {
        if self.inbox != Inbox::Asked {
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!(inbox = %self.topics.inbox(), broker = %self.broker,
                    "fabric inbox subscribed (made again on every session with the broker)");
                self.inbox = Inbox::Open;
            }
            Err(e) => {
                tracing::error!(error = %e, broker = %self.broker,
                    "the fabric could not subscribe to its inbox; trying again in 5 s");
                self.inbox = Inbox::Retry(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    pub(super) fn retry_inbox(&mut self, now: Instant) {
        if matches!(self.inbox, Inbox::Retry(at) if at <= now) {
            self.subscribe_inbox();
        }
    }

    /// The node is stopping: its inbox and groups close before its services stop.
    fn close(&mut self, d: Delivery) {
        self.inbox = Inbox::Closed;
        let mut requests = vec![TopicRequest::Unsubscribe {
            broker: self.broker.clone(),
            filter: self.topics.inbox(),
        }];
        for (service, group) in std::mem::take(&mut self.members) {
            requests.push(TopicRequest::Unsubscribe {
                broker: self.broker.clone(),
                filter: self.topics.group_filter(&group, &service),
            });
        }
        self.run_requests(d, requests, None);
    }

    /// A local service joins its group (the payload names it) or leaves it (empty).
    pub(super) fn share(&mut self, d: Delivery) {
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
            // Out of the old group whatever becomes of the new one.
            self.members.remove(&service);
            requests.push(TopicRequest::Unsubscribe {
                broker: self.broker.clone(),
                filter: self.topics.group_filter(&g, &service),
            });
        }
        if let Some(g) = &group {
            requests.push(TopicRequest::Subscribe {
                broker: self.broker.clone(),
                filter: self.topics.group_filter(g, &service),
            });
        }
        self.run_requests(d, requests, Some((service, group)));
    }

    /// Asks the broker connection for `requests` in order, then answers `d`; a share's
    /// outcome comes back to the loop, which records the membership only once it is made.
    fn run_requests(
        &self,
        d: Delivery,
        requests: Vec<TopicRequest>,
        share: Option<(String, Option<Place>)>,
    ) {
        let bus = self.bus.clone();
        let done = self.done.clone();
        let msgs: Vec<_> = requests
            .into_iter()
            .map(|r| r.into_message(bus.next_id(), FABRIC))
            .collect();
        self.tasks.spawn(async move {
            let mut result = Ok(());
            for msg in msgs {
                if let Err(e) = bus.call(msg, BROKER_WAIT).await {
                    result = Err(e);
                    break;
                }
            }
            if let Some((service, group)) = share {
                let outcome = Done::Shared {
                    service,
                    group,
                    result: result.clone(),
                };
                let _ = done.send(outcome).await;
            }
            bus.finish(FABRIC, d, Duration::ZERO, result.map(|()| None));
        });
    }

    pub(super) fn shared(
        &mut self,
        service: String,
        group: Option<Place>,
        result: Result<(), BusError>,
    ) {
        match (group, result) {
            (Some(g), Ok(())) => {
                tracing::info!(%service, group = %g, "service shared in its group on the fabric");
                self.members.insert(service, g);
            }
            (Some(g), Err(e)) => {
                tracing::error!(%service, group = %g, error = %e, "service could not join its group on the fabric");
            }
            (None, _) => {}
        }
    }
}
