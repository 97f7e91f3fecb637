//! What the hub sends the node: cloud-to-device messages, direct methods and the desired
//! state (Azure IoT Hub: the device twin).

use rumqttc::Publish;
use serde_json::Value;
use tokio::sync::watch;

use super::dialect::{Inbound, merge};
use super::{COM, Com, Out, cloud};

impl Com {
    pub(super) fn inbound(&mut self, p: Publish) {
        match self.dialect.parse(&p.topic) {
            Inbound::C2d {
                service,
                action,
                props,
            } => self.c2d(service, action, props, p.payload.to_vec()),
            Inbound::Desired { full, version } => {
                if let (Some(v), Some(have)) = (version, self.twin.desired_version)
                    && v <= have
                {
                    return;
                }
                match serde_json::from_slice::<Value>(&p.payload) {
                    Ok(doc) if full => self.set_desired(doc, version),
                    Ok(patch) => {
                        let mut doc = self.twin.desired.clone();
                        merge(&mut doc, &patch);
                        self.set_desired(doc, version);
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, error = %e, "Com: desired state is not JSON; ignored")
                    }
                }
            }
            Inbound::TwinResponse { status, rid } => {
                if self.twin.get.as_deref() == Some(rid.as_str()) {
                    self.twin.get = None;
                    if status != 200 {
                        tracing::warn!(status, "Com: IoT Hub refused the twin request");
                        return;
                    }
                    match serde_json::from_slice::<Value>(&p.payload) {
                        Ok(twin) => {
                            let desired = twin.get("desired").cloned().unwrap_or(Value::Null);
                            let version = desired.get("$version").and_then(Value::as_i64);
                            // A patch newer than this snapshot may have arrived first.
                            if let (Some(v), Some(have)) = (version, self.twin.desired_version)
                                && v < have
                            {
                                return;
                            }
                            self.set_desired(desired, version);
                        }
                        Err(e) => tracing::warn!(error = %e, "Com: the twin is not JSON"),
                    }
                } else if status >= 300 {
                    tracing::warn!(status, rid, "Com: IoT Hub refused a twin update");
                }
            }
            Inbound::Method { name, rid } => {
                let bus = self.bus.clone();
                let out = self.out_tx.clone();
                let dialect = self.dialect.clone();
                let payload = p.payload.to_vec();
                tokio::spawn(async move {
                    let (status, body) = cloud::method(&bus, &name, &payload).await;
                    tracing::info!(method = %name, status, "Com: direct method answered");
                    let _ = out
                        .send(Out {
                            topic: dialect.method_response_topic(&rid, status),
                            payload: body.to_string().into_bytes(),
                        })
                        .await;
                });
            }
            Inbound::Other => {
                tracing::debug!(topic = %p.topic, "Com: message on an unknown topic ignored")
            }
        }
    }

    pub(super) fn c2d(
        &mut self,
        service: Option<String>,
        action: Option<String>,
        props: Vec<(String, String)>,
        payload: Vec<u8>,
    ) {
        let Some(to) = service.or_else(|| self.default_service.clone()) else {
            tracing::warn!(
                "Com: cloud-to-device message names no service and com.default_service is not set; dropped"
            );
            return;
        };
        let content_type = props
            .iter()
            .find(|(k, _)| k == "$.ct" || k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                if serde_json::from_slice::<Value>(&payload).is_ok() {
                    "application/json".into()
                } else {
                    "application/octet-stream".into()
                }
            });
        let mut msg = crate::message::new_message(
            self.bus.next_id(),
            COM,
            &to,
            action.as_deref().unwrap_or("c2d"),
            &content_type,
            payload,
        );
        msg.headers = props;
        if self.c2d.try_send(msg).is_err() {
            tracing::error!(service = %to, "Com: too many cloud-to-device messages waiting; one dropped");
        }
    }

    /// Takes a new desired state: debug forwarding follows `msb-state.debug`, the rest goes
    /// to the orchestrator (and so to every service's `state-update`).
    pub(super) fn set_desired(&mut self, mut doc: Value, version: Option<i64>) {
        if let Some(o) = doc.as_object_mut() {
            o.retain(|k, _| !k.starts_with('$'));
        }
        if version.is_some() {
            self.twin.desired_version = version;
        }
        if doc == self.twin.desired {
            return;
        }
        self.twin.desired = doc.clone();
        let forward = busbar_state::MsbState::lenient(&doc).debug_or_default();
        if forward != self.debug.is_some() {
            tracing::info!(on = forward, "Com: debug forwarding");
            self.debug = forward.then(|| crate::observe::log_hub().follow().1);
        }
        self.twin.desired_tx.send_replace(Some(doc));
    }
}

/// The desired state as the hub describes it (Azure: the device twin), and the requests
/// about it.
#[derive(Debug)]
pub(super) struct Twin {
    /// Hands each new desired state to the task that passes it to the orchestrator.
    pub(super) desired_tx: watch::Sender<Option<Value>>,
    /// The desired state as the hub last described it.
    pub(super) desired: Value,
    /// Its version (Azure's `$version`), when the hub gives one.
    pub(super) desired_version: Option<i64>,
    /// The last request id used towards the twin.
    pub(super) rid: u64,
    /// The request id of the twin GET in progress.
    pub(super) get: Option<String>,
}

impl Twin {
    /// No desired state yet; new ones go to `desired_tx`.
    pub(super) fn new(desired_tx: watch::Sender<Option<Value>>) -> Self {
        Self {
            desired_tx,
            desired: Value::Null,
            desired_version: None,
            rid: 0,
            get: None,
        }
    }
}
