//! `busbar logs` and `busbar monitor`: readers of the node's event stream.

use clap::Args;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;

use super::{Client, ConnectArgs, clock};
use crate::observe::{LogLine, Traffic};

/// `busbar logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only lines about this service.
    #[arg(long, short)]
    pub service: Option<String>,
    /// Only lines at this level or more severe (error, warn, info, debug, trace).
    #[arg(long, short)]
    pub level: Option<String>,
    /// Keep printing new lines as they come.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the kept lines to print first.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub lines: usize,
    /// How to reach the node.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `busbar monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Only messages from or to this service.
    #[arg(long, short)]
    pub service: Option<String>,
    /// Only actions matching this pattern (`*` and `?` wildcards).
    #[arg(long, short)]
    pub action: Option<String>,
    /// How to reach the node.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Reads `/events` with `query` and hands each (kind, data) to `each` until the stream ends
/// or stdout is closed (`| head`), which `each` reports as an error.
async fn stream(
    client: &Client,
    query: &[(&str, String)],
    mut each: impl FnMut(&str, &str) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let resp = client
        .send(client.request(reqwest::Method::GET, "/events").query(query))
        .await?;
    let mut events = resp.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| anyhow::anyhow!("the event stream broke: {e}"))?;
        if each(&ev.event, &ev.data).is_err() {
            break;
        }
    }
    Ok(())
}

/// Prints one line; fails when stdout is gone.
fn out(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}")
}

/// Prints events of `kind` (as JSON with `--json`, else through `render`) and says on stderr
/// when the reader fell behind.
fn printer<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    json: bool,
    render: fn(&T) -> String,
) -> impl FnMut(&str, &str) -> std::io::Result<()> {
    move |got, data| match got {
        "lagged" => {
            eprintln!("(fell behind; skipped: {data})");
            Ok(())
        }
        k if k != kind => Ok(()),
        _ if json => out(data),
        _ => match serde_json::from_str::<T>(data) {
            Ok(event) => out(&render(&event)),
            Err(_) => out(data),
        },
    }
}

/// `busbar logs`.
pub async fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.connect)?;
    let mut query = vec![
        ("kinds", "log".to_owned()),
        ("history", args.lines.to_string()),
        ("follow", args.follow.to_string()),
    ];
    query.extend(args.service.clone().map(|s| ("service", s)));
    query.extend(args.level.clone().map(|l| ("level", l)));
    stream(&client, &query, printer("log", client.json, render_line)).await
}

fn render_line(line: &LogLine) -> String {
    let mut out = format!("{} {:>5} ", clock(line.ts_ms), line.level);
    if let Some(s) = &line.service {
        out.push_str(s);
        out.push_str(": ");
    }
    out.push_str(&line.message);
    for (k, v) in &line.fields {
        match v {
            serde_json::Value::String(s) => out.push_str(&format!(" {k}={s}")),
            other => out.push_str(&format!(" {k}={other}")),
        }
    }
    out
}

/// `busbar monitor`: one line per message, until interrupted.
pub async fn monitor(args: &MonitorArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.connect)?;
    let mut query = vec![("kinds", "message".to_owned())];
    query.extend(args.service.clone().map(|s| ("service", s)));
    query.extend(args.action.clone().map(|a| ("action", a)));
    stream(
        &client,
        &query,
        printer("message", client.json, render_traffic),
    )
    .await
}

fn render_traffic(t: &Traffic) -> String {
    let latency = t
        .latency_us
        .map_or_else(|| "-".to_owned(), |us| format!("{us} µs"));
    let outcome = match &t.error {
        Some(e) => format!("{}: {e}", t.outcome),
        None => t.outcome.to_string(),
    };
    format!(
        "{} {} → {}:{} {} {} B {latency} {outcome}",
        clock(t.ts_ms),
        t.source,
        t.destination,
        t.action,
        t.kind,
        t.size
    )
}
