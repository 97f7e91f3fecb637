//! Which node runs which version of each service, and which rolled back or refused one
//! (`GET /v1/admin/rollout`); and the signed entries the hub keeps to publish again
//! (`GET /v1/admin/entries`). Bounded: at most [`MAX_VERSION_NODES`] node ids per version and
//! flagged nodes per service are listed (the counts are complete).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::error::HubApiError;
use super::state::Hub;
use super::store::read;
use crate::protocol::{EventKind, FleetService};
use busbar_base::digest::Sha256;

/// Most node ids listed per running version, and flagged nodes per service.
pub const MAX_VERSION_NODES: usize = 200;

/// `GET /v1/admin/rollout`.
#[derive(Debug, Default, Serialize)]
pub struct Rollout {
    /// Every service published or running, by name.
    pub services: Vec<ServiceRollout>,
}

/// One service's rollout.
#[derive(Debug, Default, Serialize)]
pub struct ServiceRollout {
    /// Its name.
    pub service: String,
    /// Where it is published, and which version.
    pub published: Vec<PublishedIn>,
    /// The versions nodes run now.
    pub versions: Vec<Running>,
    /// Nodes whose latest event for it is a rollback or a refusal (the latest
    /// [`MAX_VERSION_NODES`]).
    pub flagged: Vec<Flagged>,
    /// How many nodes are flagged.
    pub flagged_count: u64,
}

/// A manifest layer holding a service.
#[derive(Debug, Serialize)]
pub struct PublishedIn {
    /// `all`, `tag:T` or `node:N`.
    pub manifest: String,
    /// The version.
    pub sha256: Sha256,
    /// Whether nodes run it.
    pub enabled: bool,
}

/// One version running on nodes.
#[derive(Debug, Default, Serialize)]
pub struct Running {
    /// The version (`null`: not known, e.g. a service that never started).
    pub sha256: Option<String>,
    /// How many nodes run it.
    pub count: u64,
    /// Which (the first [`MAX_VERSION_NODES`] by id).
    pub nodes: Vec<String>,
}

/// A node that rolled back or refused a version.
#[derive(Debug, Serialize)]
pub struct Flagged {
    /// The node.
    pub node: String,
    /// `rolled-back` or `refused`.
    pub kind: EventKind,
    /// The version concerned.
    pub sha256: Sha256,
    /// When.
    pub at_ms: u64,
    /// What happened, in words.
    pub detail: String,
}

/// `GET /v1/admin/rollout`.
pub async fn rollout(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Json<Rollout>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let (running, troubles) = hub
        .store
        .read(|conn| Ok((read::running(conn)?, read::troubles(conn)?)))
        .await?;
    let config = hub.config.load();
    let mut services: BTreeMap<String, ServiceRollout> = BTreeMap::new();
    for (layer, entries) in busbar_base::sync::read(&hub.layers).iter() {
        for e in entries {
            slot(&mut services, &e.name).published.push(PublishedIn {
                manifest: layer.to_string(),
                sha256: e.sha256.clone(),
                enabled: e.enabled,
            });
        }
    }
    for (name, sha, node) in running {
        // Nodes taken out of hub.toml are not counted (their rows go at the next sample).
        if !config.nodes.contains_key(&node) {
            continue;
        }
        let versions = &mut slot(&mut services, &name).versions;
        if versions.last().is_none_or(|v| v.sha256 != sha) {
            versions.push(Running {
                sha256: sha,
                ..Running::default()
            });
        }
        if let Some(v) = versions.last_mut() {
            v.count += 1;
            if v.nodes.len() < MAX_VERSION_NODES {
                v.nodes.push(node);
            }
        }
    }
    for (node, e) in troubles {
        if !config.nodes.contains_key(&node) {
            continue;
        }
        let rollout = slot(&mut services, &e.service);
        rollout.flagged_count += 1;
        if rollout.flagged.len() < MAX_VERSION_NODES {
            rollout.flagged.push(Flagged {
                node,
                kind: e.kind,
                sha256: e.sha256,
                at_ms: e.at_ms,
                detail: e.detail,
            });
        }
    }
    Ok(Json(Rollout {
        services: services.into_values().collect(),
    }))
}

/// The rollout of service `name`, created empty when first met.
fn slot<'a>(
    services: &'a mut BTreeMap<String, ServiceRollout>,
    name: &str,
) -> &'a mut ServiceRollout {
    services
        .entry(name.to_owned())
        .or_insert_with(|| ServiceRollout {
            service: name.to_owned(),
            ..ServiceRollout::default()
        })
}

/// The query of `GET /v1/admin/entries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// The service.
    service: String,
}

/// One kept entry.
#[derive(Debug, Serialize)]
pub struct KeptEntry {
    /// When it was last published.
    pub published_ms: u64,
    /// The signed entry, as published.
    pub entry: FleetService,
}

/// `GET /v1/admin/entries?service=NAME`: the signed entries of the service the hub keeps,
/// newest first.
pub async fn entries(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<Vec<KeptEntry>>, HubApiError> {
    hub.authorize_admin(&headers)?;
    let Query(query) = query?;
    busbar_base::names::check_name(&query.service)
        .map_err(|e| HubApiError::bad_request(format!("service: {e}")))?;
    let kept = hub
        .store
        .read(move |conn| read::entries(conn, &query.service))
        .await?;
    Ok(Json(
        kept.into_iter()
            .map(|(published_ms, entry)| KeptEntry {
                published_ms,
                entry,
            })
            .collect(),
    ))
}
