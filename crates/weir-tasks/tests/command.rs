//! `command` agents: timeouts kill the process group (no orphan), cancellation kills a running
//! attempt, the environment allow-list, output limits, and the `echo` example.

use serde_json::json;
use std::time::{Duration, Instant};
use weir_tasks::{AgentsConfig, CancelOutcome, TaskRequest, TaskService, TaskStatus};

/// Pids of live (non-zombie) processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if cmdline.contains(marker) && !zombie {
            found.push(pid);
        }
    }
    found
}

async fn wait_for_processes(marker: &str, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(marker).len() < at_least {
        assert!(
            Instant::now() < deadline,
            "processes {marker} never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_no_processes(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "orphan processes left: {:?}",
            processes_with(marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(yaml: &str) -> AgentsConfig {
    AgentsConfig::parse(yaml, "test.yaml").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_slower_than_its_timeout_ends_timed_out_and_its_processes_are_killed() {
    // `sh` starts a background `sleep` (a grandchild) and waits on a second one: the whole
    // process group must go.
    let marker = format!("{}.{}", 300 + fastrand_u16(), std::process::id());
    let yaml = format!(
        "\
agents:
  - name: slow
    kind: command
    capabilities: [slow]
    command: {{ program: sh, args: [\"-c\", \"sleep {marker} & sleep {marker}\"] }}
    policy: {{ retries: 1, backoff: {{ min: 1ms }} }}
"
    );
    let dir = tempfile::tempdir().unwrap();
    let service = TaskService::open(dir.path(), config(&yaml)).await.unwrap();
    let accepted = service
        .submit(TaskRequest::new("slow", json!({})).timeout(Duration::from_millis(1500)))
        .await
        .unwrap();
    // The processes run (so the check below would see them).
    wait_for_processes(&format!("sleep {marker}"), 2).await;
    let view = service
        .wait(&accepted.task_id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::TimedOut, "{view:?}");
    assert_eq!(
        view.attempts.len(),
        2,
        "retries: 1 gives two attempts: {view:?}"
    );
    for attempt in &view.attempts {
        assert_eq!(attempt.status, TaskStatus::TimedOut);
        assert!(attempt.error.as_deref().unwrap().contains("timed out"));
    }
    assert!(
        view.error.as_deref().unwrap().contains("attempt 2 on slow"),
        "{view:?}"
    );
    wait_for_no_processes(&format!("sleep {marker}")).await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_kills_its_process_and_a_queued_one_never_runs() {
    let marker = format!("{}.{}", 600 + fastrand_u16(), std::process::id());
    let yaml = format!(
        "\
agents:
  - name: slow
    kind: command
    capabilities: [slow]
    concurrency: 1
    command: {{ program: sleep, args: [\"{marker}\"] }}
"
    );
    let dir = tempfile::tempdir().unwrap();
    let service = TaskService::open(dir.path(), config(&yaml)).await.unwrap();
    let running = service
        .submit(TaskRequest::new("slow", json!({})))
        .await
        .unwrap();
    let queued = service
        .submit(TaskRequest::new("slow", json!({})))
        .await
        .unwrap();
    wait_for_processes(&format!("sleep {marker}"), 1).await;
    assert_eq!(
        service.status(&queued.task_id).unwrap(),
        Some(TaskStatus::Queued)
    );
    let CancelOutcome::Cancelled(view) = service.cancel(&queued.task_id).unwrap() else {
        panic!("queued task not cancelled");
    };
    assert_eq!(view.status, TaskStatus::Cancelled);
    assert!(view.attempts.is_empty());
    let CancelOutcome::Cancelled(view) = service.cancel(&running.task_id).unwrap() else {
        panic!("running task not cancelled");
    };
    assert_eq!(view.status, TaskStatus::Cancelled);
    assert_eq!(view.attempts.len(), 1);
    wait_for_no_processes(&format!("sleep {marker}")).await;
    // Cancelling again changes nothing; an unknown id is not found.
    assert!(matches!(
        service.cancel(&running.task_id).unwrap(),
        CancelOutcome::AlreadyFinished(v) if v.status == TaskStatus::Cancelled
    ));
    assert_eq!(service.cancel("nope").unwrap(), CancelOutcome::NotFound);
    // The agent's slot was freed: a new task runs (and is cancelled in turn).
    let third = service
        .submit(TaskRequest::new("slow", json!({})))
        .await
        .unwrap();
    wait_for_processes(&format!("sleep {marker}"), 1).await;
    service.cancel(&third.task_id).unwrap();
    wait_for_no_processes(&format!("sleep {marker}")).await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_env_is_an_allow_list_and_output_is_limited() {
    let yaml = r#"
agents:
  - name: env
    kind: command
    capabilities: [env]
    command:
      program: sh
      args:
        - -c
        - 'printf "{\"path\":\"%s\",\"home\":\"%s\",\"id\":\"%s\"}" "$PATH" "$HOME" "$WEIR_TASK_ID"'
      env: [PATH]
    policy: { retries: 0 }
  - name: big
    kind: command
    capabilities: [big]
    command: { program: head, args: ["-c", "5000", "/dev/zero"], max_stdout: 1000 }
    policy: { retries: 0 }
  - name: fails
    kind: command
    capabilities: [fails]
    command: { program: sh, args: ["-c", "echo broken >&2; exit 3"] }
    policy: { retries: 0 }
"#;
    let dir = tempfile::tempdir().unwrap();
    let service = TaskService::open(dir.path(), config(yaml)).await.unwrap();
    let t = service
        .submit(TaskRequest::new("env", json!({})))
        .await
        .unwrap();
    let view = service
        .wait(&t.task_id, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
    let result = view.result.unwrap();
    assert_eq!(result["path"], std::env::var("PATH").unwrap());
    assert_eq!(result["home"], "", "HOME is not on the allow-list");
    assert_eq!(result["id"], t.task_id.as_str());

    let t = service
        .submit(TaskRequest::new("big", json!({})))
        .await
        .unwrap();
    let view = service
        .wait(&t.task_id, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    assert!(view.error.unwrap().contains("more than 1000 bytes"));

    let t = service
        .submit(TaskRequest::new("fails", json!({})))
        .await
        .unwrap();
    let view = service
        .wait(&t.task_id, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    let error = view.error.unwrap();
    assert!(
        error.contains("exit status: 3") && error.contains("broken"),
        "{error}"
    );
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_example_returns_the_tasks_data() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents.yaml");
    let config = AgentsConfig::from_file(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = TaskService::open(dir.path(), config).await.unwrap();
    let request: TaskRequest = serde_json::from_str(r#"{"action":"echo","data":{"x":1}}"#).unwrap();
    let accepted = service.submit(request).await.unwrap();
    let view = service
        .wait(&accepted.task_id, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
    assert_eq!(view.result, Some(json!({"x": 1})));
    assert_eq!(view.agent.as_deref(), Some("echo"));
    // The view has exactly the fields of SERVE.md.
    let v = serde_json::to_value(&view).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "agent",
            "attempts",
            "error",
            "execution_time",
            "result",
            "status",
            "task_id"
        ]
    );
    let agents = service.agents();
    assert_eq!(agents[0].name, "echo");
    assert_eq!(agents[0].capabilities, ["echo"]);
    assert_eq!(agents[0].succeeded, 1);
    service.shutdown().await;
}

/// A number that differs between runs (a unique `sleep` argument to find the processes by).
fn fastrand_u16() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 60_000
}
