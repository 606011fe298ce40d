//! Weir's telemetry: metrics exposition and logging setup.
//!
//! This crate owns the one metrics registry of a process ([`Metrics`]) and its Prometheus
//! (OpenMetrics text) exposition, the small `/metrics` server of a one-off run
//! ([`MetricsServer`]), and the logging setup ([`logs::init`]: text or JSON lines on standard
//! error, levels from `WEIR_LOG`).
//!
//! The runtime does not report into the registry: its per-operator-instance counters are
//! atomics updated once per batch (see [`weir_core::JobMetrics`]); a job is registered here
//! by handle and a collector reads those atomics when `/metrics` is scraped. The hot path pays
//! nothing for being observed. The metric names, types and labels are listed in
//! `docs/metrics.md`.
//!
//! ```
//! use weir_core::Environment;
//! use weir_telemetry::Metrics;
//!
//! let env = Environment::local();
//! let _out = env.from_iter(1..=5u64).map(|x| x * 2).collect();
//! let job = env.start().unwrap();
//! let metrics = Metrics::new();
//! metrics.register_job("doubler", job.metrics().clone());
//! job.wait().unwrap();
//! let text = metrics.render();
//! assert!(text.contains("weir_records_out_total{pipeline=\"doubler\""));
//! ```

pub mod logs;
mod metrics;
mod server;

pub use metrics::{CONTENT_TYPE, DEAD_LETTER_SINK, Handshake, Metrics, TaskCounts, Totals};
pub use server::MetricsServer;

/// What can go wrong setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("'{0}' is not an address to listen on: give HOST:PORT (e.g. 127.0.0.1:9464) or a port")]
    BadAddress(String),
    #[error("cannot start the metrics server: {0}")]
    Runtime(std::io::Error),
    #[error("unknown log format '{0}': expected 'text' or 'json'")]
    LogFormat(String),
    #[error("bad WEIR_LOG filter '{filter}': {message}")]
    LogFilter { filter: String, message: String },
    #[error("logging is already set up in this process")]
    LogsAlreadySet,
}
