//! The embedded Com: every message towards the hub as one JSON line, on stdout or in a file.

use anyhow::Context as _;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::{ComConfig, ComLink};
use crate::bus::{Bus, Delivery};
use crate::message::{BusError, ErrorCode};

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
        tracing::warn!(from = %d.msg.source, error = %e, "message to Com refused");
        bus.finish(super::COM, d, began.elapsed(), Err(e));
        return;
    }
    let mut line = crate::message::message_json(&d.msg).to_string();
    line.push('\n');
    let written = out.write_all(line.as_bytes()).await;
    if let Err(e) = &written {
        tracing::error!(id = %d.msg.id, error = %e, "Com could not write a message");
    }
    let result = written.map_err(|e| BusError::new(ErrorCode::Other, format!("Com: {e}")));
    bus.finish(super::COM, d, began.elapsed(), result.map(|()| None));
}

async fn flush(out: &mut Out) {
    if let Err(e) = out.flush().await {
        tracing::error!(error = %e, "Com could not flush its output");
    }
}
