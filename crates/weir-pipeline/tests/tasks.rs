//! Pipelines and tasks in one process: a `kind: pipeline` agent serving tasks with its steps,
//! the errors of a bad pipeline agent, and the `task:` step sending a task per record to the
//! task service of the process (the `echo` example agent) with failures as dead letters.

use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use weir_core::Environment;
use weir_pipeline::Pipeline;
use weir_tasks::{
    Agent, AgentError, AgentSpec, AgentsConfig, TaskFilter, TaskInput, TaskRequest, TaskService,
    TaskStatus,
};

fn with_pipelines(yaml: &str) -> AgentsConfig {
    let mut config = AgentsConfig::parse(yaml, "agents.yaml").expect("agents file");
    config.pipelines = Some(weir_pipeline::agent::builder());
    config
}

const SCORER: &str = r#"
results_ttl: 10m
agents:
  - name: scorer
    kind: pipeline
    capabilities: [score]
    concurrency: 16
    policy: { retries: 0, timeout: 20s }
    pipeline:
      steps:
        - filter: "x % 3 != 0"
        - map: { y: "x * 2" }
        - drop: [x]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_agent_serves_each_task_through_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let service = TaskService::open(dir.path(), with_pipelines(SCORER))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for x in 0..300i64 {
        let accepted = service
            .submit(TaskRequest::new("score", json!({ "x": x })))
            .await
            .unwrap();
        ids.push((x, accepted.task_id));
    }
    for (x, id) in &ids {
        let view = service
            .wait(id, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, TaskStatus::Succeeded, "x = {x}: {view:?}");
        assert_eq!(view.agent.as_deref(), Some("scorer"));
        // The filter drops multiples of 3: their tasks end with a null result.
        let expected = if x % 3 == 0 {
            Value::Null
        } else {
            json!({ "y": x * 2 })
        };
        // (`null` is no result: the view's `result` is null.)
        assert_eq!(view.result.unwrap_or(Value::Null), expected, "x = {x}");
    }
    // A record a step fails on fails its task with the step and the error; data that is not
    // an object is refused.
    let bad = service
        .submit(TaskRequest::new("score", json!({ "x": "seven" })))
        .await
        .unwrap();
    let view = service
        .wait(&bad.task_id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    let error = view.error.unwrap_or_default();
    assert!(error.contains("steps[0].filter"), "{error}");
    let scalar = service
        .submit(TaskRequest::new("score", json!(7)))
        .await
        .unwrap();
    let view = service
        .wait(&scalar.task_id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    assert!(
        view.error.unwrap_or_default().contains("takes an object"),
        "{:?}",
        view.attempts
    );
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pipeline_agent_is_refused_with_its_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let open = |yaml: String| {
        let dir = dir.path().to_path_buf();
        async move {
            TaskService::open(&dir, with_pipelines(&yaml))
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string()
        }
    };
    let e = open(SCORER.replace("- drop: [x]", "- select: { y: y }")).await;
    assert!(
        e.contains("steps[2].select") && e.contains("not available in a pipeline agent"),
        "{e}"
    );
    let e = open(SCORER.replace("- drop: [x]", "- drop: [_task]")).await;
    assert!(e.contains("cannot be dropped"), "{e}");
    let e =
        open(SCORER.replace("      steps:", "      sink: { type: stdout }\n      steps:")).await;
    assert!(e.contains("sink") && e.contains("not available"), "{e}");
    let e = open(SCORER.replace("x * 2", "x * ")).await;
    assert!(e.contains("steps[1].map"), "{e}");
    // Without the pipeline runtime (a program that does not run pipelines), refused.
    let config = AgentsConfig::parse(SCORER, "agents.yaml").unwrap();
    let e = TaskService::open(dir.path(), config).await.unwrap_err();
    assert!(e.to_string().contains("agents[0].pipeline"), "{e}");
}

/// An agent whose every attempt fails.
struct Broken;

impl Agent for Broken {
    fn run<'a>(
        &'a self,
        _: &'a TaskInput,
    ) -> Pin<Box<dyn Future<Output = Result<Value, AgentError>> + Send + 'a>> {
        Box::pin(async { Err(AgentError::Failed("the press is broken".into())) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_step_puts_each_tasks_result_in_a_field_and_failures_in_dead_letters() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents.yaml");
    let config = AgentsConfig::from_file(&example).unwrap();
    let policy = serde_yaml::from_str("retries: 1\nbackoff: { min: 1ms, max: 2ms }").unwrap();
    let broken = AgentSpec::in_process("broken", ["press"], 2, Arc::new(Broken)).policy(policy);
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        TaskService::open_with(&dir.path().join("tasks"), config, vec![broken])
            .await
            .unwrap(),
    );
    service.register_local();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let run = |yaml: String| async move {
        tokio::task::spawn_blocking(move || {
            let pipeline = Pipeline::parse(&yaml, "tasks_step.yaml").map_err(|e| e.to_string())?;
            let env = Environment::with_config(pipeline.config());
            pipeline.build(&env).map_err(|e| e.to_string())?;
            env.execute().map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .unwrap()
    };
    let read = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    // A task per record to the `echo` agent (a `command` running `cat`): each record gets
    // its own task's result, in input order.
    run(format!(
        r#"
name: echo_step
source: {{ type: generator, count: 40, fields: {{ n: id }} }}
steps:
  - task: {{ action: echo, data: {{ n: n, twice: "n * 2" }}, into: echoed, workers: 4 }}
sink: {{ type: file, path: {out} }}
"#,
        out = out.display()
    ))
    .await
    .unwrap();
    let rows = read(&out);
    assert_eq!(rows.len(), 40);
    for (i, row) in rows.iter().enumerate() {
        let n = i as i64;
        assert_eq!(row["n"], n, "{row}");
        assert_eq!(row["echoed"], json!({ "n": n, "twice": n * 2 }), "{row}");
    }
    let echo_tasks = || {
        service
            .list(&TaskFilter {
                status: None,
                action: Some("echo".into()),
                limit: None,
            })
            .unwrap()
            .len()
    };
    assert_eq!(echo_tasks(), 40);

    // The same records again (as after a restore from a checkpoint): each finds its task by
    // its idempotency key (pipeline, step, content) and gets its result; none is submitted.
    let echo_step = |name: &str, key: &str, out: &std::path::Path| {
        format!(
            r#"
name: {name}
source: {{ type: generator, count: 40, fields: {{ n: id }} }}
steps:
  - task: {{ action: echo, data: {{ n: n, twice: "n * 2" }}, into: echoed, workers: 4{key} }}
sink: {{ type: file, path: {out} }}
"#,
            out = out.display()
        )
    };
    let replay = dir.path().join("replay.jsonl");
    run(echo_step("echo_step", "", &replay)).await.unwrap();
    assert_eq!(read(&replay), rows);
    assert_eq!(echo_tasks(), 40, "a replay submits no new task");
    // An `idempotency_key` expression names the task instead: records with equal keys share
    // the first one's task (and result).
    let keyed = dir.path().join("keyed.jsonl");
    run(echo_step(
        "keyed_step",
        r#", idempotency_key: "n % 4""#,
        &keyed,
    ))
    .await
    .unwrap();
    let keyed = read(&keyed);
    assert_eq!(keyed.len(), 40);
    for (i, row) in keyed.iter().enumerate() {
        let k = (i % 4) as i64;
        assert_eq!(row["echoed"], json!({ "n": k, "twice": k * 2 }), "{row}");
    }
    assert_eq!(echo_tasks(), 44);

    // A task that fails (every attempt of its budget) sends its record to the dead letters
    // with the task's error; no record goes on.
    std::fs::remove_file(&out).unwrap();
    run(format!(
        r#"
name: press_step
source: {{ type: generator, count: 5, fields: {{ n: id }} }}
steps:
  - task: {{ action: press, into: pressed }}
sink: {{ type: file, path: {out} }}
dead_letter: {{ type: file, path: {dead} }}
"#,
        out = out.display(),
        dead = dead.display()
    ))
    .await
    .unwrap();
    assert_eq!(read(&out).len(), 0);
    let mut dead = read(&dead);
    dead.sort_by_key(|d| d["record"]["n"].as_i64());
    assert_eq!(dead.len(), 5, "{dead:?}");
    for (i, d) in dead.iter().enumerate() {
        assert_eq!(d["stage"], "steps[0].task", "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ended failed") && error.contains("the press is broken"),
            "{error}"
        );
        assert_eq!(d["record"]["n"], i as i64, "{d}");
    }

    // Without a task service in the process and without `server:`, the job fails with the
    // reason.
    service.shutdown().await;
    drop(service);
    let e = run(
        "name: nowhere\nsource: { type: generator, count: 1, fields: { n: id } }\nsteps:\n  - task: { action: echo, into: e }\nsink: { type: discard }\n".into(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("no task service") && e.contains("server"), "{e}");
}
