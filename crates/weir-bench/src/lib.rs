//! The benchmark workloads of `BENCHMARKS.md`: each runs on the real engine (the same runtime,
//! operators and state backend a user's pipeline gets) or, with `baseline`, as the plain
//! single-threaded Rust loop a competent programmer would write, fed by the same generator.
//! Both report the same `results` and `checksum` when they computed the same thing.

mod digest;
mod tasks;
mod w2;
mod w4;
mod w5;
mod w6;
pub mod workloads;
mod yaml;

pub use digest::Digest;
pub use w4::Histogram;

use serde::Serialize;
use std::time::Duration;

/// Options shared by all workloads.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events (W1, W2, W4) or lines (W3); `None`: the workload's default.
    pub events: Option<u64>,
    pub parallelism: usize,
    pub baseline: bool,
    /// Run the workload as a YAML pipeline through `weir run`'s path (w1, w2, w3).
    pub yaml: bool,
    /// W4: events per second.
    pub rate: u64,
    /// W4: how long to run.
    pub seconds: u64,
    /// W5: distinct keys.
    pub keys: u64,
    /// W6: the Redis server.
    pub redis_url: String,
    /// W6: the ClickHouse HTTP interface.
    pub clickhouse_url: String,
    /// tasks: the task store, `fjall` (embedded, default) or `redis` (at `redis_url`).
    pub store: String,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            events: None,
            parallelism: 1,
            baseline: false,
            yaml: false,
            rate: 1_000_000,
            seconds: 10,
            keys: 1_000_000,
            redis_url: "redis://127.0.0.1:6390".into(),
            clickhouse_url: "http://127.0.0.1:8124".into(),
            store: "fjall".into(),
        }
    }
}

/// One benchmark run's summary; `extra` holds workload-specific fields.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub mode: &'static str,
    pub events: u64,
    pub parallelism: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub results: u64,
    pub checksum: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BenchReport {
    pub(crate) fn new(
        workload: &str,
        options: &BenchOptions,
        events: u64,
        elapsed: Duration,
        results: u64,
        checksum: String,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        BenchReport {
            workload: workload.to_string(),
            mode: if options.baseline {
                "baseline"
            } else if options.yaml {
                "yaml"
            } else {
                "engine"
            },
            events,
            parallelism: if options.baseline {
                1
            } else {
                options.parallelism
            },
            seconds,
            events_per_sec: if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
            results,
            checksum,
            extra: serde_json::Map::new(),
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown workload '{0}': expected one of w1, w2, w3, w4, w5, w6, tasks")]
    UnknownWorkload(String),
    #[error(transparent)]
    Job(#[from] weir_core::JobError),
    #[error("{0}")]
    Setup(String),
    /// The options do not apply to the workload (a usage error, exit 2).
    #[error("{0}")]
    Usage(String),
    /// State, checkpoint or restore failures (w5).
    #[error("{0}")]
    State(String),
}

/// Runs a workload by name.
pub fn run(workload: &str, options: &BenchOptions) -> Result<BenchReport, BenchError> {
    if options.yaml {
        if options.baseline {
            return Err(BenchError::Usage(
                "--yaml and --baseline are two different runs: choose one".into(),
            ));
        }
        return match workload {
            "w1" => yaml::w1(options),
            "w2" => yaml::w2(options),
            "w3" => yaml::w3(options),
            "w4" | "w5" | "w6" => Err(BenchError::Usage(format!(
                "--yaml runs w1, w2 and w3 ({workload} has no YAML form)"
            ))),
            other => Err(BenchError::UnknownWorkload(other.to_string())),
        };
    }
    match workload {
        "w1" => Ok(workloads::w1(options)?),
        "w3" => Ok(workloads::w3(options)?),
        "w2" => Ok(w2::w2(options)?),
        "w4" => w4::w4(options),
        "w5" => w5::w5(options),
        "w6" => w6::w6(options),
        "tasks" => tasks::tasks(options),
        other => Err(BenchError::UnknownWorkload(other.to_string())),
    }
}
