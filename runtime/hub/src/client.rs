//! The admin side of the hub's API, for `busbar hub remove`, `nodes`, `logs` (and
//! [`super::publish`]).

use crate::bounds::escape_line;
use anyhow::Context as _;
use clap::Args;

use crate::protocol::{NodeRecord, Published, Remove};

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

/// A connection to a hub's admin API.
#[derive(Debug)]
pub(crate) struct HubClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl HubClient {
    /// A client for the hub of `args`.
    pub(crate) fn new(args: &AdminArgs) -> Self {
        Self {
            http: busbar_base::net::http_client(),
            url: args.hub.trim_end_matches('/').to_owned(),
            token: args.token.trim().to_owned(),
        }
    }

    /// A request to `path` with the admin token.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; an error answer becomes its `error` text.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        busbar_base::command::send_checked(req, "the hub", &self.url, "").await
    }
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
    // Page by page (the hub sends at most 2,000 nodes a page), each with its last 10 events.
    let mut records: Vec<NodeRecord> = Vec::new();
    let mut after = String::new();
    loop {
        let response = hub
            .send(
                hub.request(reqwest::Method::GET, "/v1/admin/nodes")
                    .query(&[("limit", "2000"), ("events", "10"), ("after", &after)]),
            )
            .await?;
        let next = response
            .headers()
            .get(crate::views::NEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page: Vec<NodeRecord> = response
            .json()
            .await
            .context("the hub's node list is not JSON")?;
        records.extend(page);
        match next {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    let now = busbar_base::time::unix_ms();
    println!(
        "{:<20} {:<20} {:<28} {:<10} {:<30} {:>6}  SERVICES",
        "NODE", "LAST SEEN", "TARGET", "VERSION", "ENGINE", "EVENTS"
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
        let engine = identity.and_then(|i| i.engine.as_ref()).map_or_else(
            || "-".to_owned(),
            |e| {
                let compiler = if e.compiler { "" } else { " (no compiler)" };
                format!("{}{compiler}", e.fingerprint)
            },
        );
        println!(
            "{:<20} {:<20} {:<28} {:<10} {:<30} {:>6}  {services}",
            r.node_id,
            seen,
            identity.map_or("-", |i| i.target.as_str()),
            identity.map_or("-", |i| i.runtime_version.as_str()),
            engine,
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
