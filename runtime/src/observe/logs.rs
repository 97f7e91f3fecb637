//! The node's log lines kept for operators: the last lines in memory and a live feed, filled
//! by a `tracing` layer that the binary installs beside its console output.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::Tap;

/// Lines kept for `busbar logs` without `--follow`.
const HISTORY: usize = 1000;

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was logged (ms since the Unix epoch).
    pub ts_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: LogLevel,
    /// The service it is about (from the line or its span), if any.
    pub service: Option<String>,
    /// The message.
    pub message: String,
    /// The other fields, rendered as text.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// How severe a log line is; more verbose levels are greater (`ERROR` < `TRACE`). Shown and
/// sent as JSON in capitals, parsed from the query of `GET /events` in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// `ERROR`.
    Error,
    /// `WARN`.
    Warn,
    /// `INFO`.
    Info,
    /// `DEBUG`.
    Debug,
    /// `TRACE`.
    Trace,
}

impl LogLevel {
    /// The level's name, e.g. `INFO`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<tracing::Level> for LogLevel {
    fn from(l: tracing::Level) -> Self {
        match l {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::TRACE => LogLevel::Trace,
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<tracing::Level>()
            .map(LogLevel::from)
            .map_err(|_| format!("unknown level `{s}` (error, warn, info, debug, trace)"))
    }
}

/// The recent lines and the live feed.
#[derive(Debug)]
pub struct LogHub {
    recent: Mutex<VecDeque<Arc<LogLine>>>,
    live: Tap<Arc<LogLine>>,
}

impl LogHub {
    fn new() -> Self {
        Self {
            recent: Mutex::new(VecDeque::with_capacity(HISTORY)),
            live: Tap::new(1024),
        }
    }

    /// Keeps `line` and hands it to the watchers.
    pub fn push(&self, line: LogLine) {
        let line = Arc::new(line);
        let mut recent = busbar_base::sync::lock(&self.recent);
        if recent.len() == HISTORY {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        // Under the lock, like `follow`: a watcher sees each line once, in the history or live.
        self.live.emit(|| line);
    }

    /// The kept lines, oldest first, and a feed of the lines that come after them.
    pub fn follow(&self) -> (Vec<Arc<LogLine>>, super::TapReceiver<Arc<LogLine>>) {
        let recent = busbar_base::sync::lock(&self.recent);
        // Subscribing under the lock: no line falls between the history and the feed.
        let feed = self.live.subscribe();
        (recent.iter().cloned().collect(), feed)
    }
}

/// The process-wide hub the [`LogLayer`] fills.
pub fn log_hub() -> &'static LogHub {
    static HUB: OnceLock<LogHub> = OnceLock::new();
    HUB.get_or_init(LogHub::new)
}

/// A `tracing` layer that copies every event into [`log_hub`].
#[derive(Debug, Default)]
pub struct LogLayer;

/// The `service` field of a span, kept in its extensions.
struct SpanService(String);

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(service), Some(span)) = (fields.service, ctx.span(id)) {
            span.extensions_mut().insert(SpanService(service));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let service = fields.service.or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanService>().map(|s| s.0.clone()))
        });
        log_hub().push(LogLine {
            ts_ms: super::unix_ms(),
            level: LogLevel::from(*event.metadata().level()),
            service,
            message: fields.message,
            fields: fields.rest,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    service: Option<String>,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        match (field.name(), value) {
            ("message", serde_json::Value::String(s)) => self.message = s,
            ("service", serde_json::Value::String(s)) => self.service = Some(s),
            (name, value) => {
                self.rest.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, text.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}
