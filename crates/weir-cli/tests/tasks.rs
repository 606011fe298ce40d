//! `weir serve` as a process, without external services: its JSON logs (request ids, pipeline
//! and operator context) and the task queue over HTTP and through `weir task` (issue 15's
//! acceptance: `--agents examples/agents.yaml` and nothing else; a `kill -9` with tasks queued,
//! then a restart: every accepted task reaches a terminal state).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The tests' HTTP client (60 s per request).
fn client() -> reqwest::Client {
    weir_connectors::http_client()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// One HTTP call: (status, body, `x-request-id` of the response).
fn http(
    method: &str,
    url: &str,
    body: Option<(&str, String)>,
    request_id: Option<&str>,
) -> (u16, serde_json::Value, Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = client();
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(m, url);
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value, id)
    })
}

/// A running `weir serve`; killed when dropped. Its standard error lines are kept.
struct Server {
    child: Option<Child>,
    url: String,
    port: u16,
    args: Vec<String>,
    /// Extra environment variables of the process.
    env: Vec<(String, String)>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut server = Server {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lines: Arc::default(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = weir()
            .current_dir(repo())
            .arg("serve")
            .args(&self.args)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env_remove("WEIR_LOG")
            .env_remove("WEIR_LOG_FORMAT")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = self.lines.clone();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !told && line.contains("listening on") {
                    told = true;
                    let _ = tx.send(());
                }
                lines.lock().expect("lines").push(line);
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("the server did not start: {}", self.log());
        }
        self.child = Some(child);
    }

    fn log(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        child.wait().expect("wait").code()
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn task_cli(args: &[&str], url: &str) -> Output {
    weir()
        .arg("task")
        .args(args)
        .args(["--server", url])
        .env_remove("WEIR_TOKEN")
        .output()
        .expect("weir task")
}

/// Polls a task until it is terminal.
fn wait_terminal(url: &str, id: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, view, _) = http("GET", &format!("{url}/v1/tasks/{id}"), None, None);
        assert_eq!(status, 200, "{view}");
        let s = view["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "timed_out", "cancelled"].contains(&s) {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "task {id} stayed {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_logs_carry_level_message_time_request_id_pipeline_and_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&[
        "--log-format",
        "json",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let url = server.url.clone();
    // A pipeline that runs until stopped, checkpointing: its events come from task threads.
    let yaml = "name: logged\nsource:\n  type: generator\n  rate: 2000\n  fields:\n    id: id\nsteps:\n  - filter: \"id < 0\"\nsettings:\n  checkpoint: { interval: 100ms }\nsink:\n  type: stdout\n";
    let (status, body, id) = http(
        "POST",
        &format!("{url}/v1/pipelines"),
        Some(("application/yaml", yaml.into())),
        Some("submit-req-1"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(id.as_deref(), Some("submit-req-1"), "the id is returned");
    // A request without an id gets a new one.
    let (status, _, id) = http("GET", &format!("{url}/v1/pipelines"), None, None);
    assert_eq!(status, 200);
    let fresh = id.expect("a request id is made");
    assert!(!fresh.is_empty() && fresh != "submit-req-1");
    // Wait until an operator's checkpoint event is logged, then stop.
    let started = Instant::now();
    while !server.log().contains("checkpoint completed") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body, _) = http(
        "POST",
        &format!("{url}/v1/pipelines/logged/stop"),
        None,
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.terminate(), Some(0), "{}", server.log());

    let lines = server.lines.lock().expect("lines").clone();
    assert!(lines.len() > 3, "{lines:?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        for key in ["level", "message", "time"] {
            assert!(e[key].is_string(), "{key} missing: {e}");
        }
    }
    // The submit request's events carry its id, and so do the pipeline's start events.
    let of_submit: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["request_id"] == "submit-req-1")
        .collect();
    assert!(
        of_submit.iter().any(|e| e["message"] == "request"
            && e["path"] == "/v1/pipelines"
            && e["status"] == 201),
        "{of_submit:?}"
    );
    assert!(
        of_submit.iter().any(|e| e["pipeline"] == "logged"),
        "{of_submit:?}"
    );
    // Events of the pipeline's task threads carry `pipeline` and `operator`.
    let checkpoint = events
        .iter()
        .find(|e| e["message"] == "checkpoint completed")
        .expect("checkpoint event");
    assert_eq!(checkpoint["pipeline"], "logged", "{checkpoint}");
    assert!(checkpoint["operator"].is_string(), "{checkpoint}");
    assert_eq!(checkpoint["level"], "info");
    // The server's own messages are events too.
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on"))),
        "{lines:?}"
    );
}

#[test]
fn tasks_over_http_and_the_cli_with_the_example_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The acceptance: the agents file and nothing else (the data dir only keeps the test's
    // files out of the repository).
    let server = Server::start(&[
        "--agents",
        "examples/agents.yaml",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let url = server.url.clone();

    let (status, body, _) = http(
        "POST",
        &format!("{url}/v1/tasks"),
        Some((
            "application/json",
            r#"{"action":"echo","data":{"x":1}}"#.into(),
        )),
        None,
    );
    assert_eq!(status, 202, "{body}");
    assert!(body["status"].is_string(), "{body}");
    let id = body["task_id"].as_str().expect("task_id").to_string();
    let view = wait_terminal(&url, &id);
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"], serde_json::json!({"x": 1}), "{view}");
    assert_eq!(view["agent"], "echo", "{view}");

    // The same through the CLI.
    let out = task_cli(&["submit", "echo", "--data", r#"{"x":1}"#], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cli_id = text(&out.stdout).trim().to_string();
    assert!(!cli_id.is_empty() && cli_id != id);
    wait_terminal(&url, &cli_id);
    let out = task_cli(&["get", &cli_id], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"], serde_json::json!({"x": 1}), "{view}");

    // Idempotency key through the CLI: the same task comes back.
    let keyed = |k: &str| {
        let out = task_cli(
            &[
                "submit",
                "echo",
                "--data",
                "2",
                "--priority",
                "-1",
                "--timeout",
                "5s",
                "--idempotency-key",
                k,
            ],
            &url,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(keyed("k1"), keyed("k1"));

    // Agents.
    let (status, agents, _) = http("GET", &format!("{url}/v1/agents"), None, None);
    assert_eq!(status, 200);
    let list = agents["agents"].as_array().expect("agents");
    assert!(
        list.iter()
            .any(|a| a["name"] == "echo" && a["capabilities"] == serde_json::json!(["echo"])),
        "{agents}"
    );

    // Errors: unknown task 404, no agent 400, bad body 400, bad --data exit 2.
    let (status, _, _) = http("GET", &format!("{url}/v1/tasks/nope"), None, None);
    assert_eq!(status, 404);
    let (status, body, _) = http(
        "POST",
        &format!("{url}/v1/tasks"),
        Some((
            "application/json",
            r#"{"action":"nobody-does-this","data":1}"#.into(),
        )),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "no_agent", "{body}");
    let (status, body, _) = http(
        "POST",
        &format!("{url}/v1/tasks"),
        Some(("application/json", r#"{"data":1}"#.into())),
        None,
    );
    assert_eq!(status, 400, "{body}");
    let out = task_cli(&["submit", "echo", "--data", "{x"], &url);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--data"),
        "{}",
        text(&out.stderr)
    );
    let out = task_cli(&["get", "nope"], &url);
    assert!(!out.status.success());

    // Metrics.
    let (status, metrics, _) = http("GET", &format!("{url}/metrics"), None, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text").to_string();
    assert!(
        metrics.contains("weir_tasks_total{status=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_tasks_queued "), "{metrics}");
    assert!(
        metrics.contains("weir_task_duration_seconds_count 3"),
        "{metrics}"
    );
}

#[test]
fn kill_9_with_tasks_queued_then_restart_finishes_every_accepted_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let agents = dir.path().join("agents.yaml");
    // A slow agent (4 at a time, 0.2 s each: 500 take 25 s): the queue is still long when the
    // server is killed, even when the submits are slow on a loaded machine.
    std::fs::write(
        &agents,
        "agents:\n  - name: slow\n    kind: command\n    capabilities: [slow]\n    concurrency: 4\n    command:\n      program: sh\n      args: [\"-c\", \"sleep 0.2; cat\"]\n",
    )
    .expect("agents");
    let mut server = Server::start(&[
        "--agents",
        agents.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let url = server.url.clone();
    const N: usize = 500;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let (status, body, _) = http(
            "POST",
            &format!("{url}/v1/tasks"),
            Some((
                "application/json",
                format!(r#"{{"action":"slow","data":{i}}}"#),
            )),
            None,
        );
        assert_eq!(status, 202, "{body}");
        ids.push(body["task_id"].as_str().expect("task_id").to_string());
    }
    let (_, metrics, _) = http("GET", &format!("{url}/metrics"), None, None);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    server.kill9();
    // Most were still queued when it died (otherwise the test proves little).
    let queued_line = metrics
        .lines()
        .find(|l| l.starts_with("weir_tasks_queued "))
        .expect("weir_tasks_queued");
    let queued: f64 = queued_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(queued > 0.0, "{queued_line}");

    server.spawn();
    let mut results = std::collections::BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let view = wait_terminal(&url, id);
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["result"], serde_json::json!(i), "{view}");
        results.insert(id.clone(), i);
    }
    assert_eq!(results.len(), N);
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
}

/// Issue 15's pipeline items end to end: `weir serve --agents examples/pipeline-agents.yaml`
/// serves a `kind: pipeline` agent (a filter and a map over each task's data); `weir run
/// examples/task-step.yaml` sends a task per record to that server (`task:` with `server:`)
/// and writes each record with its task's result; `GET /v1/tasks` and `weir task list` list
/// the tasks by status and action.
#[test]
fn pipeline_agents_the_task_step_and_the_task_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&[
        "--agents",
        "examples/pipeline-agents.yaml",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let url = server.url.clone();

    // The pipeline agent: every result is its steps' output; a dropped record's is null.
    let mut ids = Vec::new();
    for x in [-3i64, 0, 4, 250] {
        let (status, body, _) = http(
            "POST",
            &format!("{url}/v1/tasks"),
            Some((
                "application/json",
                format!(r#"{{"action":"score","data":{{"x":{x}}}}}"#),
            )),
            None,
        );
        assert_eq!(status, 202, "{body}");
        ids.push((x, body["task_id"].as_str().expect("task_id").to_string()));
    }
    for (x, id) in &ids {
        let view = wait_terminal(&url, id);
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["agent"], "scorer", "{view}");
        let expected = if *x < 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!({"x": x, "score": x * 2, "big": *x > 100})
        };
        assert_eq!(view["result"], expected, "x = {x}: {view}");
    }

    // The task step: a task per record, its result in `echoed`.
    let out_file = repo().join("target/examples/task-step.jsonl");
    let _ = std::fs::remove_file(&out_file);
    let out = weir()
        .current_dir(repo())
        .args(["run", "examples/task-step.yaml", "--progress", "never"])
        .env("WEIR_SERVER", &url)
        .output()
        .expect("weir run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        let n = i as i64;
        assert_eq!(row["n"], n, "{row}");
        assert_eq!(
            row["echoed"],
            serde_json::json!({"n": n, "sq": n * n}),
            "{row}"
        );
    }

    // The list: by status and action, over HTTP and with `weir task list`.
    let (status, list, _) = http(
        "GET",
        &format!("{url}/v1/tasks?status=succeeded&action=echo"),
        None,
        None,
    );
    assert_eq!(status, 200, "{list}");
    let tasks = list["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 20, "{list}");
    assert!(
        tasks
            .iter()
            .all(|t| t["action"] == "echo" && t["status"] == "succeeded" && t["agent"] == "echo"),
        "{list}"
    );
    let (_, limited, _) = http("GET", &format!("{url}/v1/tasks?limit=3"), None, None);
    assert_eq!(
        limited["tasks"].as_array().map(Vec::len),
        Some(3),
        "{limited}"
    );
    let (status, body, _) = http("GET", &format!("{url}/v1/tasks?status=done"), None, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["key"], "status", "{body}");
    let (status, body, _) = http("GET", &format!("{url}/v1/tasks?colour=red"), None, None);
    assert_eq!(status, 400, "{body}");

    let out = task_cli(&["list", "--action", "score", "--json"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut listed_ids: Vec<&str> = listed["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().unwrap_or_default())
        .collect();
    let mut expected: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    listed_ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed_ids, expected);
    let out = task_cli(&["list", "--status", "succeeded"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("TASK"), "{table}");
    assert_eq!(table.lines().count(), 1 + 24, "{table}");
}

/// Submits `(data, idempotency key)` tasks of action `work` concurrently, alternating between
/// the servers; returns the ids in order.
fn submit_all(urls: &[&str], tasks: &[(usize, Option<String>)]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = client();
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        let mut handles = Vec::with_capacity(tasks.len());
        for (i, (data, key)) in tasks.iter().enumerate() {
            let url = format!("{}/v1/tasks", urls[i % urls.len()]);
            let body = match key {
                Some(k) => {
                    serde_json::json!({"action": "work", "data": data, "idempotency_key": k})
                }
                None => serde_json::json!({"action": "work", "data": data}),
            };
            let (client, limit) = (client.clone(), limit.clone());
            handles.push(tokio::spawn(async move {
                let _permit = limit.acquire().await.expect("permit");
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("POST {url}: {e}"));
                let status = resp.status().as_u16();
                let text = resp.text().await.expect("body");
                let body: serde_json::Value = serde_json::from_str(&text).expect("json");
                assert!(status == 202 || status == 200, "{status} {body}");
                body["task_id"].as_str().expect("task_id").to_string()
            }));
        }
        let mut ids = Vec::with_capacity(handles.len());
        for h in handles {
            ids.push(h.await.expect("submit"));
        }
        ids
    })
}

/// An agents file for servers sharing the Redis store at `prefix`: `work` runs `sh`, which
/// answers `{"server": $WEIR_TEST_SERVER, "data": DATA}` after `delay`.
fn shared_agents(dir: &Path, url: &str, prefix: &str, claim: &str, delay: &str) -> PathBuf {
    let agents = dir.join("agents.yaml");
    std::fs::write(
        &agents,
        format!(
            r#"store: {{ type: redis, url: "{url}", prefix: "{prefix}", claim_timeout: {claim} }}
agents:
  - name: worker
    kind: command
    capabilities: [work]
    concurrency: 4
    command:
      program: sh
      args: ["-c", "sleep {delay}; printf '{{\"server\":\"%s\",\"data\":%s}}' \"$WEIR_TEST_SERVER\" \"$(cat)\""]
      env: [PATH, WEIR_TEST_SERVER]
"#
        ),
    )
    .expect("agents");
    agents
}

/// Two servers `a` and `b` (their name in `WEIR_TEST_SERVER`) with the agents of
/// [`shared_agents`] under a fresh prefix, each with its own data directory.
fn shared_pair(dir: &Path, url: &str, name: &str, claim: &str, delay: &str) -> (Server, Server) {
    let agents = shared_agents(dir, url, &unique_prefix(name), claim, delay);
    let agents = agents.to_str().expect("utf-8");
    let start = |server: &str| {
        let data = dir.join(server).to_string_lossy().into_owned();
        Server::start_with_env(
            &["--agents", agents, "--data-dir", &data],
            &[("WEIR_TEST_SERVER", server)],
        )
    };
    (start("a"), start("b"))
}

fn redis_url() -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(weir_connectors::testing::redis_url())
}

fn unique_prefix(name: &str) -> String {
    format!(
        "weir-test:{name}:{}:{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// Issue 15's Redis store: two `weir serve` processes share one queue; 2,000 tasks submitted
/// to both end `succeeded` exactly once (one attempt, its own result), and both ran some.
#[test]
fn two_servers_share_one_redis_queue() {
    let Some(url) = redis_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = shared_pair(dir.path(), &url, "two", "10s", "0");
    const N: usize = 2000;
    let tasks: Vec<(usize, Option<String>)> = (0..N).map(|i| (i, None)).collect();
    let ids = submit_all(&[&a.url, &b.url], &tasks);
    let mut ran = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let view = wait_terminal(if i % 3 == 0 { &a.url } else { &b.url }, id);
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["result"]["data"], serde_json::json!(i), "{view}");
        assert_eq!(view["attempts"].as_array().map(Vec::len), Some(1), "{view}");
        let server = view["result"]["server"]
            .as_str()
            .expect("server")
            .to_string();
        *ran.entry(server).or_insert(0) += 1;
    }
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        N
    );
    assert!(
        ran.get("a").is_some_and(|n| *n > 0) && ran.get("b").is_some_and(|n| *n > 0),
        "both servers ran some: {ran:?}"
    );
}

/// kill -9 of one of two servers sharing the Redis store while it runs tasks: the other
/// takes over its tasks after `claim_timeout`; every accepted task ends `succeeded` once with
/// its own result, and idempotency keys resubmitted to either server give the same ids.
#[test]
fn kill_9_of_one_server_moves_its_tasks_to_the_other() {
    let Some(url) = redis_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut a, b) = shared_pair(dir.path(), &url, "kill", "1s", "0.1");
    const N: usize = 300;
    let tasks: Vec<(usize, Option<String>)> =
        (0..N).map(|i| (i, Some(format!("order-{i}")))).collect();
    let ids = submit_all(&[&a.url, &b.url], &tasks);
    // `a` is killed while it runs tasks (4 at a time, 0.1 s each: most are still queued).
    let running_on_a =
        || {
            let (_, metrics, _) = http("GET", &format!("{}/metrics", a.url), None, None);
            metrics.as_str().unwrap_or_default().lines().any(|l| {
                l.starts_with("weir_tasks_total{status=\"running\"}") && !l.ends_with(" 0")
            })
        };
    let started = Instant::now();
    while !running_on_a() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a never ran a task"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    let mut ran = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let view = wait_terminal(&b.url, id);
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["result"]["data"], serde_json::json!(i), "{view}");
        let server = view["result"]["server"]
            .as_str()
            .expect("server")
            .to_string();
        *ran.entry(server).or_insert(0) += 1;
    }
    assert!(ran.get("b").is_some_and(|n| *n > 0), "{ran:?}");
    assert!(
        b.log().contains("took over"),
        "b took over a's pending tasks: {}",
        b.log()
    );
    // The same keys, to the surviving server and to a restarted `a`: the same tasks.
    a.spawn();
    let again = submit_all(&[&b.url, &a.url], &tasks);
    assert_eq!(again, ids);
}
