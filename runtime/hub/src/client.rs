//! The admin side of the hub's API, for `busbar hub publish`, `remove`, `nodes`, `logs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::bounds::escape_line;
use anyhow::Context as _;
use clap::Args;

use crate::protocol::{
    self, FleetService, NodeRecord, Publish, Published, Remove, SIGNATURE_HEADER,
};

/// How to reach a hub as an admin.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The hub's base URL, e.g. http://127.0.0.1:8440.
    #[arg(long, env = "BUSBAR_HUB_URL")]
    pub hub: String,
    /// The admin token (`busbar hub init` printed it).
    #[arg(long, env = "BUSBAR_HUB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `busbar hub publish`.
#[derive(Debug, Args)]
pub struct HubPublishArgs {
    /// How to reach the hub.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The secret signing key (as `busbar hub keygen` wrote it).
    #[arg(long)]
    pub key: PathBuf,
    /// The service's name on the bus.
    #[arg(long)]
    pub service: String,
    /// The component (.wasm).
    #[arg(long)]
    pub component: PathBuf,
    /// Publish to this node (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Publish to nodes with this tag (repeatable). No --node and no --tag: every node.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A configuration property, key=value; the value is JSON when it parses as JSON, else
    /// a string (repeatable).
    #[arg(long = "config", value_parser = parse_property)]
    pub config: Vec<(String, serde_json::Value)>,
    /// Publish it disabled: nodes keep it but do not run it.
    #[arg(long)]
    pub disabled: bool,
    /// Its sandbox limits, as the JSON of a manifest's `limits`, e.g.
    /// '{"mailbox": 1024, "deadline_ms": 500}'.
    #[arg(long, value_parser = parse_json::<busbar_base::limits::Limits>)]
    pub limits: Option<busbar_base::limits::Limits>,
    /// Its grants, as the JSON of a manifest's `grants`, e.g.
    /// '{"destinations": ["seq-receiver"]}'.
    #[arg(long, value_parser = parse_json::<busbar_base::grants::Grants>)]
    pub grants: Option<busbar_base::grants::Grants>,
}

/// Parses a JSON argument into `T`, naming what is wrong.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid: {e}"))
}

/// `busbar hub remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// How to reach the hub.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The service's name.
    #[arg(long)]
    pub service: String,
    /// Remove it from this node's own manifest (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Remove it from this tag's manifest (repeatable). No --node and no --tag: from the
    /// manifest of every node.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

/// Parses `key=value`; the value is JSON when it parses, else a string.
fn parse_property(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected key=value"))?;
    if key.is_empty() {
        return Err(format!("`{text}`: the key is empty"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((key.into(), value))
}

/// A connection to a hub's admin API.
#[derive(Debug)]
struct HubClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl HubClient {
    /// A client for the hub of `args`.
    fn new(args: &AdminArgs) -> Self {
        Self {
            http: busbar_base::net::http_client(),
            url: args.hub.trim_end_matches('/').to_owned(),
            token: args.token.trim().to_owned(),
        }
    }

    /// A request to `path` with the admin token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; an error answer becomes its `error` text.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        busbar_base::command::send_checked(req, "the hub", &self.url, "").await
    }
}

/// `busbar hub publish`: upload the component with its signature, then publish it.
pub async fn publish(args: &HubPublishArgs) -> anyhow::Result<()> {
    busbar_base::names::check_name(&args.service).map_err(|e| anyhow::anyhow!("--service: {e}"))?;
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read secret key {}", args.key.display()))?;
    let key = protocol::parse_secret_key(&key_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    let wasm = std::fs::read(&args.component)
        .with_context(|| format!("cannot read component {}", args.component.display()))?;
    let digest = busbar_base::digest::Sha256::of(&wasm);
    let sha = digest.to_string();
    let size = wasm.len() as u64;
    let mut service = FleetService {
        name: args.service.clone(),
        sha256: digest.clone(),
        size,
        signature: String::new(),
        enabled: !args.disabled,
        config: args.config.iter().cloned().collect::<BTreeMap<_, _>>(),
        limits: args.limits.clone().unwrap_or_default(),
        grants: args.grants.clone().unwrap_or_default(),
    };
    // Refused here with the words the hub and the nodes would use.
    service
        .check()
        .map_err(|e| anyhow::anyhow!("service {e}"))?;
    // The whole entry is signed here, on the publisher's machine: the hub cannot change it.
    protocol::sign_entry(&key, &mut service);
    let signature = protocol::sign(&key, &sha);
    let hub = HubClient::new(&args.admin);
    hub.send(
        hub.request(reqwest::Method::PUT, &format!("/v1/admin/blobs/{sha}"))
            .header(SIGNATURE_HEADER, &signature)
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(wasm),
    )
    .await?;
    let publish = Publish {
        service,
        nodes: args.nodes.clone(),
        tags: args.tags.clone(),
    };
    let published: Published = hub
        .send(
            hub.request(reqwest::Method::POST, "/v1/admin/publish")
                .json(&publish),
        )
        .await?
        .json()
        .await
        .context("the hub's answer to the publish is not JSON")?;
    println!(
        "published {} {} to {}",
        args.service,
        digest.short(),
        published.manifests.join(", ")
    );
    Ok(())
}

/// `busbar hub remove`.
pub async fn remove(args: &RemoveArgs) -> anyhow::Result<()> {
    let hub = HubClient::new(&args.admin);
    let remove = Remove {
        service: args.service.clone(),
        nodes: args.nodes.clone(),
        tags: args.tags.clone(),
    };
    let removed: Published = hub
        .send(
            hub.request(reqwest::Method::POST, "/v1/admin/remove")
                .json(&remove),
        )
        .await?
        .json()
        .await
        .context("the hub's answer to the removal is not JSON")?;
    println!(
        "removed {} from {}",
        args.service,
        removed.manifests.join(", ")
    );
    Ok(())
}

/// `busbar hub nodes`: a table of the nodes, then their last events.
pub async fn nodes(args: &AdminArgs) -> anyhow::Result<()> {
    let hub = HubClient::new(args);
    let records: Vec<NodeRecord> = hub
        .send(hub.request(reqwest::Method::GET, "/v1/admin/nodes"))
        .await?
        .json()
        .await
        .context("the hub's node list is not JSON")?;
    let now = busbar_base::time::unix_ms();
    println!(
        "{:<20} {:<12} {:<28} {:<10} {:>6}  SERVICES",
        "NODE", "LAST SEEN", "TARGET", "VERSION", "EVENTS"
    );
    for r in &records {
        let seen = match r.last_seen_ms {
            Some(ms) => format!("{} s ago", now.saturating_sub(ms) / 1000),
            None => "never".into(),
        };
        let seen = if r.revoked {
            format!("{seen} (revoked)")
        } else {
            seen
        };
        let identity = r.identity.as_ref();
        let services = r.status.as_ref().map_or_else(String::new, |s| {
            s.services
                .iter()
                .map(|s| {
                    let sha = s.sha256.as_ref().map_or("-", |d| d.short());
                    format!("{}@{sha} {}", escape_line(&s.name), escape_line(&s.state))
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "{:<20} {:<12} {:<28} {:<10} {:>6}  {services}",
            r.node_id,
            seen,
            identity.map_or("-", |i| i.target.as_str()),
            identity.map_or("-", |i| i.runtime_version.as_str()),
            r.events.len(),
        );
    }
    let mut events: Vec<_> = records
        .iter()
        .flat_map(|r| r.events.iter().map(move |e| (r.node_id.as_str(), e)))
        .collect();
    events.sort_by_key(|(_, e)| e.at_ms);
    let last = &events[events.len().saturating_sub(10)..];
    if !last.is_empty() {
        println!("\nlast events:");
        for (node, e) in last {
            println!(
                "{} {node:<20} {:<12} {:<20} {} {}",
                busbar_base::command::clock(e.at_ms),
                e.kind,
                escape_line(&e.service),
                e.sha256.short(),
                escape_line(&e.detail)
            );
        }
    }
    Ok(())
}

/// `busbar hub logs NODE`: the node's forwarded log lines.
pub async fn logs(args: &AdminArgs, node: &str) -> anyhow::Result<()> {
    let hub = HubClient::new(args);
    let text = hub
        .send(hub.request(
            reqwest::Method::GET,
            &format!("/v1/admin/nodes/{node}/logs"),
        ))
        .await?
        .text()
        .await
        .context("cannot read the hub's answer")?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_json_when_they_parse() {
        assert_eq!(
            parse_property("n=3").unwrap(),
            ("n".into(), serde_json::json!(3))
        );
        assert_eq!(
            parse_property("s=hello world").unwrap(),
            ("s".into(), serde_json::json!("hello world"))
        );
        assert_eq!(
            parse_property("o={\"a\":true}").unwrap().1,
            serde_json::json!({"a": true})
        );
        assert!(parse_property("novalue").is_err());
    }
}
