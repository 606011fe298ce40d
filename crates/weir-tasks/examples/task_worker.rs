//! A task service process for the crash test (`tests/crash.rs`), also a small demo of the
//! in-process [`Agent`] trait.
//!
//! `task_worker DIR submit N`: opens the service in DIR with a slow in-process agent `work`
//! (4 in flight, 20 ms each), submits tasks 0..N (`idempotency_key` `k{i}`, priority `i % 3`)
//! from 32 concurrent submitters, and prints `accepted I TASK_ID` once each submit returned.
//! It never exits on its own: the test kills it with SIGKILL.
//!
//! `task_worker DIR drain N`: opens the same store with a fast agent, resubmits the same N
//! keys, waits until every task is finished, and prints one JSON line per key:
//! `{"i":I,"task_id":..,"created":bool,"ran_after_restart":bool,"status":..,"result":..,"attempts":n}`.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use weir_tasks::{Agent, AgentError, AgentSpec, AgentsConfig, TaskInput, TaskRequest, TaskService};

struct Work {
    delay: Duration,
    /// The ids of the tasks this process ran.
    ran: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Agent for Work {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.ran
                .lock()
                .map_err(|_| AgentError::Failed("poisoned".into()))?
                .insert(task.task_id.clone());
            Ok(json!({ "echo": task.data }))
        })
    }
}

fn request(i: usize) -> TaskRequest {
    TaskRequest::new("work", json!({ "i": i }))
        .priority((i % 3) as i32)
        .idempotency_key(format!("k{i}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, mode, n] = args.as_slice() else {
        return Err("usage: task_worker DIR submit|drain N".into());
    };
    let n: usize = n.parse()?;
    let (delay, concurrency) = if mode == "submit" {
        (Duration::from_millis(20), 4)
    } else {
        (Duration::ZERO, 16)
    };
    let work = Arc::new(Work {
        delay,
        ran: Default::default(),
    });
    let agent = AgentSpec::in_process("work", ["work"], concurrency, work.clone());
    let service = Arc::new(
        TaskService::open_with(
            std::path::Path::new(dir),
            AgentsConfig::default(),
            vec![agent],
        )
        .await?,
    );
    match mode.as_str() {
        "submit" => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for w in 0..32 {
                let service = service.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut i = w;
                    while i < n {
                        if let Ok(accepted) = service.submit(request(i)).await {
                            let _ = tx.send(format!("accepted {i} {}", accepted.task_id));
                        }
                        i += 32;
                    }
                });
            }
            drop(tx);
            let mut out = std::io::stdout().lock();
            while let Some(line) = rx.recv().await {
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            writeln!(out, "all submitted")?;
            out.flush()?;
            // Wait to be killed.
            std::future::pending::<()>().await;
        }
        "drain" => {
            let mut results = Vec::with_capacity(n);
            let indices: Vec<usize> = (0..n).collect();
            for chunk in indices.chunks(256) {
                let submits = chunk.iter().map(|&i| service.submit(request(i)));
                for (&i, accepted) in chunk.iter().zip(futures::future::join_all(submits).await) {
                    results.push((i, accepted?));
                }
            }
            let mut out = std::io::stdout().lock();
            for (i, accepted) in results {
                let view = service
                    .wait(&accepted.task_id, Duration::from_secs(120))
                    .await?
                    .ok_or("task vanished")?;
                let line = json!({
                    "i": i,
                    "task_id": accepted.task_id,
                    "created": accepted.created,
                    "ran_after_restart": work.ran.lock().map_err(|_| "poisoned")?.contains(&accepted.task_id),
                    "status": view.status,
                    "result": view.result,
                    "attempts": view.attempts.len(),
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            service.shutdown().await;
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
