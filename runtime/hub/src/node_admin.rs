//! What admins change of one node from the console or the API: its log forwarding
//! (`POST /v1/admin/nodes/{id}/debug`) and its token (`POST /v1/admin/nodes/{id}/revoke`).
//! Both edit `hub.toml` under its lock, as `busbar hub set-debug` and `revoke-node` do, and
//! take effect at once (the hub re-reads it; the node's manifest changes).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::config::{HubConfig, NodeEntry};
use super::error::{HubApiError, blocking};
use super::state::Hub;

/// The body of `POST /v1/admin/nodes/{id}/debug`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// On or off.
    on: bool,
}

/// Changes node `id` of `hub.toml`, then makes the change current.
async fn edit(
    hub: &Arc<Hub>,
    id: String,
    change: impl FnOnce(&mut NodeEntry) + Send + 'static,
) -> Result<(), HubApiError> {
    super::views::entry_of(hub, &id)?;
    let root = hub.dir.root().to_owned();
    let config = blocking(move || {
        HubConfig::edit(&root, |config| {
            change(config.node_mut(&id)?);
            Ok(config.clone())
        })
    })
    .await?;
    // In use before the answer: a revoked token is refused from the next request on.
    hub.use_config(config);
    Ok(())
}

/// `POST /v1/admin/nodes/{id}/debug` `{"on": true}`: turns the node's log forwarding on or off.
pub async fn debug(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Debug>, JsonRejection>,
) -> Result<StatusCode, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Json(Debug { on }) = body?;
    edit(&hub, id.clone(), move |n| n.debug = on).await?;
    tracing::info!(node = %id, debug = on, "node debug set by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/nodes/{id}/revoke`: refuses the node's token from now on.
pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, HubApiError> {
    hub.authorize_admin(&headers)?;
    edit(&hub, id.clone(), |n| n.revoked = true).await?;
    tracing::warn!(node = %id, "node revoked by an admin");
    Ok(StatusCode::NO_CONTENT)
}
