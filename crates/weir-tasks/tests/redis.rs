//! The Redis task store with several services sharing one queue (real Redis of
//! `scripts/services.sh`; skipped without it unless `WEIR_REQUIRE_SERVICES=1`): both serve,
//! each task ends once; a stopped server's tasks are taken over after `claim_timeout`; a
//! cancel on another server stops a running task; idempotency keys hold across servers;
//! priorities with aging hold across the priority streams.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_tasks::*;

/// Counts its runs per task id; sleeps `delay` (forever when `hang`) before answering data.
struct Counting {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    total: AtomicUsize,
    delay: Duration,
}

impl Counting {
    fn new(delay: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            runs: Arc::default(),
            total: AtomicUsize::new(0),
            delay,
        })
    }
}

impl Agent for Counting {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            *self
                .runs
                .lock()
                .unwrap()
                .entry(task.task_id.clone())
                .or_default() += 1;
            self.total.fetch_add(1, Ordering::SeqCst);
            Ok(json!({ "echo": task.data }))
        })
    }
}

fn prefix(name: &str) -> String {
    format!(
        "weir-test:{name}:{}:{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

fn config(url: &str, prefix: &str, consumer: &str, claim: Duration) -> AgentsConfig {
    let mut store = StoreConfig::redis(url, prefix);
    store.claim_timeout = claim;
    store.consumer = Some(consumer.into());
    AgentsConfig {
        store,
        results_ttl: Duration::from_secs(600),
        ..AgentsConfig::default()
    }
}

async fn open(
    url: &str,
    prefix: &str,
    consumer: &str,
    claim: Duration,
    agent: Arc<Counting>,
    concurrency: usize,
) -> TaskService {
    let spec = AgentSpec::in_process(consumer, ["work"], concurrency, agent);
    TaskService::open_with(
        std::path::Path::new("unused"),
        config(url, prefix, consumer, claim),
        vec![spec],
    )
    .await
    .unwrap()
}

async fn wait_all(service: &TaskService, ids: &[String]) -> Vec<TaskView> {
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        let view = service
            .wait(id, Duration::from_secs(120))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("task {id} unknown"));
        assert!(
            view.status.is_terminal(),
            "task {id} stayed {:?}",
            view.status
        );
        views.push(view);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_share_the_queue_and_every_task_ends_once() {
    let Some(url) = weir_connectors::testing::redis_url().await else {
        return;
    };
    let prefix = prefix("share");
    let (a_agent, b_agent) = (Counting::new(Duration::ZERO), Counting::new(Duration::ZERO));
    let claim = Duration::from_secs(30);
    let a = open(&url, &prefix, "a", claim, a_agent.clone(), 4).await;
    let b = open(&url, &prefix, "b", claim, b_agent.clone(), 4).await;
    const N: usize = 2000;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let target = if i % 2 == 0 { &a } else { &b };
        let accepted = target
            .submit(TaskRequest::new("work", json!(i)).priority((i % 3) as i32))
            .await
            .unwrap();
        assert!(accepted.created);
        ids.push(accepted.task_id);
    }
    // Either server answers for every task.
    let views = wait_all(&b, &ids).await;
    for (i, view) in views.iter().enumerate() {
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({ "echo": i })), "{view:?}");
        assert_eq!(view.attempts.len(), 1, "{view:?}");
    }
    let (ran_a, ran_b) = (
        a_agent.total.load(Ordering::SeqCst),
        b_agent.total.load(Ordering::SeqCst),
    );
    assert_eq!(ran_a + ran_b, N, "every task ran exactly once");
    assert!(
        ran_a > 0 && ran_b > 0,
        "both servers ran some: {ran_a} / {ran_b}"
    );
    // Each task ran on the agent its view names.
    for view in &views {
        let agent = view.agent.as_deref().unwrap();
        let runs = if agent == "a" { &a_agent } else { &b_agent };
        assert_eq!(runs.runs.lock().unwrap().get(&view.task_id), Some(&1));
    }
    // Lists read the shared store: every task, finished, from either server.
    let listed = a
        .list(&TaskFilter {
            status: Some(TaskStatus::Succeeded),
            action: None,
            limit: Some(1000),
        })
        .unwrap();
    assert_eq!(listed.len(), 1000);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_servers_tasks_are_taken_over_after_the_claim_timeout() {
    let Some(url) = weir_connectors::testing::redis_url().await else {
        return;
    };
    let prefix = prefix("takeover");
    let claim = Duration::from_millis(600);
    // `a` takes tasks and never finishes them (its attempts take an hour) ...
    let stuck = Counting::new(Duration::from_secs(3600));
    let a = open(&url, &prefix, "a", claim, stuck.clone(), 8).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut request = TaskRequest::new("work", json!(i));
        request.idempotency_key = Some(format!("key-{i}"));
        ids.push(a.submit(request).await.unwrap().task_id);
    }
    // ... until it holds its capacity, 8 of them running.
    for _ in 0..200 {
        if a.agents()[0].in_flight == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.agents()[0].in_flight, 8);
    // Then it stops: its entries stay pending on its consumer, renewed by no one.
    a.shutdown().await;
    drop(a);
    let finisher = Counting::new(Duration::ZERO);
    let b = open(&url, &prefix, "b", claim, finisher.clone(), 4).await;
    let views = wait_all(&b, &ids).await;
    let mut recovered = 0;
    for (i, view) in views.iter().enumerate() {
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({ "echo": i })));
        assert_eq!(view.agent.as_deref(), Some("b"));
        recovered += usize::from(view.attempts.len() == 1 && view.execution_time.is_some());
    }
    assert_eq!(recovered, 40);
    assert_eq!(
        finisher.total.load(Ordering::SeqCst),
        40,
        "each ran once on b"
    );
    // Idempotency keys still name the same tasks, finished, on any server.
    for (i, id) in ids.iter().enumerate() {
        let mut request = TaskRequest::new("work", json!(i));
        request.idempotency_key = Some(format!("key-{i}"));
        let again = b.submit(request).await.unwrap();
        assert_eq!((&again.task_id, again.created), (id, false));
        assert_eq!(again.status, TaskStatus::Succeeded);
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_server_stops_the_running_task_and_keys_hold_across_servers() {
    let Some(url) = weir_connectors::testing::redis_url().await else {
        return;
    };
    let prefix = prefix("cancel");
    let claim = Duration::from_millis(600);
    let slow = Counting::new(Duration::from_secs(3600));
    let a = open(&url, &prefix, "a", claim, slow.clone(), 1).await;
    // `b` has no free capacity for this test's tasks: concurrency 1, kept busy.
    let busy = Counting::new(Duration::from_secs(3600));
    let b = open(&url, &prefix, "b", claim, busy.clone(), 1).await;
    let mut request = TaskRequest::new("work", json!("x"));
    request.idempotency_key = Some("the-key".into());
    let first = a.submit(request.clone()).await.unwrap();
    let second = b.submit(request).await.unwrap();
    assert_eq!(first.task_id, second.task_id, "one task for one key");
    assert!(first.created && !second.created);
    let other = b
        .submit(TaskRequest::new("work", json!("y")))
        .await
        .unwrap();
    for id in [&first.task_id, &other.task_id] {
        for _ in 0..200 {
            if a.status(id).unwrap() == Some(TaskStatus::Running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.status(id).unwrap(), Some(TaskStatus::Running));
    }
    // Whichever server runs the first task, the other cancels it.
    let holder_is_a = a.agents()[0].in_flight == 1
        && a.get(&first.task_id).unwrap().unwrap().agent.as_deref() == Some("a");
    let (canceller, holder) = if holder_is_a { (&b, &a) } else { (&a, &b) };
    let CancelOutcome::Cancelled(view) = canceller.cancel(&first.task_id).unwrap() else {
        panic!("not cancelled");
    };
    assert_eq!(view.status, TaskStatus::Cancelled);
    // The holder lets go of the attempt within a renewal (a third of claim_timeout).
    for _ in 0..200 {
        if holder.agents()[0].in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        holder.agents()[0].in_flight,
        0,
        "the cancelled attempt was dropped"
    );
    assert_eq!(
        a.get(&first.task_id).unwrap().unwrap().status,
        TaskStatus::Cancelled
    );
    assert!(matches!(
        holder.cancel(&first.task_id).unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));
    assert!(matches!(
        a.cancel("no-such-task").unwrap(),
        CancelOutcome::NotFound
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_and_aging_hold_across_the_priority_streams() {
    let Some(url) = weir_connectors::testing::redis_url().await else {
        return;
    };
    let prefix = prefix("order");
    let agent = Counting::new(Duration::ZERO);
    let mut config = config(&url, &prefix, "solo", Duration::from_secs(30));
    config.aging = Duration::from_millis(200);
    // Submit with no agent capacity free: a blocker holds the only slot.
    let order = Arc::new(Mutex::new(Vec::new()));
    struct Recording(Arc<Mutex<Vec<Value>>>, Arc<tokio::sync::Notify>);
    impl Agent for Recording {
        fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
            Box::pin(async move {
                if task.data == json!("block") {
                    self.1.notified().await;
                }
                self.0.lock().unwrap().push(task.data.clone());
                Ok(Value::Null)
            })
        }
    }
    let gate = Arc::new(tokio::sync::Notify::new());
    let spec = AgentSpec::in_process(
        "solo",
        ["work"],
        1,
        Arc::new(Recording(order.clone(), gate.clone())),
    );
    drop(agent);
    let service = TaskService::open_with(std::path::Path::new("unused"), config, vec![spec])
        .await
        .unwrap();
    let block = service
        .submit(TaskRequest::new("work", json!("block")))
        .await
        .unwrap();
    for _ in 0..200 {
        if service.agents()[0].in_flight == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // "old-low" waits long enough to be ahead of "new-high" (2 levels × 200ms aging), but
    // not of "new-higher" (5 levels).
    let mut ids = vec![block.task_id];
    ids.push(
        service
            .submit(TaskRequest::new("work", json!("old-low")))
            .await
            .unwrap()
            .task_id,
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (data, priority) in [("new-low", 0), ("new-high", 2), ("new-higher", 5)] {
        let request = TaskRequest::new("work", json!(data)).priority(priority);
        ids.push(service.submit(request).await.unwrap().task_id);
    }
    gate.notify_one();
    wait_all(&service, &ids).await;
    assert_eq!(
        *order.lock().unwrap(),
        [
            json!("block"),
            json!("new-higher"),
            json!("old-low"),
            json!("new-high"),
            json!("new-low")
        ]
    );
    service.shutdown().await;
}
