//! `GET /status` (JSON) and `GET /metrics` (Prometheus / OpenMetrics text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::App;
use crate::bus::Bus;
use crate::config::admin::ApiRoute;
use crate::orchestrator::{ServiceReport, ServiceTable};
use crate::service::State as ServiceState;

/// `GET /status`: the node and every service the token may see.
pub(super) async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let grant = match app.grants.authorize(&headers, ApiRoute::Status) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let services: Vec<_> = app
        .services
        .report()
        .into_iter()
        .filter(|s| grant.allows(&s.name))
        .collect();
    axum::Json(serde_json::json!({
        "node_id": app.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "target": crate::precompiled::HOST_TARGET,
        "engine": app.engine,
        "uptime_s": app.started.elapsed().as_secs(),
        "tasks": app.health.report(),
        "services": services,
    }))
    .into_response()
}

/// `GET /metrics`.
pub(super) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let grant = match app.grants.authorize(&headers, ApiRoute::Metrics) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    if !grant.sees_all() {
        return super::auth::ApiError::forbidden(format!(
            "token `{}` is limited to some services; /metrics covers them all",
            grant.name
        ))
        .into_response();
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &app.metrics) {
        return super::auth::ApiError::internal(format!("cannot encode metrics: {e}"))
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The registry `/metrics` encodes: everything is read from the node at scrape time.
pub(super) fn registry(
    bus: Bus,
    services: Arc<ServiceTable>,
    com: Arc<crate::com::ComStats>,
    health: Arc<busbar_base::supervise::Health>,
) -> Registry {
    let mut registry = Registry::with_prefix("busbar");
    registry.register_collector(Box::new(NodeCollector {
        bus,
        services,
        com,
        health,
    }));
    registry
}

/// Reads one counter of a service out of its report.
type CounterOf = fn(&ServiceReport) -> u64;

#[derive(Debug)]
struct NodeCollector {
    bus: Bus,
    services: Arc<ServiceTable>,
    com: Arc<crate::com::ComStats>,
    health: Arc<busbar_base::supervise::Health>,
}

impl NodeCollector {
    /// `task_up` and `task_restarts_total` for every watched task.
    fn encode_tasks(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tasks = self.health.report();
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "task_up",
            "1 while the node's long-lived task (com, admin-api, fleet) runs, else 0",
            None,
            probe.metric_type(),
        )?;
        for (name, t) in &tasks {
            let up = i64::from(t.state == busbar_base::supervise::TaskState::Running);
            ConstGauge::new(up).encode(family.encode_family(&[("task", *name)])?)?;
        }
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "task_restarts",
            "Restarts of the node's long-lived task after it failed",
            None,
            probe.metric_type(),
        )?;
        for (name, t) in &tasks {
            ConstCounter::new(u64::from(t.restarts))
                .encode(family.encode_family(&[("task", *name)])?)?;
        }
        Ok(())
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = self.services.report();
        let counters: [(&str, &str, CounterOf); 7] = [
            (
                "messages_processed",
                "Messages the service processed",
                |s| s.counters.processed,
            ),
            (
                "messages_failed",
                "Messages whose processing failed (error, trap or deadline)",
                |s| s.counters.failed,
            ),
            (
                "messages_sent",
                "Messages the service sent that the bus accepted",
                |s| s.counters.sent,
            ),
            (
                "messages_dropped",
                "Messages the service sent that the bus refused (unknown destination, full mailbox, too large)",
                |s| s.counters.refused,
            ),
            (
                "messages_dead_lettered",
                "Messages the service took but could not finish (fault, or the node stopped)",
                |s| s.counters.dead_lettered,
            ),
            (
                "messages_throttled",
                "Submits that waited for the service's submit quota",
                |s| s.counters.throttled,
            ),
            ("service_restarts", "Restarts after a fault", |s| {
                u64::from(s.status.restarts)
            }),
        ];
        for (name, help, get) in counters {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for s in &report {
                let labels = [("service", s.name.as_str())];
                ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "service_up",
            "1 when the service is running, else 0",
            None,
            probe.metric_type(),
        )?;
        for s in &report {
            let labels = [("service", s.name.as_str())];
            let up = i64::from(s.status.state == ServiceState::Running);
            ConstGauge::new(up).encode(family.encode_family(&labels)?)?;
        }
        self.encode_tasks(&mut encoder)?;
        self.encode_com(&mut encoder)?;
        let latencies = self.bus.call_latencies();
        if let Some((_, first)) = latencies.first() {
            let mut family = encoder.encode_descriptor(
                "call_duration_seconds",
                "Round trip of calls to the service, queueing included",
                None,
                first.metric_type(),
            )?;
            for (name, histogram) in &latencies {
                let labels = [("service", name.as_str())];
                histogram.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl NodeCollector {
    /// Com's link and spool: `com_connected` (with a broker), spool depth and what the
    /// spool refused, dropped or let expire.
    fn encode_com(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let com = &self.com;
        if !com.broker.load(Relaxed) {
            return Ok(());
        }
        let spool = com.spool();
        let gauges: [(&str, &str, i64); 3] = [
            (
                "com_connected",
                "1 while Com has a session with the broker (MQTT connection state), else 0",
                i64::from(com.connected.load(Relaxed)),
            ),
            (
                "com_spool_messages",
                "Messages in the spool waiting for the broker's acknowledgement",
                spool.pending as i64,
            ),
            (
                "com_spool_bytes",
                "Bytes of the messages waiting in the spool",
                spool.pending_bytes as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "com_sessions",
                "Sessions opened with the broker",
                com.sessions.load(Relaxed),
            ),
            (
                "com_delivered",
                "Messages the broker acknowledged",
                com.delivered.load(Relaxed),
            ),
            (
                "com_spool_refused",
                "Messages refused because the spool was full",
                spool.refused,
            ),
            (
                "com_spool_dropped",
                "Oldest messages dropped to make room (drop-oldest)",
                spool.dropped,
            ),
            (
                "com_spool_expired",
                "Messages dropped after outliving the spool's TTL",
                spool.expired,
            ),
            (
                "com_spool_corrupt",
                "Unreadable spool records skipped",
                spool.corrupt,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
