//! `/metrics` of the fabric: requests to and from other nodes, and round trips by the node
//! that answered (`busbar_fabric_*`).

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::fabric::{FabricStats, Peer};

/// Encodes `fabric`'s figures.
pub(super) fn encode(
    fabric: &FabricStats,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let gauges = [
        (
            "fabric_outbox_messages",
            "Messages for other nodes not yet processed there (kept on disk, sent again)",
            fabric.outbox.load(Relaxed),
        ),
        (
            "fabric_calls_waiting",
            "Calls to other nodes waiting for their reply",
            fabric.calls_waiting.load(Relaxed),
        ),
    ];
    for (name, help, v) in gauges {
        let g = ConstGauge::new(v as i64);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
    }
    let counters = [
        (
            "fabric_served",
            "Requests from other nodes handled by this node's services",
            fabric.served.load(Relaxed),
        ),
        (
            "fabric_duplicates",
            "Requests from other nodes seen before (sent again): answered, not delivered twice",
            fabric.duplicates.load(Relaxed),
        ),
        (
            "fabric_busy",
            "Requests from other nodes answered queue-full (fabric.max_inbound)",
            fabric.busy.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        let c = ConstCounter::new(v);
        c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
    }
    let peers = fabric.peers();
    type CountOf = fn(&Peer) -> u64;
    let per_peer: [(&str, &str, CountOf); 3] = [
        (
            "fabric_sent",
            "Calls and sends to another node or group (first attempts)",
            |p| p.sent,
        ),
        (
            "fabric_resent",
            "Sends to another node or group sent again (no word within resend_ms, or busy there)",
            |p| p.resent,
        ),
        (
            "fabric_failed",
            "Calls and sends to another node or group that failed (not there, timed out, refused)",
            |p| p.failed,
        ),
    ];
    for (name, help, get) in per_peer {
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
        for (peer, p) in &peers {
            ConstCounter::new(get(p)).encode(family.encode_family(&[("peer", peer.as_str())])?)?;
        }
    }
    if let Some((_, first)) = peers.iter().next() {
        let mut family = encoder.encode_descriptor(
            "fabric_round_trip_seconds",
            "Round trips of calls and sends, by the node that answered",
            None,
            first.round_trips.metric_type(),
        )?;
        for (peer, p) in &peers {
            p.round_trips
                .encode(family.encode_family(&[("peer", peer.as_str())])?)?;
        }
    }
    Ok(())
}
