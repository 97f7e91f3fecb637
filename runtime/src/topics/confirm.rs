//! Confirmed publishes (QoS 1 straight to the session, answered at the broker's PUBACK):
//! which request each packet id stands for. rumqttc numbers publishes in the order they were
//! requested, so the n-th publish of a session is the n-th `Outgoing::Publish`.

use std::collections::{BTreeMap, HashMap};

use rumqttc::v5::mqttbytes::v5::PubAckReason;

use crate::bus::Delivery;
use crate::message::{BusError, ErrorCode};

/// The confirmed publishes of the current session.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    /// Publishes requested on this session.
    requested: u64,
    /// Publishes rumqttc numbered on this session.
    numbered: u64,
    /// Confirmed publishes waiting to be numbered, by their place in the session's order.
    by_order: BTreeMap<u64, Delivery>,
    /// Confirmed publishes waiting for the broker, by packet id.
    by_pkid: HashMap<u16, Delivery>,
}

impl Confirms {
    /// A publish was requested on this session; `d` waits for its acknowledgement.
    pub(super) fn requested(&mut self, d: Option<Delivery>) {
        if let Some(d) = d {
            self.by_order.insert(self.requested, d);
        }
        self.requested += 1;
    }

    /// rumqttc numbered the next publish of this session.
    pub(super) fn numbered(&mut self, pkid: u16) {
        let n = self.numbered;
        self.numbered += 1;
        if let Some(d) = self.by_order.remove(&n) {
            self.by_pkid.insert(pkid, d);
        }
    }

    /// The broker acknowledged `pkid`: the request it answers, if it was a confirmed one.
    pub(super) fn acknowledged(&mut self, pkid: u16) -> Option<Delivery> {
        self.by_pkid.remove(&pkid)
    }

    /// The session ended: every request waiting, to be answered `unavailable`.
    pub(super) fn restart(&mut self) -> Vec<Delivery> {
        self.requested = 0;
        self.numbered = 0;
        let mut all: Vec<Delivery> = std::mem::take(&mut self.by_order).into_values().collect();
        all.extend(std::mem::take(&mut self.by_pkid).into_values());
        all
    }
}

/// What a broker's acknowledgement means for the publish's sender.
pub(super) fn outcome(broker: &str, topic: &str, reason: PubAckReason) -> Result<(), BusError> {
    match reason {
        PubAckReason::Success => Ok(()),
        PubAckReason::NoMatchingSubscribers => Err(BusError::new(
            ErrorCode::Unavailable,
            format!("broker `{broker}`: no one is subscribed to `{topic}`"),
        )),
        other => Err(BusError::new(
            ErrorCode::NotPermitted,
            format!(
                "broker `{broker}` refused the publish to `{topic}` ({other:?}); check its ACL"
            ),
        )),
    }
}
