//! The node's control actions, which the `orchestrator` hands over (they change what runs,
//! so they need the node itself): `start`, `stop` and `restart` one service
//! (`{"service": "name"}`), and `desired-state` (the hub's desired properties as JSON).
//!
//! `desired-state` reaches every service through `state-update`; its `msb-state.enabled`
//! starts (`true`) or stops (`false`) every custom service.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::bus::Delivery;
use crate::message::{BusError, ErrorCode, Reply};
use crate::orchestrator::ControlAction;

/// Handles control requests one at a time until `cancel` fires.
pub(super) async fn serve(
    core: Arc<Core>,
    mut requests: mpsc::Receiver<Delivery>,
    cancel: CancellationToken,
) {
    loop {
        let d = tokio::select! {
            d = requests.recv() => d,
            () = cancel.cancelled() => None,
        };
        let Some(d) = d else { break };
        let began = Instant::now();
        let result = handle(&core, &d.msg.action, &d.msg.payload).await;
        match &result {
            Ok(v) => {
                tracing::info!(action = %d.msg.action, from = %d.msg.source, outcome = %v, "control action")
            }
            Err(e) => {
                tracing::warn!(action = %d.msg.action, from = %d.msg.source, error = %e, "control action refused")
            }
        }
        let result = result.map(|v| {
            Some(Reply {
                content_type: "application/json".into(),
                payload: v.to_string().into_bytes(),
            })
        });
        core.env.bus.finish(
            crate::orchestrator::ORCHESTRATOR,
            d,
            began.elapsed(),
            result,
        );
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    service: String,
}

async fn handle(core: &Core, action: &str, payload: &[u8]) -> Result<Value, BusError> {
    let Some(control) = ControlAction::parse(action) else {
        return Err(BusError::new(
            ErrorCode::UnknownAction,
            format!("no control action `{action}`"),
        ));
    };
    if control == ControlAction::DesiredState {
        return desired_state(core, payload).await;
    }
    let Target { service } = serde_json::from_slice(payload).map_err(|e| {
        BusError::new(
            ErrorCode::BadPayload,
            format!("`{action}` takes {{\"service\": \"name\"}}: {e}"),
        )
    })?;
    {
        let mut wanted = busbar_base::sync::lock(&core.wanted);
        if !wanted.manifest.services.iter().any(|s| s.name == service) {
            return Err(BusError::new(
                ErrorCode::UnknownDestination,
                format!("the node's manifest has no service named `{service}`"),
            ));
        }
        if control == ControlAction::Stop {
            wanted.held.insert(service.clone());
        } else {
            wanted.held.remove(&service);
        }
    }
    let restart = (control == ControlAction::Restart).then_some(service.as_str());
    let applied = core
        .apply(None, restart)
        .await
        .map_err(|e| BusError::new(ErrorCode::Other, format!("{e:#}")))?;
    Ok(json!({ "service": service, "applied": applied }))
}

async fn desired_state(core: &Core, payload: &[u8]) -> Result<Value, BusError> {
    let doc: Value = serde_json::from_slice(payload).map_err(|e| {
        BusError::new(
            ErrorCode::BadPayload,
            format!("`desired-state` takes a JSON object: {e}"),
        )
    })?;
    let msb = busbar_state::MsbState::of(&doc)
        .map_err(|e| BusError::new(ErrorCode::BadPayload, format!("`desired-state`: {e}")))?;
    core.env.desired.set(&doc.to_string());
    let changed = msb.enabled.is_some_and(|enabled| {
        let mut wanted = busbar_base::sync::lock(&core.wanted);
        let was = !wanted.disabled;
        wanted.disabled = !enabled;
        was != enabled
    });
    let applied = if changed {
        core.apply(None, None)
            .await
            .map_err(|e| BusError::new(ErrorCode::Other, format!("{e:#}")))?
    } else {
        super::Applied::default()
    };
    let enabled = !busbar_base::sync::lock(&core.wanted).disabled;
    Ok(json!({ "enabled": enabled, "applied": applied }))
}
