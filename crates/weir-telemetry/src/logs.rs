//! Logging setup: `tracing` events on standard error, as text (default) or one JSON object per
//! line, with levels from `WEIR_LOG`.
//!
//! A JSON line holds `time` (RFC 3339, UTC), `level` (`error` .. `trace`), `target`,
//! `message`, the event's own fields, and the fields of every span the event happened in
//! (`pipeline`, `operator`, `request_id`, ...), innermost winning:
//!
//! ```text
//! {"checkpoint":3,"level":"info","message":"checkpoint completed","pipeline":"orders","seconds":0.004,"target":"weir_core::checkpoint","time":"2026-12-03T14:02:11.412Z"}
//! ```

use crate::TelemetryError;
use std::fmt;
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// The environment variable with the level filter (`info`, `weir_pipeline=debug,warn`).
pub const LOG_ENV: &str = "WEIR_LOG";
/// The environment variable that chooses the format (`text` or `json`).
pub const FORMAT_ENV: &str = "WEIR_LOG_FORMAT";

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::LogFormat(s.to_string())),
        }
    }
}

impl LogFormat {
    /// The format `WEIR_LOG_FORMAT` asks for, if set.
    pub fn from_env() -> Result<Option<LogFormat>, TelemetryError> {
        match std::env::var(FORMAT_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }
}

/// The filter: `WEIR_LOG` when set, else `default` (e.g. `info`).
fn filter(default: &str) -> Result<EnvFilter, TelemetryError> {
    let text = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_string(),
    };
    EnvFilter::try_new(&text).map_err(|e| TelemetryError::LogFilter {
        filter: text.clone(),
        message: e.to_string(),
    })
}

/// A subscriber writing to `writer` in `format`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + Clone + 'static,
{
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_ansi(ansi)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
}

/// Sets up logging for the process: events on standard error in `format`, levels from
/// `WEIR_LOG` (else `default_filter`). Fails on a bad filter or if logging was set up before.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), TelemetryError> {
    let filter = filter(default_filter)?;
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr, ansi))
        .map_err(|_| TelemetryError::LogsAlreadySet)
}

/// Formats an event as one JSON object on one line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = serde_json::Map::new();
        // Span fields first (outermost to innermost), then the event's own.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_str::<serde_json::Value>(&fields.fields)
                {
                    line.extend(map);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let meta = event.metadata();
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert(
            "level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("target".into(), meta.target().into());
        line.entry("message").or_insert_with(|| "".into());
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn capture(format: LogFormat, filter: &str, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sub = subscriber(
            format,
            EnvFilter::try_new(filter).unwrap(),
            buffer.clone(),
            false,
        );
        tracing::subscriber::with_default(sub, log);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_level_message_time_and_span_context() {
        let out = capture(LogFormat::Json, "info", || {
            let pipeline = tracing::info_span!("pipeline", pipeline = "orders");
            let _p = pipeline.enter();
            let request = tracing::info_span!("request", request_id = "r-42");
            let _r = request.enter();
            tracing::info!(checkpoint = 3u64, "checkpoint completed");
            tracing::debug!("filtered out at info");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["message"], "checkpoint completed");
        assert_eq!(v["pipeline"], "orders");
        assert_eq!(v["request_id"], "r-42");
        assert_eq!(v["checkpoint"], 3);
        let time = v["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "time {time}"
        );
    }

    #[test]
    fn the_filter_sets_levels_per_target() {
        let out = capture(LogFormat::Json, "warn,weir_pipeline=debug", || {
            tracing::debug!(target: "weir_pipeline", "kept");
            tracing::info!(target: "weir_core", "dropped");
            tracing::warn!(target: "weir_core", "kept too");
        });
        let messages: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
            .collect();
        assert_eq!(messages, vec!["\"kept\"", "\"kept too\""]);
    }

    #[test]
    fn text_is_the_default_and_formats_parse() {
        assert_eq!(LogFormat::default(), LogFormat::Text);
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!(matches!(
            "xml".parse::<LogFormat>(),
            Err(TelemetryError::LogFormat(_))
        ));
        let out = capture(LogFormat::Text, "info", || {
            let span = tracing::info_span!("pipeline", pipeline = "orders");
            let _e = span.enter();
            tracing::info!("started");
        });
        assert!(out.contains("pipeline{pipeline=\"orders\"}"), "{out}");
        assert!(out.contains("started"), "{out}");
        assert!(!out.trim_start().starts_with('{'), "{out}");
    }
}
