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
    let brokers: serde_json::Map<String, serde_json::Value> = if grant.sees_all() {
        app.links
            .brokers
            .iter()
            .map(|(name, s)| (name.clone(), s.to_json()))
            .collect()
    } else {
        serde_json::Map::new()
    };
    let fabric = match &app.links.fabric {
        Some(f) if grant.sees_all() => f.to_json(),
        _ => serde_json::Value::Null,
    };
    axum::Json(serde_json::json!({
        "node_id": app.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "target": crate::precompiled::HOST_TARGET,
        "engine": app.engine,
        "uptime_s": app.started.elapsed().as_secs(),
        "tasks": app.health.report(),
        "services": services,
        "brokers": brokers,
        "fabric": fabric,
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
    links: super::Links,
    health: Arc<busbar_base::supervise::Health>,
) -> Registry {
    let mut registry = Registry::with_prefix("busbar");
    registry.register_collector(Box::new(NodeCollector {
        bus,
        services,
        com: links.com,
        brokers: links.brokers,
        fabric: links.fabric,
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
    brokers: crate::topics::TopicsStats,
    fabric: Option<Arc<crate::fabric::FabricStats>>,
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
        self.encode_brokers(&mut encoder)?;
        if let Some(fabric) = &self.fabric {
            super::fabric_metrics::encode(fabric, &mut encoder)?;
        }
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

impl NodeCollector {
    /// Every broker connection's link, traffic and outbox, labelled `broker`; what a
    /// subscriber's mailbox did not take, labelled `broker` and `service`.
    fn encode_brokers(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::topics::BrokerStats;
        use std::sync::atomic::Ordering::Relaxed;
        if self.brokers.is_empty() {
            return Ok(());
        }
        type Gauge = fn(&BrokerStats) -> i64;
        let gauges: [(&str, &str, Gauge); 4] = [
            (
                "broker_connected",
                "1 while the broker connection has a session, else 0",
                |s| i64::from(s.connected.load(Relaxed)),
            ),
            (
                "broker_filters",
                "Distinct filters subscribed at the broker",
                |s| s.filters.load(Relaxed) as i64,
            ),
            (
                "broker_outbox_messages",
                "At-least-once publishes waiting in the outbox for the broker's acknowledgement",
                |s| s.outbox().pending as i64,
            ),
            ("broker_outbox_bytes", "Bytes waiting in the outbox", |s| {
                s.outbox().pending_bytes as i64
            }),
        ];
        for (name, help, get) in gauges {
            let probe = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (broker, s) in &self.brokers {
                ConstGauge::new(get(s))
                    .encode(family.encode_family(&[("broker", broker.as_str())])?)?;
            }
        }
        type Counter = fn(&BrokerStats) -> u64;
        let counters: [(&str, &str, Counter); 6] = [
            ("broker_sessions", "Sessions opened with the broker", |s| {
                s.sessions.load(Relaxed)
            }),
            (
                "broker_received",
                "Publishes that arrived on subscribed filters",
                |s| s.received.load(Relaxed),
            ),
            (
                "broker_delivered",
                "Copies put into subscribers' mailboxes",
                |s| s.delivered.load(Relaxed),
            ),
            (
                "broker_published",
                "Publishes from services the broker acknowledged (at least once) or that were sent (at most once)",
                |s| s.published.load(Relaxed),
            ),
            (
                "broker_outbox_refused",
                "Publishes refused because the outbox was full",
                |s| s.outbox().refused,
            ),
            (
                "broker_publish_refused",
                "Publishes from services the broker refused or could never take (dropped, logged)",
                |s| s.refused.load(Relaxed),
            ),
        ];
        for (name, help, get) in counters {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (broker, s) in &self.brokers {
                ConstCounter::new(get(s))
                    .encode(family.encode_family(&[("broker", broker.as_str())])?)?;
            }
        }
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "broker_dropped",
            "Copies a subscriber's mailbox did not take (full, or the service stopped)",
            None,
            probe.metric_type(),
        )?;
        for (broker, s) in &self.brokers {
            for (service, n) in s.dropped() {
                let labels = [("broker", broker.as_str()), ("service", service.as_str())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
