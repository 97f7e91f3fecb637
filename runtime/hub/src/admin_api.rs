//! The endpoints admins call to change the fleet: upload a signed component or artifact,
//! publish or remove a service (what they look at is in [`super::views`] and
//! [`super::summary`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest as _, Sha256};

use super::config::check_id;
use super::error::{HubApiError, blocking};
use super::files::{self, write_atomic};
use super::layers::Layer;
use super::node_api::check_sha;
use super::state::Hub;
use crate::protocol::{
    self, Artifact, EngineGroup, Engines, Publish, Published, Remove, SIGNATURE_HEADER, Targets,
};
use busbar_base::digest::{Fingerprint, Sha256 as Digest};

/// Largest component an admin may upload.
pub const MAX_BLOB_BYTES: usize = 64 << 20;

/// An upload's body, checked against the sha256 its path names, and its signature header.
fn signed_upload(
    sha: &str,
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
) -> Result<(Bytes, String), HubApiError> {
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
    Ok((body, signature))
}

/// `PUT /v1/admin/blobs/{sha256}` with `x-busbar-signature`: stores a signed component.
pub async fn put_blob(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(sha): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, HubApiError> {
    hub.authorize_admin(&headers)?;
    check_sha(&sha)?;
    let (body, signature) = signed_upload(&sha, body, &headers)?;
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

/// The query of `PUT /v1/admin/artifacts/{sha256}`: what the artifact was compiled from and
/// for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactQuery {
    /// sha256 of the component it was compiled from.
    component: Digest,
    /// The node target triple.
    target: String,
    /// The engine fingerprint.
    fingerprint: Fingerprint,
}

/// `PUT /v1/admin/artifacts/{sha256}?component=&target=&fingerprint=` with
/// `x-busbar-signature`: stores a precompiled artifact signed by the publisher.
pub async fn put_artifact(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(sha): Path<String>,
    query: Result<axum::extract::Query<ArtifactQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, HubApiError> {
    hub.authorize_admin(&headers)?;
    check_sha(&sha)?;
    let axum::extract::Query(query) = query?;
    crate::bounds::check_target(&query.target)
        .map_err(|e| HubApiError::bad_request(format!("target: {e}")))?;
    let (body, signature) = signed_upload(&sha, body, &headers)?;
    let artifact = Artifact {
        target: query.target,
        fingerprint: query.fingerprint,
        sha256: Digest::parse(&sha).map_err(|e| HubApiError::bad_request(e.to_string()))?,
        size: body.len() as u64,
        signature,
    };
    protocol::verify_artifact(&public_key(&hub)?, &query.component, &artifact)
        .map_err(|e| HubApiError::bad_request(format!("artifact {sha}: {e}")))?;
    let path = hub.dir.artifact(&sha);
    blocking(move || {
        write_atomic(&path, &body)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    })
    .await?;
    tracing::info!(sha256 = %sha, component = %query.component, target = %artifact.target,
        fingerprint = %artifact.fingerprint, "artifact uploaded");
    Ok(StatusCode::CREATED)
}

/// Checks that every artifact an entry lists is on the hub, with its size, and signed by the
/// publisher for the entry's component.
async fn check_artifacts(hub: &Hub, service: &protocol::FleetService) -> Result<(), HubApiError> {
    let key = public_key(hub)?;
    for (i, a) in service.artifacts.iter().enumerate() {
        protocol::verify_artifact(&key, &service.sha256, a)
            .map_err(|e| HubApiError::bad_request(format!("service.artifacts[{i}]: {e}")))?;
        let path = hub.dir.artifact(a.sha256.as_str());
        let size = blocking(move || match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => anyhow::bail!("cannot stat {}: {e}", path.display()),
        })
        .await?;
        match size {
            None => {
                return Err(HubApiError::bad_request(format!(
                    "service.artifacts[{i}]: no artifact {} on the hub: upload it first \
                     (PUT /v1/admin/artifacts/{})",
                    a.sha256, a.sha256
                )));
            }
            Some(size) if size != a.size => {
                return Err(HubApiError::bad_request(format!(
                    "service.artifacts[{i}].size is {}, but artifact {} has {size} bytes",
                    a.size, a.sha256
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `POST /v1/admin/engines`: the targets and engines the nodes a publish to `targets` reaches
/// announced at their last sign-in, so the publisher compiles for each.
pub async fn engines(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Json<Targets>, JsonRejection>,
) -> Result<Json<Engines>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Json(targets) = body?;
    check_targets(&hub, &targets.nodes, &targets.tags)?;
    let config = hub.config.load_full();
    let everyone = targets.nodes.is_empty() && targets.tags.is_empty();
    let reached: Vec<String> = config
        .nodes
        .iter()
        .filter(|(id, entry)| {
            !entry.revoked
                && (everyone
                    || targets.nodes.contains(*id)
                    || entry.tags.iter().any(|t| targets.tags.contains(t)))
        })
        .map(|(id, _)| id.clone())
        .collect();
    let identities = hub
        .store
        .read(move |conn| {
            reached
                .into_iter()
                .map(|id| {
                    let identity = super::store::read::node(conn, &id, 0)?.and_then(|s| s.identity);
                    Ok((id, identity))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await?;
    let mut out = Engines::default();
    for (id, identity) in identities {
        let id = &id;
        match identity.and_then(|i| i.engine.map(|e| (i.target, e))) {
            Some((target, engine)) => {
                // One artifact serves every node of a target and fingerprint, with a compiler
                // or without.
                match out
                    .engines
                    .iter_mut()
                    .find(|g| g.target == target && g.engine.fingerprint == engine.fingerprint)
                {
                    Some(group) => {
                        group.engine.compiler &= engine.compiler;
                        group.nodes.push(id.clone());
                    }
                    None => out.engines.push(EngineGroup {
                        target,
                        engine,
                        nodes: vec![id.clone()],
                    }),
                }
            }
            None => out.unknown.push(id.clone()),
        }
    }
    Ok(Json(out))
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
    check_artifacts(&hub, service).await?;
    protocol::verify_entry(&public_key(&hub)?, service).map_err(|e| {
        HubApiError::bad_request(format!(
            "service.signature: {e}; sign the whole entry with the publisher's key \
             (`busbar hub publish` does)"
        ))
    })?;

    let targets = Layer::targets(&publish.nodes, &publish.tags);
    let name = service.name.clone();
    let service = publish.service;
    let kept = Box::new(service.clone());
    change_layers(&hub, &targets, move |layers, layer| {
        layers.upsert(layer.clone(), service.clone());
        true
    })
    .await?;
    // Kept so it can be published again (the console's "a version the hub holds").
    if let Err(e) = hub.store.write(super::store::Write::Entry(kept)).await {
        tracing::warn!(service = %name, "published, but not kept for publishing again: {}", e.message);
    }
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
