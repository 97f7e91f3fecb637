//! `busbar call` and `busbar publish`: one JSON-RPC request to a service action.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use crate::admin::jsonrpc::{ErrorObject, RequestObject, V2};

use super::{Client, ConnectArgs};

/// `busbar call SERVICE ACTION`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The service.
    pub service: String,
    /// The action.
    pub action: String,
    /// Payload file: JSON, or CBOR when it ends in `.cbor`; `-` reads JSON from stdin.
    #[arg(long, short)]
    pub payload: Option<PathBuf>,
    /// How long to wait for the reply, e.g. `5s` or `500ms`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// How to reach the node.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `busbar publish SERVICE ACTION`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The service.
    pub service: String,
    /// The action.
    pub action: String,
    /// Payload file: JSON, or CBOR when it ends in `.cbor`; `-` reads JSON from stdin.
    #[arg(long, short)]
    pub payload: Option<PathBuf>,
    /// How to reach the node.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Reads a payload file as the JSON-RPC params: JSON, or CBOR (`.cbor`) turned into the same
/// JSON data. It must be an object or an array.
pub fn read_payload(path: &Path) -> anyhow::Result<Value> {
    let name = path.display();
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the payload from stdin")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("cannot read payload file {name}"))?
    };
    let cbor = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("cbor"));
    let value: Value = if cbor {
        let v: ciborium::Value = ciborium::from_reader(bytes.as_slice())
            .with_context(|| format!("payload file {name} is not valid CBOR"))?;
        serde_json::to_value(v)
            .with_context(|| format!("payload file {name}: this CBOR has no JSON form"))?
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("payload file {name} is not valid JSON"))?
    };
    anyhow::ensure!(
        value.is_object() || value.is_array(),
        "payload file {name}: the payload must be a JSON object or array"
    );
    Ok(value)
}

fn request(service: &str, action: &str, payload: Option<&Path>) -> anyhow::Result<RequestObject> {
    Ok(RequestObject {
        jsonrpc: V2,
        id: Some(Value::from(1)),
        method: format!("{service}/{action}"),
        params: payload.map(read_payload).transpose()?,
    })
}

impl Client {
    /// Sends a JSON-RPC request; prints the response with `--json`; a JSON-RPC error becomes
    /// the failure (and exit code) it stands for.
    async fn post_rpc(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp: Value = self.send(req).await?.json().await?;
        if self.json {
            println!("{resp:#}");
        }
        if let Some(error) = resp.get("error") {
            let error =
                serde_json::from_value::<ErrorObject>(error.clone()).unwrap_or(ErrorObject {
                    code: -32000,
                    message: "unknown error".into(),
                    data: None,
                });
            return Err(super::exit::rpc_failure(&error).into());
        }
        Ok(resp)
    }
}

/// `busbar call`: prints the reply (JSON pretty-printed, text as it is).
pub async fn call(args: &CallArgs) -> anyhow::Result<()> {
    let req = request(&args.service, &args.action, args.payload.as_deref())?;
    let client = Client::connect(&args.connect)?;
    let ms = args.timeout.as_millis().to_string();
    let resp = client
        .post_rpc(
            client
                .request(reqwest::Method::POST, "/rpc")
                .query(&[("timeout_ms", ms)])
                .json(&req),
        )
        .await?;
    if !client.json {
        match &resp["result"] {
            Value::Null => {}
            Value::String(s) => println!("{s}"),
            other => println!("{other:#}"),
        }
    }
    Ok(())
}

/// `busbar publish`: hands the message to the node and returns without waiting for the
/// service; prints the job to follow it with.
pub async fn publish(args: &PublishArgs) -> anyhow::Result<()> {
    let req = request(&args.service, &args.action, args.payload.as_deref())?;
    let client = Client::connect(&args.connect)?;
    let resp = client
        .post_rpc(
            client
                .request(reqwest::Method::POST, "/rpc")
                .header("Prefer", "respond-async")
                .json(&req),
        )
        .await?;
    if !client.json {
        println!(
            "published to {}/{}: job {} ({})",
            args.service,
            args.action,
            resp["job"].as_str().unwrap_or("?"),
            resp["href"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
