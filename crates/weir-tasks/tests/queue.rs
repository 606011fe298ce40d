//! The queue with in-process agents: priority order, FIFO, aging, idempotency, retention,
//! pinning, unknown actions, attempt budgets and restart.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use weir_resilience::PolicyConfig;
use weir_tasks::{
    Agent, AgentError, AgentSpec, AgentsConfig, TaskError, TaskFilter, TaskInput, TaskRequest,
    TaskService, TaskStatus,
};

/// Records the order of the tasks it runs; the task with data `"gate"` waits for a permit.
struct Recorder {
    order: Mutex<Vec<Value>>,
    gate: Semaphore,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            order: Mutex::default(),
            gate: Semaphore::new(0),
        }
    }
}

impl Agent for Recorder {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            if task.data == json!("gate") {
                let _ = self.gate.acquire().await.map(|p| p.forget());
            }
            self.order.lock().unwrap().push(task.data.clone());
            Ok(task.data.clone())
        })
    }
}

fn settings(aging: &str, ttl: &str) -> AgentsConfig {
    AgentsConfig::parse(&format!("aging: {aging}\nresults_ttl: {ttl}\n"), "t.yaml").unwrap()
}

async fn open(dir: &std::path::Path, aging: &str, ttl: &str, agent: Arc<Recorder>) -> TaskService {
    let spec = AgentSpec::in_process("rec", ["act"], 1, agent);
    TaskService::open_with(dir, settings(aging, ttl), vec![spec])
        .await
        .unwrap()
}

async fn run_gated(aging: &str, tasks: &[(i32, &str)], pause_between: Duration) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(Recorder::default());
    let service = open(dir.path(), aging, "1h", agent.clone()).await;
    let gate = service
        .submit(TaskRequest::new("act", json!("gate")))
        .await
        .unwrap();
    // Wait until the gate task holds the only slot.
    while service.status(&gate.task_id).unwrap() != Some(TaskStatus::Running) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ids = Vec::new();
    for (priority, name) in tasks {
        let t = service
            .submit(TaskRequest::new("act", json!(name)).priority(*priority))
            .await
            .unwrap();
        ids.push(t.task_id);
        tokio::time::sleep(pause_between).await;
    }
    agent.gate.add_permits(1);
    for id in &ids {
        service.wait(id, Duration::from_secs(30)).await.unwrap();
    }
    service.shutdown().await;
    let order = agent.order.lock().unwrap().clone();
    order[1..].to_vec()
}

#[tokio::test]
async fn higher_priority_first_and_fifo_within_a_priority() {
    let order = run_gated(
        "1h",
        &[
            (0, "low1"),
            (5, "high1"),
            (0, "low2"),
            (1, "mid"),
            (5, "high2"),
        ],
        Duration::ZERO,
    )
    .await;
    assert_eq!(
        order,
        [
            json!("high1"),
            json!("high2"),
            json!("mid"),
            json!("low1"),
            json!("low2")
        ]
    );
}

#[tokio::test]
async fn aging_lets_an_old_low_priority_task_pass_newer_high_ones() {
    // aging 20ms: priority 1 is worth 20 ms of waiting. `old` waited ~200 ms before `new`.
    let order = run_gated(
        "20ms",
        &[(0, "old"), (1, "new")],
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(order, [json!("old"), json!("new")]);
    // Without aging the higher priority wins (the control).
    let order = run_gated("1h", &[(0, "old"), (1, "new")], Duration::from_millis(200)).await;
    assert_eq!(order, [json!("new"), json!("old")]);
}

#[tokio::test]
async fn idempotent_resubmits_create_nothing_and_results_expire_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(Recorder::default());
    let service = open(dir.path(), "1h", "300ms", agent.clone()).await;
    let first = service
        .submit(TaskRequest::new("act", json!(1)).idempotency_key("k"))
        .await
        .unwrap();
    assert!(first.created);
    let again = service
        .submit(TaskRequest::new("act", json!(2)).idempotency_key("k"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.task_id, first.task_id);
    let view = service
        .wait(&first.task_id, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.result, Some(json!(1)));
    assert_eq!(agent.order.lock().unwrap().len(), 1, "ran once");
    // Kept, then removed after results_ttl.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while service.get(&first.task_id).unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The key is free again: a new task.
    let third = service
        .submit(TaskRequest::new("act", json!(3)).idempotency_key("k"))
        .await
        .unwrap();
    assert!(third.created);
    assert_ne!(third.task_id, first.task_id);
    service.shutdown().await;
}

#[tokio::test]
async fn unknown_actions_and_pins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), "1h", "1h", Arc::new(Recorder::default())).await;
    let e = service
        .submit(TaskRequest::new("nope", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::NoAgent { .. }), "{e}");
    let e = service
        .submit(TaskRequest::new("act", json!(1)).agent("other"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("on agent \"other\""), "{e}");
    service.shutdown().await;
}

struct Flaky {
    name: &'static str,
    fail: bool,
}

impl Agent for Flaky {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            if self.fail {
                Err(AgentError::Failed(format!("{} is broken", self.name)))
            } else {
                Ok(json!({ "by": self.name, "data": task.data }))
            }
        })
    }
}

#[tokio::test]
async fn a_failure_retries_on_another_agent_and_an_exhausted_budget_lists_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let policy: PolicyConfig =
        serde_json::from_value(json!({"retries": 2, "backoff": {"min": "1ms", "max": "2ms"}}))
            .unwrap();
    let specs = vec![
        AgentSpec::in_process(
            "bad",
            ["x", "y"],
            1,
            Arc::new(Flaky {
                name: "bad",
                fail: true,
            }),
        )
        .policy(policy.clone()),
        AgentSpec::in_process(
            "good",
            ["x"],
            1,
            Arc::new(Flaky {
                name: "good",
                fail: false,
            }),
        )
        .policy(policy.clone()),
        AgentSpec::in_process(
            "bad2",
            ["y"],
            1,
            Arc::new(Flaky {
                name: "bad2",
                fail: true,
            }),
        )
        .policy(policy),
    ];
    let service = TaskService::open_with(dir.path(), settings("1h", "1h"), specs)
        .await
        .unwrap();
    // Pinned to `bad` first, then free to move? A pin holds: all attempts on `bad`.
    let pinned = service
        .submit(TaskRequest::new("x", json!(1)).agent("bad"))
        .await
        .unwrap();
    let view = service
        .wait(&pinned.task_id, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed);
    assert_eq!(view.attempts.len(), 3);
    assert!(view.attempts.iter().all(|a| a.agent == "bad"));
    let error = view.error.unwrap();
    for n in 1..=3 {
        assert!(
            error.contains(&format!("attempt {n} on bad: bad is broken")),
            "{error}"
        );
    }
    // Action y: both agents fail; the retry goes to the agent not yet tried.
    let t = service
        .submit(TaskRequest::new("y", json!(2)))
        .await
        .unwrap();
    let view = service
        .wait(&t.task_id, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed);
    assert_eq!(view.attempts.len(), 3);
    assert_ne!(view.attempts[0].agent, view.attempts[1].agent, "{view:?}");
    // Action x unpinned: whichever it starts on, it succeeds on `good`.
    for i in 0..10 {
        let t = service
            .submit(TaskRequest::new("x", json!(i)))
            .await
            .unwrap();
        let view = service
            .wait(&t.task_id, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({"by": "good", "data": i})));
        assert!(view.attempts.len() <= 2);
    }
    service.shutdown().await;
}

#[tokio::test]
async fn a_clean_shutdown_requeues_running_tasks_and_keeps_finished_results() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(Recorder::default());
    let service = open(dir.path(), "1h", "1h", agent.clone()).await;
    let done = service
        .submit(TaskRequest::new("act", json!("done")))
        .await
        .unwrap();
    service
        .wait(&done.task_id, Duration::from_secs(10))
        .await
        .unwrap();
    let gate = service
        .submit(TaskRequest::new("act", json!("gate")))
        .await
        .unwrap();
    while service.status(&gate.task_id).unwrap() != Some(TaskStatus::Running) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued = service
        .submit(TaskRequest::new("act", json!("after")))
        .await
        .unwrap();
    service.shutdown().await;
    drop(service);

    let agent = Arc::new(Recorder::default());
    agent.gate.add_permits(1);
    let service = open(dir.path(), "1h", "1h", agent.clone()).await;
    let view = service.get(&done.task_id).unwrap().unwrap();
    assert_eq!(
        (view.status, view.result),
        (TaskStatus::Succeeded, Some(json!("done")))
    );
    for id in [&gate.task_id, &queued.task_id] {
        let view = service
            .wait(id, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
    }
    // The running one ran again (at-least-once), first, in its queue order.
    assert_eq!(
        *agent.order.lock().unwrap(),
        [json!("gate"), json!("after")]
    );
    service.shutdown().await;
}

#[tokio::test]
async fn the_list_filters_by_status_and_action_live_tasks_first() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(Recorder::default());
    let service = open(dir.path(), "10s", "1h", agent.clone()).await;
    let mut finished = Vec::new();
    for i in 0..3 {
        let t = service
            .submit(TaskRequest::new("act", json!(i)))
            .await
            .unwrap();
        service
            .wait(&t.task_id, Duration::from_secs(30))
            .await
            .unwrap();
        finished.push(t.task_id);
        // Finish times a millisecond apart at least (the list orders by them).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The gate holds the only slot: one running, two queued behind it.
    let gate = service
        .submit(TaskRequest::new("act", json!("gate")))
        .await
        .unwrap();
    while service.status(&gate.task_id).unwrap() != Some(TaskStatus::Running) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let q1 = service
        .submit(TaskRequest::new("act", json!("q1")))
        .await
        .unwrap();
    let q2 = service
        .submit(TaskRequest::new("act", json!("q2")))
        .await
        .unwrap();

    let ids = |filter: TaskFilter| -> Vec<String> {
        service
            .list(&filter)
            .unwrap()
            .into_iter()
            .map(|t| t.task_id)
            .collect()
    };
    // Live tasks first, newest first; then finished ones, most recently finished first.
    let all = ids(TaskFilter::default());
    let mut expected = vec![q2.task_id.clone(), q1.task_id.clone(), gate.task_id.clone()];
    expected.extend(finished.iter().rev().cloned());
    assert_eq!(all, expected);
    let queued = TaskFilter {
        status: Some(TaskStatus::Queued),
        ..TaskFilter::default()
    };
    assert_eq!(ids(queued), [q2.task_id.clone(), q1.task_id.clone()]);
    let succeeded = TaskFilter {
        status: Some(TaskStatus::Succeeded),
        limit: Some(2),
        ..TaskFilter::default()
    };
    assert_eq!(ids(succeeded), [finished[2].clone(), finished[1].clone()]);
    let other = TaskFilter {
        action: Some("other".into()),
        ..TaskFilter::default()
    };
    assert!(ids(other).is_empty());
    let summary = &service.list(&TaskFilter::default()).unwrap()[3];
    assert_eq!(
        (
            summary.action.as_str(),
            summary.status,
            summary.attempts,
            summary.agent.as_deref()
        ),
        ("act", TaskStatus::Succeeded, 1, Some("rec"))
    );
    assert!("done".parse::<TaskStatus>().is_err());
    agent.gate.add_permits(1);
    service.shutdown().await;
}
