//! The tracing subscriber the `busbar` binary installs (the library never installs one).

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::observe::LogLayer;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the subscriber: stderr, filtered by `BUSBAR_LOG` (default `info`), and a copy
/// of every line for the admin API (`busbar logs`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("BUSBAR_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let console = match format {
        LogFormat::Text => console.boxed(),
        LogFormat::Json => console.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(LogLayer)
        .init();
}
