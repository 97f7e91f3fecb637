//! What the node tells the hub of itself: its reported state (services, versions, target)
//! and, while debug is on, its services' log lines.

use serde_json::{Value, json};

use super::Com;
use crate::observe::LogLine;

impl Com {
    pub(super) fn forward_debug(&mut self, line: &LogLine) {
        let topic = self.dialect.debug_topic();
        let body = serde_json::to_vec(line).unwrap_or_default();
        self.publish(topic, body, false, None);
    }

    /// Publishes the node's state: services, versions, states, counters, spool.
    pub(super) fn report(&mut self) {
        if self.client.is_none() {
            return;
        }
        let report = self.services.report();
        self.report_when_settled = report.iter().any(|s| unsettled(s.status.state));
        let services: serde_json::Map<String, Value> = report
            .into_iter()
            .map(|s| {
                let v = json!({
                    "state": s.status.state.as_str(),
                    "sha256": s.status.sha256,
                    "restarts": s.status.restarts,
                    "last_fault": s.status.last_fault,
                    "counters": s.counters,
                });
                (s.name, v)
            })
            .collect();
        let c = self.spool.counts();
        let body = json!({
            "msb-state": {
                "enabled": busbar_state::MsbState::lenient(&self.twin.desired).enabled_or_default(),
                "debug": self.debug.is_some(),
            },
            "node": {
                "id": self.node_id,
                "version": env!("CARGO_PKG_VERSION"),
                "target": crate::precompiled::HOST_TARGET,
            },
            "services": services,
            "spool": {
                "pending": c.pending, "bytes": c.pending_bytes, "refused": c.refused,
                "dropped": c.dropped, "expired": c.expired,
            },
        });
        self.twin.rid += 1;
        let topic = self.dialect.reported_topic(self.twin.rid);
        let retain = self.dialect.retain_reports();
        self.publish(topic, body.to_string().into_bytes(), retain, None);
    }
}

/// Whether a service is on its way to running (a report should follow once it is there).
pub(super) fn unsettled(state: crate::service::State) -> bool {
    use crate::service::State;
    matches!(state, State::Loading | State::Starting | State::Restarting)
}
