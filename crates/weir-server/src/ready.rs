//! `/ready`: every running pipeline's connectors answer, each pipeline's checks within a short
//! timeout, and its checkpoints progress. The checks are the connectors' own (the ones
//! `weir validate --connect` runs: Redis `PING`, ClickHouse `SELECT 1`, input files readable,
//! output files writable, an HTTP endpoint accepting a connection; see
//! [`weir_pipeline::Pipeline::check_connections`]), not a second copy here. The answer is
//! reused for a short while so that a probe storm does not become a connector storm, and a
//! check still running past its timeout is not started again until it ends.

use crate::manager::Manager;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use weir_pipeline::Pipeline;

/// The readiness checker.
pub struct Ready {
    timeout: Duration,
    cache_for: Duration,
    cached: Mutex<Option<(Instant, bool, Value)>>,
    /// Checks still running (past their timeout), by pipeline and key.
    in_flight: Arc<std::sync::Mutex<HashSet<(String, String)>>>,
}

/// One connector's outcome.
struct Outcome {
    pipeline: String,
    key: String,
    connector: &'static str,
    error: Option<String>,
}

impl Ready {
    pub fn new(timeout: Duration, cache_for: Duration) -> Self {
        Ready {
            timeout,
            cache_for,
            cached: Mutex::new(None),
            in_flight: Arc::default(),
        }
    }

    /// `(ready, body)`.
    pub async fn check(&self, manager: &Arc<Manager>) -> (bool, Value) {
        let mut cached = self.cached.lock().await;
        if let Some((at, ok, body)) = &*cached
            && at.elapsed() < self.cache_for
        {
            return (*ok, body.clone());
        }
        let (pipelines, mut reasons) = manager.readiness_inputs();
        let mut checks = Vec::new();
        for (name, p) in pipelines {
            let p = Arc::new(p);
            for (key, connector) in p.connector_keys() {
                checks.push(self.check_one(name.clone(), p.clone(), key, connector));
            }
        }
        let results = futures::future::join_all(checks).await;
        let mut connectors = Vec::new();
        for o in results.into_iter().flatten() {
            if let Some(e) = &o.error {
                reasons.push(format!(
                    "pipeline `{}`: {} ({}): {e}",
                    o.pipeline, o.key, o.connector
                ));
            }
            connectors.push(json!({
                "pipeline": o.pipeline,
                "key": o.key,
                "connector": o.connector,
                "ok": o.error.is_none(),
                "error": o.error,
            }));
        }
        let ok = reasons.is_empty();
        let body = json!({
            "status": if ok { "ready" } else { "not_ready" },
            "reasons": reasons,
            "connectors": connectors,
        });
        *cached = Some((Instant::now(), ok, body.clone()));
        (ok, body)
    }

    /// Runs one connector's check (the synchronous check of `weir validate --connect`) on a
    /// blocking thread, waiting at most the timeout. `None`: nothing to check (stdin,
    /// stdout, a generator, discard).
    async fn check_one(
        &self,
        pipeline: String,
        p: Arc<Pipeline>,
        key: String,
        connector: &'static str,
    ) -> Option<Outcome> {
        let outcome = |error: Option<String>| Outcome {
            pipeline: pipeline.clone(),
            key: key.clone(),
            connector,
            error,
        };
        let id = (pipeline.clone(), key.clone());
        if !self.in_flight().insert(id.clone()) {
            return Some(outcome(Some(format!(
                "no answer yet to a check started more than {} ms ago",
                self.timeout.as_millis()
            ))));
        }
        let in_flight = self.in_flight.clone();
        let work = {
            let (id, key) = (id.clone(), key.clone());
            tokio::task::spawn_blocking(move || {
                let result = p.check_connection(&key);
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                result
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(Ok(false))) => None,
            Ok(Ok(Ok(true))) => Some(outcome(None)),
            Ok(Ok(Err(e))) => Some(outcome(Some(e.to_string()))),
            Ok(Err(e)) => {
                self.in_flight().remove(&id);
                Some(outcome(Some(format!("the check failed: {e}"))))
            }
            Err(_) => Some(outcome(Some(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            )))),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}
