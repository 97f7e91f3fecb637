//! The embedded Com: every message towards the hub as one JSON line, on stdout or in a file.

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::{ComConfig, ComLink};
use crate::bus::{Bus, Delivery};
use crate::message::{BusError, ErrorCode, Message};

type Out = BufWriter<Box<dyn AsyncWrite + Unpin + Send>>;

pub(super) async fn open(config: &ComConfig) -> anyhow::Result<Out> {
    let w: Box<dyn AsyncWrite + Unpin + Send> = match config {
        ComConfig::Console | ComConfig::Mqtt(_) | ComConfig::AzureIotHub(_) => {
            Box::new(tokio::io::stdout())
        }
        ComConfig::File { path } => Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .with_context(|| format!("opening the Com output file {}", path.display()))?,
        ),
    };
    Ok(BufWriter::new(w))
}

/// Writes lines until cancelled, then drains what is left. Flushes whenever the inbox is
/// momentarily empty, so lines appear promptly without a write per message under load.
pub(super) async fn run(mut out: Out, mut link: ComLink) {
    loop {
        let d = tokio::select! {
            biased;
            d = link.inbox.recv() => d,
            () = link.cancel.cancelled() => break,
        };
        let Some(d) = d else { break };
        write(&mut out, &link.bus, d).await;
        while let Ok(d) = link.inbox.try_recv() {
            write(&mut out, &link.bus, d).await;
        }
        flush(&mut out).await;
    }
    link.inbox.close();
    while let Some(d) = link.inbox.recv().await {
        write(&mut out, &link.bus, d).await;
    }
    flush(&mut out).await;
}

async fn write(out: &mut Out, bus: &Bus, d: Delivery) {
    let began = std::time::Instant::now();
    if let Err(e) = super::check_action(&d.msg) {
        let msg = d.msg.clone();
        bus.processed(&msg, d.is_call(), began.elapsed(), Err(&e));
        if let Some(Err(e)) = d.answer(Err(e)) {
            tracing::warn!(from = %msg.source, error = %e, "message to Com refused");
        }
        return;
    }
    let mut line = to_json(&d.msg).to_string();
    line.push('\n');
    let written = out.write_all(line.as_bytes()).await;
    if let Err(e) = &written {
        tracing::error!(id = %d.msg.id, error = %e, "Com could not write a message");
    }
    let result = written.map_err(|e| BusError::new(ErrorCode::Other, format!("Com: {e}")));
    bus.processed(
        &d.msg,
        d.is_call(),
        began.elapsed(),
        result.as_ref().copied(),
    );
    d.answer(result.map(|()| None));
}

async fn flush(out: &mut Out) {
    if let Err(e) = out.flush().await {
        tracing::error!(error = %e, "Com could not flush its output");
    }
}

/// The JSON form of a message towards the hub. A JSON payload is embedded as JSON, UTF-8 text
/// as a string, anything else as base64 under `payload_base64`.
pub fn to_json(msg: &Message) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(msg.id));
    o.insert("source".into(), json!(msg.source));
    o.insert("content_type".into(), json!(msg.content_type));
    if let Some(c) = &msg.correlation_id {
        o.insert("correlation_id".into(), json!(c));
    }
    if !msg.headers.is_empty() {
        let headers: Map<String, Value> = msg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o.insert("headers".into(), Value::Object(headers));
    }
    o.insert("ts_ms".into(), json!(crate::observe::unix_ms()));
    let parsed = msg
        .content_type
        .contains("json")
        .then(|| serde_json::from_slice::<Value>(&msg.payload).ok())
        .flatten();
    match (parsed, std::str::from_utf8(&msg.payload)) {
        (Some(v), _) => o.insert("payload".into(), v),
        (None, Ok(text)) => o.insert("payload".into(), json!(text)),
        (None, Err(_)) => o.insert(
            "payload_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&msg.payload)),
        ),
    };
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::com::{COM, COM_SUBMIT};
    use crate::message::new_message;

    #[test]
    fn json_payload_is_embedded_text_is_a_string_binary_is_base64() {
        let mut m = new_message(
            "1".into(),
            "s",
            COM,
            COM_SUBMIT,
            "application/json",
            br#"{"t":1}"#.to_vec(),
        );
        m.headers.push(("kind".into(), "alert".into()));
        let v = to_json(&m);
        assert_eq!(v["payload"]["t"], 1);
        assert_eq!(v["headers"]["kind"], "alert");
        assert_eq!(v["source"], "s");
        m.content_type = "text/plain".into();
        assert_eq!(to_json(&m)["payload"], r#"{"t":1}"#);
        m.payload = vec![0xff, 0x00];
        assert_eq!(to_json(&m)["payload_base64"], "/wA=");
    }
}
