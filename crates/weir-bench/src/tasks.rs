//! `tasks`: the task queue of `weir-tasks` with a no-op in-process agent (BENCHMARKS.md).
//!
//! Two phases on one durable store (fsynced submits, as `weir serve` runs it):
//! - throughput: `events` tasks (default 100,000) submitted by 256 concurrent submitters (clients of a server), timed
//!   from the first submit until every task has succeeded: `tasks_per_sec`;
//! - with `store: redis` (`weir bench tasks --store redis`) the queue is the shared Redis
//!   store at `redis_url` under a fresh prefix instead of the embedded one;
//! - latency: tasks submitted at `rate` per second (default 1,000; `--rate`) for `seconds`
//!   (default 5): `p99_start_ms` (and p50, max) from the call to `submit` to the agent's start.

use crate::{BenchError, BenchOptions, BenchReport, Digest};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_tasks::{
    Agent, AgentError, AgentSpec, AgentsConfig, StoreConfig, TaskInput, TaskRequest, TaskService,
    TaskStatus,
};

/// Concurrent submitters in the throughput phase: each waits for its submit's fsync (shared
/// by every submit of the same group commit), as a server's concurrent clients do.
const SUBMITTERS: u64 = 256;

/// Does nothing but note when it started (for the latency phase) and count.
struct Noop {
    base: Instant,
    starts: Mutex<Vec<u64>>,
    runs: AtomicU64,
}

impl Agent for Noop {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::Relaxed);
            if let Some(submitted) = task.data.get("t").and_then(Value::as_u64) {
                let now = self.base.elapsed().as_micros() as u64;
                if let Ok(mut starts) = self.starts.lock() {
                    starts.push(now.saturating_sub(submitted));
                }
            }
            Ok(Value::Null)
        })
    }
}

fn succeeded(service: &TaskService) -> u64 {
    service
        .metrics()
        .tasks_total
        .iter()
        .find(|(s, _)| *s == TaskStatus::Succeeded)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

pub fn tasks(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    if o.baseline {
        return Err(BenchError::Usage(
            "tasks has no baseline: it measures the queue itself".into(),
        ));
    }
    let n = o.events.unwrap_or(100_000);
    let rate = if o.rate == BenchOptions::default().rate {
        1_000
    } else {
        o.rate.max(1)
    };
    let seconds = if o.seconds == BenchOptions::default().seconds {
        5
    } else {
        o.seconds.max(1)
    };
    let mut config = AgentsConfig::default();
    match o.store.as_str() {
        "fjall" => {}
        "redis" => {
            config.store = StoreConfig::redis(
                o.redis_url.clone(),
                format!(
                    "weir-bench:tasks:{}:{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ),
            );
        }
        other => {
            return Err(BenchError::Usage(format!(
                "--store: expected fjall or redis, found {other:?}"
            )));
        }
    }
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.parallelism.max(2))
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    runtime.block_on(async move {
        let base = Instant::now();
        let agent = Arc::new(Noop {
            base,
            starts: Mutex::new(Vec::new()),
            runs: AtomicU64::new(0),
        });
        let spec = AgentSpec::in_process("noop", ["noop"], 256, agent.clone());
        let service = Arc::new(
            TaskService::open_with(dir.path(), config, vec![spec])
                .await
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        );

        // Throughput.
        let started = Instant::now();
        let mut submitters = Vec::new();
        for w in 0..SUBMITTERS {
            let service = service.clone();
            submitters.push(tokio::spawn(async move {
                let mut i = w;
                while i < n {
                    service
                        .submit(TaskRequest::new("noop", json!({ "i": i })))
                        .await
                        .map_err(|e| e.to_string())?;
                    i += SUBMITTERS;
                }
                Ok::<(), String>(())
            }));
        }
        for s in submitters {
            s.await
                .map_err(|e| BenchError::Setup(e.to_string()))?
                .map_err(BenchError::Setup)?;
        }
        while succeeded(&service) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();

        // Latency at a fixed rate.
        let latency_tasks = rate * seconds;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut pending = Vec::with_capacity(latency_tasks as usize);
        for _ in 0..latency_tasks {
            ticker.tick().await;
            let service = service.clone();
            let t = base.elapsed().as_micros() as u64;
            pending.push(tokio::spawn(async move {
                service
                    .submit(TaskRequest::new("noop", json!({ "t": t })))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }));
        }
        for p in pending {
            p.await
                .map_err(|e| BenchError::Setup(e.to_string()))?
                .map_err(BenchError::Setup)?;
        }
        while succeeded(&service) < n + latency_tasks {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        service.shutdown().await;

        let mut starts = agent
            .starts
            .lock()
            .map_err(|_| BenchError::Setup("poisoned".into()))?
            .clone();
        starts.sort_unstable();
        let pct = |p: f64| -> f64 {
            if starts.is_empty() {
                return 0.0;
            }
            let i = ((starts.len() as f64 * p).ceil() as usize).clamp(1, starts.len()) - 1;
            starts[i] as f64 / 1000.0
        };
        let runs = agent.runs.load(Ordering::Relaxed);
        let mut digest = Digest::default();
        digest.add(&[runs]);
        let mut report = BenchReport::new("tasks", o, n, elapsed, runs, digest.hex());
        let extra = &mut report.extra;
        extra.insert(
            "tasks_per_sec".into(),
            (n as f64 / elapsed.as_secs_f64()).into(),
        );
        extra.insert("submitters".into(), SUBMITTERS.into());
        extra.insert("latency_rate".into(), rate.into());
        extra.insert("latency_tasks".into(), latency_tasks.into());
        extra.insert("p50_start_ms".into(), pct(0.50).into());
        extra.insert("p99_start_ms".into(), pct(0.99).into());
        extra.insert("max_start_ms".into(), pct(1.0).into());
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_latencies_are_measured() {
        let o = BenchOptions {
            events: Some(2_000),
            rate: 500,
            seconds: 1,
            ..BenchOptions::default()
        };
        let report = tasks(&o).unwrap();
        assert_eq!(report.results, 2_000 + 500);
        assert!(report.extra["p99_start_ms"].as_f64().unwrap() > 0.0);
        assert!(report.extra["tasks_per_sec"].as_f64().unwrap() > 0.0);
    }
}
