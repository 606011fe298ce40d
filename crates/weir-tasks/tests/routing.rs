//! Routing over real agents: two `http` agents on local test servers and one `command` agent.

mod common;

use common::TestServer;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_tasks::{AgentsConfig, TaskRequest, TaskService, TaskStatus};

fn config(a: &TestServer, b: &TestServer, policy: &str) -> AgentsConfig {
    let yaml = format!(
        "\
aging: 1h
agents:
  - name: http-a
    kind: http
    capabilities: [echo]
    concurrency: 4
    http: {{ url: \"{}/run\" }}
    policy: {policy}
  - name: http-b
    kind: http
    capabilities: [echo]
    concurrency: 3
    http: {{ url: \"{}/run\" }}
    policy: {policy}
  - name: cat
    kind: command
    capabilities: [echo]
    concurrency: 2
    command: {{ program: cat }}
    policy: {policy}
",
        a.url, b.url
    );
    AgentsConfig::parse(&yaml, "test.yaml").unwrap()
}

async fn submit_all(service: &Arc<TaskService>, n: usize) -> Vec<(usize, String)> {
    let mut ids = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(500) {
        let submits = chunk.iter().map(|&i| {
            service.submit(
                TaskRequest::new("echo", json!({ "i": i, "p": i % 3 })).priority((i % 3) as i32),
            )
        });
        for (&i, accepted) in chunk.iter().zip(futures::future::join_all(submits).await) {
            ids.push((i, accepted.unwrap().task_id));
        }
    }
    ids
}

/// Polls until every task is finished; returns, per task, the poll round in which it was
/// first seen finished (a finishing rank).
async fn finish_rounds(service: &TaskService, ids: &[(usize, String)]) -> HashMap<usize, usize> {
    let mut rounds = HashMap::new();
    let mut round = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while rounds.len() < ids.len() {
        assert!(std::time::Instant::now() < deadline, "tasks did not finish");
        for (i, id) in ids {
            if rounds.contains_key(i) {
                continue;
            }
            if service.status(id).unwrap().is_some_and(|s| s.is_terminal()) {
                rounds.insert(*i, round);
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_tasks_of_three_priorities_over_three_agents() {
    let a = TestServer::start(1).await;
    let b = TestServer::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        TaskService::open(
            dir.path(),
            config(&a, &b, "{ retries: 2, backoff: { min: 10ms } }"),
        )
        .await
        .unwrap(),
    );
    let n = 10_000;
    let ids = submit_all(&service, n).await;
    let rounds = finish_rounds(&service, &ids).await;

    let mut by_agent: HashMap<String, usize> = HashMap::new();
    for (i, id) in &ids {
        let view = service.get(id).unwrap().unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({ "i": i, "p": i % 3 })), "{view:?}");
        *by_agent.entry(view.agent.unwrap()).or_default() += 1;
    }
    // Every agent took part.
    assert_eq!(by_agent.len(), 3, "{by_agent:?}");
    // No agent ever exceeded its concurrency: counted by the servers themselves, and by the
    // dispatcher for the command agent.
    assert!(a.counters.max_in_flight.load(Ordering::SeqCst) <= 4);
    assert!(b.counters.max_in_flight.load(Ordering::SeqCst) <= 3);
    let max: HashMap<String, usize> = service.max_in_flight().into_iter().collect();
    assert!(
        max["cat"] <= 2 && max["http-a"] <= 4 && max["http-b"] <= 3,
        "{max:?}"
    );
    assert!(
        a.counters.max_in_flight.load(Ordering::SeqCst) >= 2,
        "the test must load agents"
    );

    // Higher priorities finish first on average.
    let mut sum = [0f64; 3];
    let mut count = [0f64; 3];
    for (i, r) in &rounds {
        sum[i % 3] += *r as f64;
        count[i % 3] += 1.0;
    }
    let mean: Vec<f64> = (0..3).map(|p| sum[p] / count[p]).collect();
    eprintln!("mean finishing round by priority 0,1,2: {mean:?}; tasks by agent {by_agent:?}");
    assert!(mean[2] < mean[1] && mean[1] < mean[0], "{mean:?}");

    let metrics = service.metrics();
    let total: HashMap<TaskStatus, u64> = metrics.tasks_total.iter().copied().collect();
    assert_eq!(total[&TaskStatus::Succeeded], n as u64);
    assert_eq!(total[&TaskStatus::Queued], n as u64);
    assert_eq!(metrics.queued, 0);
    assert_eq!(metrics.duration_count, n as u64);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_http_agent_opens_its_breaker_and_its_tasks_move_elsewhere() {
    let a = TestServer::start(1).await;
    let b = TestServer::start(1).await;
    // Agent a fails every request from its 200th on.
    a.counters.fail_after.store(200, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let policy = "{ retries: 3, backoff: { min: 5ms, max: 20ms }, \
                  circuit_breaker: { failure_threshold: 3, reset_timeout: 1h } }";
    let service = Arc::new(
        TaskService::open(dir.path(), config(&a, &b, policy))
            .await
            .unwrap(),
    );
    let n = 2000;
    let ids = submit_all(&service, n).await;
    let mut moved = 0;
    for (i, id) in &ids {
        let view = service
            .wait(id, Duration::from_secs(300))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({ "i": i, "p": i % 3 })));
        if view.attempts.len() > 1 {
            assert_eq!(view.attempts[0].agent, "http-a", "{view:?}");
            assert!(
                view.attempts[0].error.as_deref().unwrap().contains("500"),
                "{view:?}"
            );
            assert_ne!(view.agent.as_deref(), Some("http-a"), "{view:?}");
            moved += 1;
        }
    }
    assert!(moved >= 1, "some task must have failed on http-a and moved");
    let agents = service.agents();
    let a_view = agents.iter().find(|v| v.name == "http-a").unwrap();
    assert_eq!(a_view.health, "circuit_open", "{a_view:?}");
    // Once open, the breaker kept tasks away: http-a saw a handful of failures (the
    // threshold, plus attempts already in flight or started while successes finishing out of
    // order reset the count), not its share of the remaining ~1,800 tasks.
    let failures = a.counters.failed.load(Ordering::SeqCst);
    assert!((3..20).contains(&failures), "failures on a: {failures}");
    let total: HashMap<TaskStatus, u64> = service.metrics().tasks_total.iter().copied().collect();
    assert_eq!(total[&TaskStatus::Failed], 0);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_failing_its_health_check_leaves_routing_and_comes_back() {
    let a = TestServer::start(5).await;
    let b = TestServer::start(5).await;
    a.counters.unhealthy.store(true, Ordering::SeqCst);
    let yaml = format!(
        "\
agents:
  - name: a
    kind: http
    capabilities: [echo]
    concurrency: 2
    http: {{ url: \"{0}/run\" }}
    health: {{ url: \"{0}/health\", interval: 50ms, timeout: 1s }}
  - name: b
    kind: http
    capabilities: [echo]
    concurrency: 2
    http: {{ url: \"{1}/run\" }}
    health: {{ url: \"{1}/health\", interval: 50ms, timeout: 1s }}
",
        a.url, b.url
    );
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        TaskService::open(dir.path(), AgentsConfig::parse(&yaml, "t.yaml").unwrap())
            .await
            .unwrap(),
    );
    let health = |name: &str| {
        service
            .agents()
            .into_iter()
            .find(|v| v.name == name)
            .unwrap()
            .health
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while health("a") != "unhealthy" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = submit_all(&service, 60).await;
    for (_, id) in &ids {
        let view = service
            .wait(id, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded);
        assert_eq!(view.agent.as_deref(), Some("b"));
    }
    assert_eq!(a.counters.served.load(Ordering::SeqCst), 0);

    a.counters.unhealthy.store(false, Ordering::SeqCst);
    while health("a") != "healthy" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = submit_all(&service, 60).await;
    for (_, id) in &ids {
        let view = service
            .wait(id, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded);
    }
    // Back in routing: the least-loaded rule gives it a share.
    assert!(a.counters.served.load(Ordering::SeqCst) > 0);
    service.shutdown().await;
}
