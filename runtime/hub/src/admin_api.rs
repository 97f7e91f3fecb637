//! The endpoints admins call: upload a signed component, publish or remove a service, list
//! the nodes, read a node's forwarded logs.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::config::check_id;
use super::error::{HubApiError, blocking};
use super::files::{self, write_atomic};
use super::layers::Layer;
use super::node_api::check_sha;
use super::state::Hub;
use crate::protocol::{self, NodeRecord, Publish, Published, Remove, SIGNATURE_HEADER};

/// Largest component an admin may upload.
pub const MAX_BLOB_BYTES: usize = 64 << 20;

/// `PUT /v1/admin/blobs/{sha256}` with `x-busbar-signature`: stores a signed component.
pub async fn put_blob(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(sha): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, HubApiError> {
    hub.authorize_admin(&headers)?;
    check_sha(&sha)?;
    let body = body?;
    let actual = hex::encode(Sha256::digest(&body));
    if actual != sha {
        return Err(HubApiError::bad_request(format!(
            "the body's sha256 is {actual}, but the path says {sha}"
        )));
    }
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .ok_or_else(|| {
            HubApiError::bad_request(format!(
                "missing header `{SIGNATURE_HEADER}` (hex signature)"
            ))
        })?;
    verify(&hub, &sha, &signature)?;
    let (blob, sig) = (hub.dir.blob(&sha), hub.dir.signature(&sha));
    blocking(move || {
        write_atomic(&blob, &body)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", blob.display()))?;
        write_atomic(&sig, signature.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", sig.display()))
    })
    .await?;
    tracing::info!(sha256 = %sha, "component uploaded");
    Ok(StatusCode::CREATED)
}

/// The publishers' public key of `hub.toml`.
fn public_key(hub: &Hub) -> Result<ed25519_dalek::VerifyingKey, HubApiError> {
    hub.config
        .load()
        .verifying_key()
        .map_err(|e| HubApiError::internal(format!("hub.toml public_key: {e}")))
}

/// Checks a component's signature against the hub's public key.
fn verify(hub: &Hub, sha: &str, signature: &str) -> Result<(), HubApiError> {
    protocol::verify(&public_key(hub)?, sha, signature)
        .map_err(|e| HubApiError::bad_request(format!("signature of {sha}: {e}")))
}

/// Checks the nodes and tags a publish or removal names.
fn check_targets(hub: &Hub, nodes: &[String], tags: &[String]) -> Result<(), HubApiError> {
    let config = hub.config.load();
    for n in nodes {
        if !config.nodes.contains_key(n) {
            return Err(HubApiError::bad_request(format!(
                "unknown node `{n}` (add it with `busbar hub add-node`)"
            )));
        }
    }
    for t in tags {
        check_id(t).map_err(|e| HubApiError::bad_request(format!("tag: {e}")))?;
    }
    Ok(())
}

/// `POST /v1/admin/publish`: puts a service version into the named manifests.
pub async fn publish(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<Publish>, JsonRejection>,
) -> Result<Json<Published>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Json(publish) = body?;
    let service = &publish.service;
    service
        .check()
        .map_err(|e| HubApiError::bad_request(format!("service.{e}")))?;
    check_targets(&hub, &publish.nodes, &publish.tags)?;
    let sha = service.sha256.to_string();
    let (blob, sig) = (hub.dir.blob(&sha), hub.dir.signature(&sha));
    let stored = blocking(move || {
        let size = match std::fs::metadata(&blob) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot stat {}: {e}", blob.display()),
        };
        let signature = std::fs::read_to_string(&sig)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", sig.display()))?;
        Ok(Some((size, signature.trim().to_owned())))
    })
    .await?;
    let Some((size, blob_signature)) = stored else {
        return Err(HubApiError::bad_request(format!(
            "no blob {sha} on the hub: upload it first (PUT /v1/admin/blobs/{sha})"
        )));
    };
    if service.size != size {
        return Err(HubApiError::bad_request(format!(
            "service.size is {}, but blob {sha} has {size} bytes",
            service.size
        )));
    }
    verify(&hub, &sha, &blob_signature)?;
    protocol::verify_entry(&public_key(&hub)?, service).map_err(|e| {
        HubApiError::bad_request(format!(
            "service.signature: {e}; sign the whole entry with the publisher's key \
             (`busbar hub publish` does)"
        ))
    })?;

    let targets = Layer::targets(&publish.nodes, &publish.tags);
    let name = service.name.clone();
    let service = publish.service;
    change_layers(&hub, &targets, move |layers, layer| {
        layers.upsert(layer.clone(), service.clone());
        true
    })
    .await?;
    let manifests: Vec<String> = targets.iter().map(ToString::to_string).collect();
    tracing::info!(service = %name, sha256 = %sha, manifests = %manifests.join(","), "published");
    Ok(Json(Published { manifests }))
}

/// `POST /v1/admin/remove`: takes a service out of the named manifests.
pub async fn remove(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<Remove>, JsonRejection>,
) -> Result<Json<Published>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Json(remove) = body?;
    check_targets(&hub, &remove.nodes, &remove.tags)?;
    let targets = Layer::targets(&remove.nodes, &remove.tags);
    let name = remove.service.clone();
    let changed = change_layers(&hub, &targets, move |layers, layer| {
        layers.remove(layer, &name)
    })
    .await?;
    if changed.is_empty() {
        return Err(HubApiError::not_found(format!(
            "service `{}` is in none of the manifests named ({})",
            remove.service,
            targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let manifests: Vec<String> = changed.iter().map(ToString::to_string).collect();
    tracing::info!(service = %remove.service, manifests = %manifests.join(","), "removed");
    Ok(Json(Published { manifests }))
}

/// Applies `change` to each target layer (it says whether it changed the layer), writes
/// the changed layers' files, then makes them current and wakes the long polls. Returns
/// the layers changed.
async fn change_layers(
    hub: &Arc<Hub>,
    targets: &[Layer],
    change: impl Fn(&mut super::layers::Layers, &Layer) -> bool,
) -> Result<Vec<Layer>, HubApiError> {
    let _writer = hub.writer.lock().await;
    let mut layers = busbar_base::sync::read(&hub.layers).clone();
    let changed: Vec<Layer> = targets
        .iter()
        .filter(|l| change(&mut layers, l))
        .cloned()
        .collect();
    let writes: Vec<_> = changed
        .iter()
        .map(|l| (hub.dir.manifest(&l.stem()), layers.services(l).to_vec()))
        .collect();
    blocking(move || {
        for (path, services) in writes {
            files::write_json(&path, &services)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    })
    .await?;
    *busbar_base::sync::write(&hub.layers) = layers;
    hub.bump();
    Ok(changed)
}

/// `GET /v1/admin/nodes`: every node of `hub.toml` with what it reported.
pub async fn nodes(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeRecord>>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let config = hub.config.load_full();
    let mut records = Vec::with_capacity(config.nodes.len());
    for (id, entry) in &config.nodes {
        records.push(hub.records.get(id).await?.record(id, entry));
    }
    Ok(Json(records))
}

/// `GET /v1/admin/nodes/{id}/logs`: the node's forwarded log lines.
pub async fn node_logs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, HubApiError> {
    hub.authorize_admin(&headers)?;
    if !hub.config.load().nodes.contains_key(&id) {
        return Err(HubApiError::not_found(format!("unknown node `{id}`")));
    }
    let path = hub.dir.log(&id);
    let text = blocking(move || match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
