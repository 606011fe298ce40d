//! `/ready`: every running pipeline's connectors answer (Redis `PING`, ClickHouse `SELECT 1`,
//! input files exist), each within a short timeout, and its checkpoints progress. The answer
//! is reused for a short while so that a probe storm does not become a connector storm.

use crate::manager::{Manager, Target};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The readiness checker.
pub struct Ready {
    timeout: Duration,
    cache_for: Duration,
    cached: Mutex<Option<(Instant, bool, Value)>>,
    http: reqwest::Client,
}

impl Ready {
    pub fn new(timeout: Duration, cache_for: Duration) -> Self {
        Ready {
            timeout,
            cache_for,
            cached: Mutex::new(None),
            http: reqwest::Client::new(),
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
        let (targets, mut reasons) = manager.readiness_inputs();
        // One check per distinct connector, shared by the pipelines that use it.
        let mut users: BTreeMap<Target, Vec<String>> = BTreeMap::new();
        for (pipeline, target) in targets {
            users.entry(target).or_default().push(pipeline);
        }
        let checks = users.keys().map(|t| self.check_one(t));
        let results = futures::future::join_all(checks).await;
        let mut connectors = Vec::new();
        for ((target, pipelines), result) in users.iter().zip(results) {
            let (kind, at) = describe(target);
            connectors.push(json!({
                "connector": kind,
                "target": at,
                "pipelines": pipelines,
                "ok": result.is_ok(),
                "error": result.as_ref().err(),
            }));
            if let Err(e) = result {
                reasons.push(format!(
                    "{kind} {at} (pipelines {}): {e}",
                    pipelines.join(", ")
                ));
            }
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

    async fn check_one(&self, target: &Target) -> Result<(), String> {
        let timeout = self.timeout;
        let work = async {
            match target {
                Target::Redis(url) => {
                    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                    let mut conn = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| e.to_string())?;
                    let pong: String = redis::cmd("PING")
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    if pong == "PONG" {
                        Ok(())
                    } else {
                        Err(format!("PING answered `{pong}`"))
                    }
                }
                Target::ClickHouse(url) => {
                    let response = self
                        .http
                        .get(format!("{}/?query=SELECT%201", url.trim_end_matches('/')))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status();
                    let text = response.text().await.map_err(|e| e.to_string())?;
                    if status.is_success() && text.trim() == "1" {
                        Ok(())
                    } else {
                        Err(format!("SELECT 1 answered {status}: {}", text.trim()))
                    }
                }
                Target::File(path) => match tokio::fs::metadata(path).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                },
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

fn describe(target: &Target) -> (&'static str, String) {
    match target {
        Target::Redis(url) => ("redis", redact(url)),
        Target::ClickHouse(url) => ("clickhouse", redact(url)),
        Target::File(path) => ("file", path.display().to_string()),
    }
}

/// A URL without its user name and password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_credentials() {
        assert_eq!(super::redact("redis://:pw@h:1"), "redis://h:1");
        assert_eq!(super::redact("http://h:1"), "http://h:1");
    }
}
