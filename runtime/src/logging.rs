//! The tracing subscriber the `busbar` binary installs (the library never installs one).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
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

/// When a log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogRotation {
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    Daily,
    /// One file, never rotated.
    Never,
}

/// Where log lines go: stderr, or files rotated by time with the oldest deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOutput {
    /// Text or JSON.
    pub format: LogFormat,
    /// Write to `FILE.YYYY-MM-DD[-HH]` next to this path instead of stderr.
    pub file: Option<PathBuf>,
    /// How often a new file starts.
    pub rotation: LogRotation,
    /// How many rotated files to keep.
    pub keep: usize,
}

/// Installs the subscriber, filtered by `BUSBAR_LOG` (default `info`), plus a copy of every
/// line for the admin API (`busbar logs`). Keep the returned guard alive until exit: it
/// flushes the file writer.
pub fn init(out: &LogOutput) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_from_env("BUSBAR_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let (writer, guard, ansi) = match &out.file {
        None => (
            BoxMakeWriter::new(std::io::stderr),
            None,
            std::io::stderr().is_terminal(),
        ),
        Some(path) => {
            let (w, g) = tracing_appender::non_blocking(rolling_file(path, out)?);
            (BoxMakeWriter::new(w), Some(g), false)
        }
    };
    let console = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let console = match out.format {
        LogFormat::Text => console.boxed(),
        LogFormat::Json => console.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(LogLayer)
        .init();
    Ok(guard)
}

fn rolling_file(path: &Path, out: &LogOutput) -> anyhow::Result<RollingFileAppender> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("log file {}: needs a file name", path.display()))?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("log file {}: cannot create its folder", path.display()))?;
    let builder = RollingFileAppender::builder().filename_prefix(name);
    let builder = match out.rotation {
        LogRotation::Hourly => builder.rotation(Rotation::HOURLY),
        LogRotation::Daily => builder.rotation(Rotation::DAILY),
        LogRotation::Never => builder.rotation(Rotation::NEVER),
    };
    let builder = if out.rotation == LogRotation::Never {
        builder
    } else {
        builder.max_log_files(out.keep.max(1))
    };
    builder
        .build(dir)
        .with_context(|| format!("log file {}: cannot open it", path.display()))
}
