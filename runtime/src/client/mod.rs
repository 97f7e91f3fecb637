//! The operator commands (`busbar status`, `logs`, `monitor`, `publish`, `call`): clients of
//! a running node's admin API.
//!
//! They find the node the way an operator on the gateway expects: `--url` / `BUSBAR_URL`,
//! else the URL the node wrote to its data dir, else `admin.listen` of `--config`; and the
//! token from `--token` / `BUSBAR_TOKEN`, else the node's local token file.

mod events;
mod exit;
mod rpc;

use std::path::{Path, PathBuf};

use clap::Args;

pub use busbar_base::command::{clock, send_checked};
pub use events::{LogsArgs, MonitorArgs, logs, monitor};
pub use exit::{Failure, exit_code};
pub use rpc::{CallArgs, PublishArgs, call, publish, read_payload};

use crate::admin::{TOKEN_FILE, URL_FILE};
use crate::config::NodeConfig;

/// How to reach the node.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The admin API's base URL (default: the one the node wrote to its data dir).
    #[arg(long, env = "BUSBAR_URL")]
    pub url: Option<String>,
    /// Bearer token (default: the node's local token in its data dir).
    #[arg(long, env = "BUSBAR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The node's data dir.
    #[arg(long, env = "BUSBAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's config file (for its data dir and admin.listen).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A connection to one node's admin API.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    /// Whether to print JSON.
    pub json: bool,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Client {
    /// Resolves the URL and token from the arguments, the environment and the data dir.
    pub fn connect(args: &ConnectArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(p) => NodeConfig::load(p)?,
            None => NodeConfig::default(),
        };
        if let Some(dir) = &args.data_dir {
            config.data_dir = Some(dir.clone());
        }
        let dir = config.data_dir();
        let url = args
            .url
            .clone()
            .or_else(|| read_trimmed(&dir.join(URL_FILE)))
            .unwrap_or_else(|| format!("http://{}", config.admin.listen));
        let token = args
            .token
            .clone()
            .or_else(|| read_trimmed(&dir.join(TOKEN_FILE)))
            .ok_or_else(|| {
                Failure::unauthorized(format!(
                    "no admin token: pass --token or set BUSBAR_TOKEN (a running node writes \
                     one to {})",
                    dir.join(TOKEN_FILE).display()
                ))
            })?;
        Ok(Self {
            http: busbar_base::net::http_client(),
            url: url.trim_end_matches('/').to_owned(),
            token,
            json: args.json,
        })
    }

    /// A request to `path` with the token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; maps no connection and refused tokens to their exit codes.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        send_checked(req, "the node", &self.url, " (is it running?)").await
    }

    /// `GET path` as JSON.
    async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        Ok(resp.json().await?)
    }
}

/// `busbar status`.
pub async fn status(args: &ConnectArgs) -> anyhow::Result<()> {
    let client = Client::connect(args)?;
    let status = client.get_json("/status").await?;
    if client.json {
        println!("{status:#}");
        return Ok(());
    }
    let engine = &status["engine"];
    println!(
        "node {} (busbar {}, {}, engine {}{}), up {} s",
        status["node_id"].as_str().unwrap_or("?"),
        status["version"].as_str().unwrap_or("?"),
        status["target"].as_str().unwrap_or("?"),
        engine["fingerprint"].as_str().unwrap_or("?"),
        if engine["compiler"] == false {
            ", no compiler"
        } else {
            ""
        },
        status["uptime_s"]
    );
    println!(
        "{:<24} {:<10} {:>8} {:>10} {:>8} {:>8} {:>8}  {:<12}  {:<11}  LAST FAULT",
        "SERVICE", "STATE", "RESTARTS", "PROCESSED", "FAILED", "SENT", "DROPPED", "SHA256", "CODE"
    );
    for s in status["services"].as_array().into_iter().flatten() {
        let c = &s["counters"];
        let sha = s["sha256"].as_str().unwrap_or("-");
        println!(
            "{:<24} {:<10} {:>8} {:>10} {:>8} {:>8} {:>8}  {:<12}  {:<11}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["restarts"].to_string(),
            c["processed"].to_string(),
            c["failed"].to_string(),
            c["sent"].to_string(),
            c["refused"].to_string(),
            sha.chars().take(12).collect::<String>(),
            s["code"].as_str().unwrap_or("-"),
            s["last_fault"].as_str().unwrap_or("")
        );
    }
    print_brokers(&status["brokers"]);
    print_fabric(&status["fabric"]);
    Ok(())
}

/// The FABRIC table of `busbar status`, when the node is on a fabric: one line per node or
/// group it sent to or heard from.
fn print_fabric(fabric: &serde_json::Value) {
    if !fabric.is_object() {
        return;
    }
    println!(
        "\nfabric: served {} requests from other nodes ({} seen twice, {} while busy); {} \
         sends not yet processed there, {} calls waiting",
        fabric["served"],
        fabric["duplicates"],
        fabric["busy"],
        fabric["outbox"],
        fabric["calls_waiting"]
    );
    let Some(peers) = fabric["peers"].as_object().filter(|p| !p.is_empty()) else {
        return;
    };
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "PEER", "SENT", "RESENT", "FAILED"
    );
    for (name, p) in peers {
        println!(
            "{:<24} {:>10} {:>10} {:>10}",
            name,
            p["sent"].to_string(),
            p["resent"].to_string(),
            p["failed"].to_string()
        );
    }
}

/// The BROKERS table of `busbar status`, when the node has broker connections.
fn print_brokers(brokers: &serde_json::Value) {
    let Some(brokers) = brokers.as_object().filter(|b| !b.is_empty()) else {
        return;
    };
    println!(
        "\n{:<16} {:<9} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "BROKER",
        "LINK",
        "SESSIONS",
        "FILTERS",
        "RECEIVED",
        "DELIVERED",
        "PUBLISHED",
        "OUTBOX",
        "DROPPED"
    );
    for (name, b) in brokers {
        let dropped: u64 = b["dropped"]
            .as_object()
            .map(|d| d.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0);
        println!(
            "{:<16} {:<9} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8}",
            name,
            if b["connected"] == true { "up" } else { "down" },
            b["sessions"].to_string(),
            b["filters"].to_string(),
            b["received"].to_string(),
            b["delivered"].to_string(),
            b["published"].to_string(),
            b["outbox_messages"].to_string(),
            dropped,
        );
    }
}
