//! The dashboard of `weir serve` in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/browser.sh`), driven over WebDriver: `weir serve`
//! as a process, two pipelines (an endless generator and a Redis stream fed through
//! `POST /v1/ingest/{schema}` with a dead-letter file), then the pages: every operator in the
//! graph, rates above zero, a dead letter after a bad record is ingested, Stop and Resume from
//! the buttons (checked through the API), the agents-and-tasks panel, labels on every control,
//! and Tab reaching the Stop button; the checkpoint history (route and page); the page's load
//! times measured by the browser (recorded in `load-times.json`, not asserted). A second test
//! runs with `auth.enabled: true`: a viewer token sees no Stop button (and the API answers
//! 403), an operator token stops and resumes. A third submits 50 pipelines: all are listed with
//! live rates, a pipeline's page opens and the list comes back, and live updates keep arriving;
//! the main thread's long tasks and the feed's event sizes are recorded in `fifty.json` (not
//! asserted). Screenshots go to `target/dashboard-screenshots/`.
//!
//! Without Chromium (or Redis) the test skips, unless `WEIR_REQUIRE_SERVICES=1` (CI, through
//! `scripts/test.sh`), where it fails.

mod common;
use common::{redis_del, repo, weir};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_connectors::{block_on, testing};

/// How long any awaited state may take (generous: the machine is shared).
const PATIENCE: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// chromedriver and the browser, or None (skip) when missing outside CI.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let driver = on_path("chromedriver");
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        _ if std::env::var("WEIR_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("chromium and chromedriver are required: run `bash scripts/browser.sh`")
        }
        _ => {
            eprintln!("skipped: chromium/chromedriver not installed (bash scripts/browser.sh)");
            None
        }
    }
}

/// Starts `weir serve`; returns the process and the log file (standard error copied there).
fn start_server(config: &Path, data: &Path, port: u16, log: &Path) -> Killed {
    let mut child = weir()
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .arg("--agents")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/agents.yaml"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut file = std::fs::File::create(log).expect("log");
    std::thread::spawn(move || {
        use std::io::Write;
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if !told && line.contains("listening on") {
                told = true;
                let _ = tx.send(());
            }
        }
    });
    let server = Killed(child);
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!(
            "weir serve did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    server
}

async fn api(method: &str, url: &str, body: Option<(&str, String)>) -> (u16, Value) {
    api_as(method, url, body, None).await
}

/// [`api`] with a bearer token.
async fn api_as(
    method: &str,
    url: &str,
    body: Option<(&str, String)>,
    token: Option<&str>,
) -> (u16, Value) {
    let client = weir_connectors::http_client().build().expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method.clone(), url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some((content_type, b)) = body {
        req = req.header("content-type", content_type).body(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Runs `script` (a function body returning a value) in the page until `check` accepts its
/// result; panics with `what` and the last result after [`PATIENCE`].
async fn wait_for(
    client: &Client,
    what: &str,
    script: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if check(&value) {
            return value;
        }
        if started.elapsed() > PATIENCE {
            panic!("{what}: still {value} after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = repo().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// The controls of the page that have no accessible label (aria-label, aria-labelledby or a
/// <label>), as "tag#id" strings.
const UNLABELLED: &str = r#"
return [...document.querySelectorAll('button, input, select, textarea')]
  .filter((e) => e.type !== 'hidden')
  .filter((e) => !((e.getAttribute('aria-label') || '').trim()
    || e.getAttribute('aria-labelledby') || (e.labels && e.labels.length)))
  .map((e) => `${e.tagName.toLowerCase()}#${e.id}`);
"#;

#[test]
fn the_dashboard_shows_and_drives_the_pipelines_in_a_real_browser() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some((chromedriver, chromium)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = testing::unique_name("dash_readings");
    run_against_server(
        dir.path(),
        &format!("ingest:\n  redis_url: {redis}\n  streams:\n    dash.reading: {stream}\n"),
        |url| {
            let (redis, stream) = (&redis, &stream);
            let (chromedriver, chromium) = (&chromedriver, &chromium);
            async move { scenario(&url, redis, stream, chromedriver, chromium).await }
        },
        || redis_del(&redis, &stream),
    );
}

/// Starts `weir serve` with `config` (its text) in `dir`, runs `scenario(url)` on a runtime,
/// stops the server and runs `cleanup`; a panic of the scenario is raised again after the
/// server's log is printed.
fn run_against_server<F, Fut>(dir: &Path, config: &str, scenario: F, cleanup: impl FnOnce())
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::any::Any + Send>>>,
{
    let path = dir.join("weir.yaml");
    std::fs::write(&path, config).expect("config");
    let port = free_port();
    let log = dir.join("serve.log");
    let server = start_server(&path, &dir.join("data"), port, &log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(scenario(format!("http://127.0.0.1:{port}")));
    drop(server);
    cleanup();
    if let Err(panic) = result {
        eprintln!(
            "server log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::panic::resume_unwind(panic);
    }
}

/// The browser part; a panic is returned (after closing the browser) so the caller can print
/// the server's log.
async fn scenario(
    url: &str,
    redis: &str,
    stream: &str,
    chromedriver: &Path,
    chromium: &Path,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    // The pipelines: an endless generator, and a Redis stream fed through ingest whose `map`
    // divides by a field (a 0 makes a dead letter).
    let (status, body) = api(
        "POST",
        &format!("{url}/v1/schemas"),
        Some((
            "application/yaml",
            "name: dash.reading\nfields:\n  - { name: id, type: int, required: true }\n  - { name: value, type: int, required: true }\n".into(),
        )),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let generator = "name: dash_gen
settings: { checkpoint: { interval: 500ms } }
source:
  type: generator
  rate: 300
  fields: { id: id, k: \"id % 10\" }
steps:
  - filter: \"k < 8\"
  - map: { double: \"id * 2\" }
sink: { type: discard }
";
    let ingest = format!(
        "name: dash_ingest
settings: {{ checkpoint: {{ interval: 300ms }} }}
source: {{ type: redis_stream, url: \"{redis}\", stream: {stream}, group: dash }}
steps:
  - validate: dash.reading
  - map: {{ inverse: \"100 / value\" }}
sink: {{ type: discard }}
dead_letter: {{ type: file, path: dash-dead.jsonl }}
"
    );
    for yaml in [generator.to_string(), ingest] {
        let (status, body) = api(
            "POST",
            &format!("{url}/v1/pipelines"),
            Some(("application/yaml", yaml)),
        )
        .await;
        assert_eq!(status, 201, "submit: {body}");
    }
    let (status, body) = api(
        "POST",
        &format!("{url}/v1/ingest/dash.reading"),
        Some((
            "application/json",
            r#"[{"id": 1, "value": 5}, {"id": 2, "value": 4}]"#.into(),
        )),
    )
    .await;
    assert_eq!(status, 202, "ingest: {body}");

    with_browser(chromedriver, chromium, url, |client, url| async move {
        pages(&client, &url).await
    })
    .await
}

/// Starts chromedriver and a headless Chromium, runs `body` with the client, closes both; a
/// panic of `body` is returned.
async fn with_browser<F, Fut>(
    chromedriver: &Path,
    chromium: &Path,
    url: &str,
    body: F,
) -> Result<(), Box<dyn std::any::Any + Send>>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let driver_port = free_port();
    let driver = Killed(
        Command::new(chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver"),
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let connect = async {
        let started = Instant::now();
        loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{driver_port}"))
                .await
            {
                Ok(c) => return c,
                Err(e) if started.elapsed() < Duration::from_secs(60) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start the browser through chromedriver: {e}"),
            }
        }
    };
    let client = connect.await;
    let outcome = tokio::spawn(body(client.clone(), url.to_string()))
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => panic,
            Err(e) => Box::new(e.to_string()) as Box<dyn std::any::Any + Send>,
        });
    let _ = client.close().await;
    drop(driver);
    outcome
}

async fn pages(client: &Client, url: &str) {
    // A first navigation elsewhere on the server starts the browser's renderer and network
    // stack, so the dashboard's first load below measures a first visit in a running browser
    // (empty cache), not Chromium's start-up.
    client
        .goto(&format!("{url}/health"))
        .await
        .expect("open /health");
    // Auth is disabled: the page opens directly, without the login form.
    client
        .goto(&format!("{url}/"))
        .await
        .expect("open the dashboard");
    wait_for(
        client,
        "the pipelines list",
        "return document.querySelectorAll('#pipelines tr').length",
        |v| v.as_u64() == Some(2),
    )
    .await;
    let login_hidden = client
        .execute("return document.getElementById('login').hidden", vec![])
        .await
        .expect("login");
    assert_eq!(
        login_hidden,
        json!(true),
        "with auth disabled the page opens directly"
    );
    // Rates rise above zero (the In/s cell of the generator's row, from the live feed).
    wait_for(
        client,
        "the generator's In/s in the list",
        "const c = document.querySelector('tr[data-pipeline=\"dash_gen\"] td:nth-child(3)'); return c ? parseFloat(c.textContent) : null",
        |v| v.as_f64().is_some_and(|x| x > 0.0),
    )
    .await;
    screenshot(client, "pipelines").await;
    load_times(client, url).await;

    // The generator's page: every operator of the API's graph is a node.
    let (_, detail) = api("GET", &format!("{url}/v1/pipelines/dash_gen"), None).await;
    let mut expected: Vec<String> = detail["graph"]
        .as_array()
        .expect("graph")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect();
    assert!(expected.len() >= 3, "source, steps and sink: {detail}");
    expected.sort();
    client
        .goto(&format!("{url}/#/p/dash_gen"))
        .await
        .expect("pipeline page");
    let nodes = wait_for(
        client,
        "the graph's nodes",
        "return [...document.querySelectorAll('#graph svg g.node')].map((g) => g.dataset.op).sort()",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert_eq!(nodes, json!(expected), "the graph shows every operator");
    let edges = client
        .execute(
            "return document.querySelectorAll('#graph svg path.edge:not(.dashed)').length",
            vec![],
        )
        .await
        .expect("edges");
    assert_eq!(
        edges.as_u64(),
        Some(expected.len() as u64 - 1),
        "a chain of edges"
    );
    wait_for(
        client,
        "the pipeline's In/s",
        "return parseFloat(document.getElementById('kv-ri').textContent)",
        |v| v.as_f64().is_some_and(|x| x > 0.0),
    )
    .await;
    wait_for(
        client,
        "an operator's In/s in the operators table",
        "return Math.max(...[...document.querySelectorAll('#operators tr td:nth-child(3)')].map((c) => parseFloat(c.textContent) || 0))",
        |v| v.as_f64().is_some_and(|x| x > 0.0),
    )
    .await;
    wait_for(
        client,
        "the throughput chart",
        "return document.querySelector('#chart polyline.in').getAttribute('points').split(' ').length",
        |v| v.as_u64().is_some_and(|n| n >= 2),
    )
    .await;
    screenshot(client, "pipeline").await;

    // The checkpoint history: the route lists the retained checkpoints newest first with their
    // time, duration, size and outcome; the page shows them in the same order.
    let history = wait_api(
        &format!("{url}/v1/pipelines/dash_gen/checkpoints"),
        "two completed checkpoints in the history",
        |v| completed_ids(v).len() >= 2,
    )
    .await;
    let ids: Vec<u64> = history["checkpoints"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .map(|c| c["id"].as_u64().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first: {history}"
    );
    assert_eq!(history["keep"], json!(3), "{history}");
    for c in history["checkpoints"].as_array().expect("checkpoints") {
        if c["outcome"] == "completed" {
            assert!(
                c["duration_ms"].is_u64()
                    && c["total_bytes"].is_u64()
                    && c["bytes_written"].is_u64()
                    && c["started_at"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{c}"
            );
        } else {
            assert_eq!(c["outcome"], "in_progress", "{c}");
        }
    }
    let (status, limited) = api(
        "GET",
        &format!("{url}/v1/pipelines/dash_gen/checkpoints?limit=1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{limited}");
    assert_eq!(limited["checkpoints"].as_array().map(Vec::len), Some(1));
    let (status, missing) = api("GET", &format!("{url}/v1/pipelines/nope/checkpoints"), None).await;
    assert_eq!(status, 404, "{missing}");
    let rows = wait_for(
        client,
        "the checkpoint history on the page",
        "return [...document.querySelectorAll('#checkpoints tr')].map((r) => [Number(r.dataset.checkpoint), r.dataset.outcome, r.textContent])",
        |v| {
            v.as_array().is_some_and(|rows| {
                rows.iter().filter(|r| r[1] == "completed").count() >= 2
            })
        },
    )
    .await;
    let shown: Vec<u64> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_u64().expect("id"))
        .collect();
    assert!(
        shown.windows(2).all(|w| w[0] > w[1]),
        "newest first: {rows}"
    );
    let (_, now) = api(
        "GET",
        &format!("{url}/v1/pipelines/dash_gen/checkpoints"),
        None,
    )
    .await;
    let on_disk = completed_ids(&now);
    let oldest = on_disk.iter().min().copied().unwrap_or(0);
    for row in rows.as_array().expect("rows") {
        let id = row[0].as_u64().expect("id");
        // Retention may have removed one since the page read the list.
        assert!(
            on_disk.contains(&id) || id < oldest || row[1] != "completed",
            "{row} not in {now}"
        );
        if row[1] == "completed" {
            let text = row[2].as_str().unwrap_or_default();
            assert!(
                text.contains("completed") && (text.contains(" ms") || text.contains(" s")),
                "{text}"
            );
        }
    }
    client
        .execute(
            "document.getElementById('checkpoints').scrollIntoView(); return 0",
            vec![],
        )
        .await
        .expect("scroll");
    screenshot(client, "pipeline-checkpoints").await;

    // Accessibility: every control is labelled; Tab reaches the Stop button.
    let unlabelled = client.execute(UNLABELLED, vec![]).await.expect("labels");
    assert_eq!(unlabelled, json!([]), "controls without a label");
    wait_for(
        client,
        "the Stop button enabled",
        "const b = document.getElementById('stop'); return b ? !b.disabled : null",
        |v| v == &json!(true),
    )
    .await;
    client
        .execute(
            "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return 0",
            vec![],
        )
        .await
        .expect("reset focus");
    let mut reached = false;
    for _ in 0..40 {
        let active = client.active_element().await.expect("active element");
        active.send_keys("\u{e004}").await.expect("Tab"); // WebDriver's Tab key
        let id = client
            .execute("return document.activeElement.id", vec![])
            .await
            .expect("focus");
        if id == json!("stop") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the Stop button");

    // Stop with the keyboard (Enter on the focused button), Resume with a click; the API
    // confirms each.
    client
        .active_element()
        .await
        .expect("stop focused")
        .send_keys("\u{e007}") // Enter
        .await
        .expect("Enter");
    wait_api_status(url, "dash_gen", "stopped").await;
    wait_for(
        client,
        "the page's status after Stop",
        "return document.getElementById('status').textContent",
        |v| v == &json!("stopped"),
    )
    .await;
    screenshot(client, "pipeline-stopped").await;
    wait_for(
        client,
        "the Resume button enabled",
        "return !document.getElementById('resume').disabled",
        |v| v == &json!(true),
    )
    .await;
    client
        .find(Locator::Id("resume"))
        .await
        .expect("resume button")
        .click()
        .await
        .expect("click Resume");
    wait_api_status(url, "dash_gen", "running").await;
    wait_for(
        client,
        "the page's status after Resume",
        "return document.getElementById('status').textContent",
        |v| v == &json!("running"),
    )
    .await;

    // A dead letter appears after a bad record is ingested (value 0: division by zero).
    client
        .goto(&format!("{url}/#/p/dash_ingest"))
        .await
        .expect("ingest pipeline page");
    wait_for(
        client,
        "the dead-letter note",
        "return document.getElementById('dead-letters-note').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("dash-dead.jsonl")),
    )
    .await;
    let before = client
        .execute(
            "return document.querySelectorAll('#dead-letters tr').length",
            vec![],
        )
        .await
        .expect("dead letters");
    assert_eq!(before, json!(0), "no dead letter before the bad record");
    let (status, body) = api(
        "POST",
        &format!("{url}/v1/ingest/dash.reading"),
        Some(("application/json", r#"{"id": 3, "value": 0}"#.into())),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let row = wait_for(
        client,
        "the dead letter in the list",
        "return [...document.querySelectorAll('#dead-letters tr')].map((r) => r.textContent)",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let text = row[0].as_str().unwrap_or_default().to_string();
    assert!(text.contains("division by zero"), "the reason: {text}");
    assert!(text.contains("map"), "the stage: {text}");
    assert!(text.contains("\"id\":3"), "the record: {text}");
    let (_, letters) = api(
        "GET",
        &format!("{url}/v1/pipelines/dash_ingest/dead-letters"),
        None,
    )
    .await;
    assert_eq!(letters["total"], json!(1), "{letters}");
    // The graph shows where the error went: a dashed edge from the failing step.
    wait_for(
        client,
        "the dashed error edge of steps[1].map",
        "return [...document.querySelectorAll('#graph path.edge.dashed')].filter((p) => p.style.display !== 'none').map((p) => p.dataset.from)",
        |v| v.as_array().is_some_and(|a| a.contains(&json!("steps[1].map"))),
    )
    .await;
    client
        .execute(
            "document.getElementById('dead-letters').scrollIntoView(); return 0",
            vec![],
        )
        .await
        .expect("scroll");
    screenshot(client, "pipeline-dead-letters").await;

    // Agents and tasks: the server runs the example's `echo` agent; the page lists it.
    client
        .goto(&format!("{url}/#/agents"))
        .await
        .expect("agents page");
    let row = wait_for(
        client,
        "the echo agent's row",
        "const n = document.querySelector('[data-agent=\"echo\"]'); return n ? n.textContent : null",
        |v| v.is_string(),
    )
    .await;
    assert!(row.as_str().unwrap_or_default().contains("echo"), "{row}");
    let unlabelled = client.execute(UNLABELLED, vec![]).await.expect("labels");
    assert_eq!(
        unlabelled,
        json!([]),
        "controls without a label (agents page)"
    );
    screenshot(client, "agents").await;
}

async fn wait_api_status(url: &str, name: &str, want: &str) {
    wait_api_status_as(url, name, want, None).await
}

async fn wait_api_status_as(url: &str, name: &str, want: &str, token: Option<&str>) {
    let started = Instant::now();
    loop {
        let (_, detail) = api_as("GET", &format!("{url}/v1/pipelines/{name}"), None, token).await;
        if detail["status"] == want {
            return;
        }
        if started.elapsed() > PATIENCE {
            panic!("{name}: status {} (wanted {want})", detail["status"]);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ids of the completed checkpoints of a `/checkpoints` answer.
fn completed_ids(history: &Value) -> Vec<u64> {
    history["checkpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|c| c["outcome"] == "completed")
                .filter_map(|c| c["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// GETs `url` until `check` accepts the JSON answer.
async fn wait_api(url: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = api("GET", url, None).await;
        if status == 200 && check(&body) {
            return body;
        }
        if started.elapsed() > PATIENCE {
            panic!("{what}: still {status} {body} after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How the page loaded, as the browser measured it (milliseconds from the start of the
/// navigation): the page's response complete, DOMContentLoaded, the load event, the first live
/// data on screen (the `weir:first-snapshot` mark), and the bytes each resource took from the
/// network (0: from the cache).
const LOAD_TIMES: &str = r#"
const n = performance.getEntriesByType('navigation')[0];
const first = performance.getEntriesByName('weir:first-snapshot')[0];
if (!n || !n.loadEventEnd || !first) return null;
return {
  response_end_ms: Math.round(n.responseEnd * 10) / 10,
  dom_content_loaded_ms: Math.round(n.domContentLoadedEventEnd * 10) / 10,
  load_ms: Math.round(n.loadEventEnd * 10) / 10,
  first_data_ms: Math.round(first.startTime * 10) / 10,
  page: { status: n.responseStatus ?? null, transfer: n.transferSize, decoded: n.decodedBodySize },
  assets: performance.getEntriesByType('resource')
    .filter((r) => r.name.includes('/dashboard/'))
    .map((r) => ({ name: r.name.split('/').pop(), transfer: r.transferSize, decoded: r.decodedBodySize })),
};
"#;

/// Measures the dashboard's load in the browser: the first (cold: nothing cached, in a browser
/// already running) load and five warm ones.
/// Recorded as an artifact (`target/dashboard-screenshots/load-times.json`) and printed; not
/// asserted (a timing on a shared machine).
async fn load_times(client: &Client, url: &str) {
    let mut runs = Vec::new();
    for i in 0..6 {
        if i > 0 {
            client.goto(&format!("{url}/")).await.expect("reload");
        }
        let run = wait_for(client, "the load times", LOAD_TIMES, |v| v.is_object()).await;
        runs.push(run);
    }
    // Warm, every asset comes from the browser's cache (versioned, immutable URLs).
    for run in &runs[1..] {
        for asset in run["assets"].as_array().expect("assets") {
            assert_eq!(
                asset["transfer"],
                json!(0),
                "fetched again on a warm load: {run}"
            );
        }
    }
    let report = json!({ "cold": runs[0], "warm": runs[1..] });
    eprintln!("dashboard load times: {report}");
    let dir = repo().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(
        dir.join("load-times.json"),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("write load times");
}

/// `weir token create --role ROLE`: the token (standard output).
fn token(key: &Path, role: &str, name: &str) -> String {
    let out = weir()
        .args([
            "token", "create", "--role", role, "--ttl", "1h", "--name", name,
        ])
        .arg("--key-file")
        .arg(key)
        .output()
        .expect("run weir token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("token")
        .trim()
        .to_string()
}

/// With `auth.enabled: true` the page asks for a token; a viewer sees the pipeline but no Stop
/// or Resume button (and the API refuses it the stop with 403); an operator sees them and they
/// work.
#[test]
fn a_viewer_token_sees_no_stop_button_and_an_operator_token_stops_and_resumes() {
    let Some((chromedriver, chromium)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    let out = weir()
        .args(["token", "keygen"])
        .arg(&key)
        .output()
        .expect("run weir token keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let viewer = token(&key, "viewer", "vera");
    let operator = token(&key, "operator", "otto");
    let config = format!("auth:\n  enabled: true\n  key_file: {}\n", key.display());
    run_against_server(
        dir.path(),
        &config,
        |url| async move {
            let (status, body) = api_as(
            "POST",
            &format!("{url}/v1/pipelines"),
            Some((
                "application/yaml",
                "name: dash_auth\nsource: { type: generator, rate: 100, fields: { id: id } }\nsink: { type: discard }\n".into(),
            )),
            Some(&operator),
        )
        .await;
            assert_eq!(status, 201, "submit: {body}");
            with_browser(
                &chromedriver,
                &chromium,
                &url,
                move |client, url| async move { roles(&client, &url, &viewer, &operator).await },
            )
            .await
        },
        || {},
    );
}

/// Signs in on the login form with `token`.
async fn sign_in(client: &Client, token: &str) {
    wait_for(
        client,
        "the login form",
        "return !document.getElementById('login').hidden",
        |v| v == &json!(true),
    )
    .await;
    let field = client
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    field.clear().await.expect("clear");
    field.send_keys(token).await.expect("type the token");
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
}

async fn roles(client: &Client, url: &str, viewer: &str, operator: &str) {
    client
        .goto(&format!("{url}/#/p/dash_auth"))
        .await
        .expect("open the dashboard");
    // No token yet: the login form, with the server's reason.
    sign_in(client, viewer).await;
    let who = wait_for(
        client,
        "the viewer signed in",
        "return document.getElementById('who').textContent",
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    )
    .await;
    assert_eq!(who, json!("vera (viewer)"));
    wait_for(
        client,
        "the pipeline running on the viewer's page",
        "return document.getElementById('status') ? document.getElementById('status').textContent : null",
        |v| v == &json!("running"),
    )
    .await;
    let buttons = client
        .execute(
            "return [!!document.getElementById('stop'), !!document.getElementById('resume'), document.querySelectorAll('.actions button').length]",
            vec![],
        )
        .await
        .expect("buttons");
    assert_eq!(
        buttons,
        json!([false, false, 0]),
        "a viewer sees no Stop or Resume"
    );
    // The viewer's token cannot stop it through the API either (from the page itself).
    let refused = client
        .execute(
            "return fetch('/v1/pipelines/dash_auth/stop', { method: 'POST', headers: { authorization: `Bearer ${sessionStorage.getItem('weir.token')}` } }).then((r) => r.status)",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(refused, json!(403), "the API refuses a viewer's stop");
    let (_, detail) = api_as(
        "GET",
        &format!("{url}/v1/pipelines/dash_auth"),
        None,
        Some(viewer),
    )
    .await;
    assert_eq!(detail["status"], "running", "{detail}");
    screenshot(client, "pipeline-viewer").await;

    // Log out; the operator signs in and sees both buttons, which work.
    client
        .find(Locator::Id("logout"))
        .await
        .expect("logout button")
        .click()
        .await
        .expect("log out");
    sign_in(client, operator).await;
    wait_for(
        client,
        "the operator signed in",
        "return document.getElementById('who').textContent",
        |v| v == &json!("otto (operator)"),
    )
    .await;
    wait_for(
        client,
        "the Stop button enabled for the operator",
        "const b = document.getElementById('stop'); return b ? !b.disabled : null",
        |v| v == &json!(true),
    )
    .await;
    screenshot(client, "pipeline-operator").await;
    client
        .find(Locator::Id("stop"))
        .await
        .expect("stop button")
        .click()
        .await
        .expect("click Stop");
    wait_api_status_as(url, "dash_auth", "stopped", Some(operator)).await;
    wait_for(
        client,
        "the Resume button enabled",
        "const b = document.getElementById('resume'); return b ? !b.disabled : null",
        |v| v == &json!(true),
    )
    .await;
    client
        .find(Locator::Id("resume"))
        .await
        .expect("resume button")
        .click()
        .await
        .expect("click Resume");
    wait_api_status_as(url, "dash_auth", "running", Some(operator)).await;
}

/// The sizes (bytes of `data`) of the first `count` events of `GET /v1/events`, as a client of
/// the feed receives them.
async fn feed_sizes(url: &str, count: usize) -> Vec<usize> {
    let client = weir_connectors::http_client().build().expect("client");
    let mut response = client
        .get(format!("{url}/v1/events"))
        .send()
        .await
        .expect("GET /v1/events");
    assert_eq!(response.status().as_u16(), 200);
    let mut buf = String::new();
    let mut sizes = Vec::new();
    while sizes.len() < count {
        let chunk = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("an event within the patience")
            .expect("the feed")
            .expect("the feed ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: usize = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.trim_start().len())
                .sum();
            if block.lines().any(|l| l.trim() == "event: snapshot") {
                sizes.push(data);
            }
        }
    }
    sizes
}

/// Counts the main thread's long tasks (PerformanceObserver `longtask`, from the navigation
/// on) into `window.weirLongTasks`.
const OBSERVE_LONG_TASKS: &str = r#"
window.weirLongTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.weirLongTasks.push({ start: Math.round(e.startTime), ms: Math.round(e.duration) });
}).observe({ type: 'longtask', buffered: true });
return true;
"#;

/// The In/s and Records-in of every row of the list, by pipeline.
const LIST_ROWS: &str = r#"
return Object.fromEntries([...document.querySelectorAll('#pipelines tr')].map((r) => [
  r.dataset.pipeline,
  { rate: parseFloat(r.children[2].textContent) || 0, records: Number(r.children[4].textContent.replace(/,/g, '')) || 0 },
]));
"#;

/// 50 pipelines (a slow generator into `discard` each): the list shows all 50 with live
/// rates, a pipeline's page opens and the list comes back, and live updates keep arriving.
/// Recorded, not asserted: the main thread's long tasks and the sizes of the feed's events
/// (`target/dashboard-screenshots/fifty.json`).
#[test]
fn the_page_stays_live_with_fifty_pipelines() {
    let Some((chromedriver, chromium)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..50).map(|i| format!("fifty_{i:02}")).collect();
    run_against_server(
        dir.path(),
        "ready:\n  cache: 1s\n",
        |url| async move {
            for name in &names {
                let (status, body) = api(
                "POST",
                &format!("{url}/v1/pipelines"),
                Some((
                    "application/yaml",
                    format!(
                        "name: {name}\nsource: {{ type: generator, rate: 20, fields: {{ id: id }} }}\nsink: {{ type: discard }}\n"
                    ),
                )),
            )
            .await;
                assert_eq!(status, 201, "submit {name}: {body}");
            }
            wait_api(
                &format!("{url}/v1/pipelines"),
                "50 running pipelines",
                |v| {
                    v["pipelines"].as_array().is_some_and(|all| {
                        all.iter().filter(|p| p["status"] == "running").count() == 50
                    })
                },
            )
            .await;
            // What the feed pushes: everything first, then the changes (here all 50 move).
            let sizes = feed_sizes(&url, 4).await;
            let names = names.clone();
            with_browser(
                &chromedriver,
                &chromium,
                &url,
                move |client, url| async move { fifty(&client, &url, &names, sizes).await },
            )
            .await
        },
        || {},
    );
}

async fn fifty(client: &Client, url: &str, names: &[String], busy_sizes: Vec<usize>) {
    client.goto(&format!("{url}/")).await.expect("open");
    client
        .execute(OBSERVE_LONG_TASKS, vec![])
        .await
        .expect("observe long tasks");
    // All 50 listed, in name order, each with a rate above zero from the live feed.
    let rows = wait_for(client, "50 pipelines with live rates", LIST_ROWS, |v| {
        v.as_object().is_some_and(|rows| {
            rows.len() == 50 && rows.values().all(|r| r["rate"].as_f64() > Some(0.0))
        })
    })
    .await;
    let listed: Vec<String> = client
        .execute(
            "return [...document.querySelectorAll('#pipelines tr')].map((r) => r.dataset.pipeline)",
            vec![],
        )
        .await
        .expect("order")
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, names, "every pipeline, sorted by name");
    screenshot(client, "fifty").await;

    // A pipeline's page, then back to the list.
    client
        .find(Locator::Css("tr[data-pipeline=\"fifty_07\"] a"))
        .await
        .expect("the link of fifty_07")
        .click()
        .await
        .expect("open fifty_07");
    wait_for(
        client,
        "fifty_07's In/s",
        "return document.getElementById('pipeline-name')?.textContent === 'fifty_07' ? parseFloat(document.getElementById('kv-ri').textContent) : null",
        |v| v.as_f64().is_some_and(|x| x > 0.0),
    )
    .await;
    client.back().await.expect("back to the list");
    wait_for(
        client,
        "the list again",
        "return document.querySelectorAll('#pipelines tr').length",
        |v| v.as_u64() == Some(50),
    )
    .await;
    // Live updates keep arriving: every row's count goes past what it showed before.
    let before = rows;
    wait_for(client, "every row's records rising", LIST_ROWS, |v| {
        v.as_object().is_some_and(|now| {
            now.len() == 50
                && now.iter().all(|(name, r)| {
                    r["records"].as_u64() > before[name.as_str()]["records"].as_u64()
                })
        })
    })
    .await;
    let long_tasks = client
        .execute("return window.weirLongTasks || null", vec![])
        .await
        .expect("long tasks");

    // 45 of them stopped: the list shows it (status changes come through the feed), and a
    // connection's later events carry only the 5 still moving.
    for name in &names[5..] {
        let (status, body) = api("POST", &format!("{url}/v1/pipelines/{name}/stop"), None).await;
        assert_eq!(status, 200, "stop {name}: {body}");
    }
    for name in &names[5..] {
        wait_api_status(url, name, "stopped").await;
    }
    wait_for(
        client,
        "45 stopped rows",
        "return document.querySelectorAll('#pipelines tr .status.stopped').length",
        |v| v.as_u64() == Some(45),
    )
    .await;
    let idle_sizes = feed_sizes(url, 4).await;
    screenshot(client, "fifty-stopped").await;
    let report = json!({
        "pipelines": 50,
        "long_tasks": long_tasks,
        "long_tasks_total_ms": long_tasks
            .as_array()
            .map(|all| all.iter().filter_map(|t| t["ms"].as_u64()).sum::<u64>()),
        "feed_event_bytes": busy_sizes,
        "feed_event_bytes_5_of_50_running": idle_sizes,
        "note": "feed event bytes: the first event of a connection holds every pipeline, later ones only those that changed",
    });
    eprintln!("fifty pipelines: {report}");
    let dir = repo().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(
        dir.join("fifty.json"),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("write fifty.json");
}
