//! `weir serve` as a process, against the real services of `scripts/services.sh`: the
//! StreamHouse flow over HTTP (schemas, submit, ingest, ClickHouse), readiness while ClickHouse
//! is paused, stop/resume and a restart, kill -9 during ingest with idempotency keys, and the
//! remote client commands.

mod common;
use common::{int, pageview, repo, weir};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_connectors::{ClickHouseClient, ClickHouseConfig, block_on, testing};
use weir_types::{Record, Value};

/// One HTTP call: (status, body, `idempotent-replayed` header).
fn http(
    method: &str,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    key: Option<&str>,
) -> Result<(u16, serde_json::Value, bool), String> {
    block_on(async {
        let client = weir_connectors::http_client()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = client.request(method, url);
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, value, replayed))
    })
}

fn call(method: &str, url: &str, body: Option<(&str, Vec<u8>)>) -> (u16, serde_json::Value) {
    let (s, v, _) = http(method, url, body, None).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (s, v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `weir serve`; killed when dropped.
struct Server {
    child: Option<Child>,
    url: String,
    port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path, data: &Path, port: u16) -> Server {
        let log = data.with_extension(format!("{port}.log"));
        let mut server = Server {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            config: config.to_path_buf(),
            data: data.to_path_buf(),
            log,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut child = weir()
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir serve");
        // Wait for the address line, copying standard error into the log.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = log;
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                if !told && line.contains("listening on") {
                    told = true;
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("the server did not start: {}", self.log_text());
        }
        self.child = Some(child);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM and wait: returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait");
        status.code()
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

/// ClickHouse paused with SIGSTOP; SIGCONT when dropped, whatever happens (the service is
/// shared with other tests).
struct Paused(String);

impl Paused {
    fn clickhouse() -> Option<Paused> {
        let dir =
            std::env::var("WEIR_SERVICES_DIR").unwrap_or_else(|_| "/tmp/weir-services".into());
        let pid = std::fs::read_to_string(Path::new(&dir).join("clickhouse.pid")).ok()?;
        let pid = pid.trim().to_string();
        let ok = Command::new("kill").args(["-STOP", &pid]).status().ok()?;
        ok.success().then_some(Paused(pid))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

fn ndjson(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.write_json(&mut out);
        out.push(b'\n');
    }
    out
}

/// Setup shared by the tests: a data dir with a config naming a unique ingest stream, the
/// schemas registered over HTTP, and the pipeline file (Redis stream → validate → mask →
/// ClickHouse rows, one per event).
struct Setup {
    dir: tempfile::TempDir,
    clickhouse: String,
    table: String,
    stream: String,
    pipeline: PathBuf,
    name: String,
}

fn setup(prefix: &str) -> Option<Setup> {
    let redis = block_on(testing::redis_url())?;
    let clickhouse = block_on(testing::clickhouse_url())?;
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = testing::unique_name(&format!("{prefix}_events"));
    let table = testing::unique_name(&format!("{prefix}_rows"));
    let name = testing::unique_name(prefix);
    std::fs::write(
        dir.path().join("weir.yaml"),
        format!(
            "ingest:\n  redis_url: {redis}\n  streams:\n    analytics.pageview: {stream}\n  idempotency_ttl: 1h\n"
        ),
    )
    .expect("config");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}
settings:
  checkpoint: {{ interval: 200ms }}
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: loaders
steps:
  - validate: analytics.pageview
  - mask: analytics.pageview
sink:
  type: clickhouse
  url: {clickhouse}
  table: {table}
  schema: serve.row
dead_letter:
  type: file
  path: {name}-dead.jsonl
"
        ),
    )
    .expect("pipeline");
    Some(Setup {
        dir,
        clickhouse,
        table,
        stream,
        pipeline,
        name,
    })
}

impl Setup {
    fn config(&self) -> PathBuf {
        self.dir.path().join("weir.yaml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn register_schemas(&self, url: &str) {
        let registry = repo().join("examples/schemas");
        for body in [
            std::fs::read(registry.join("analytics.pageview/v1.yaml")).expect("schema"),
            std::fs::read(registry.join("analytics.page_minute/v1.yaml")).expect("schema"),
            b"name: serve.row\nfields:\n  - { name: id, type: int, required: true, indexed: true }\n  - { name: user_id, type: string, required: true }\n  - { name: ms, type: int, required: true }\n  - { name: email, type: string }\nunknown_fields: drop\n".to_vec(),
        ] {
            let (status, v) = call("POST", &format!("{url}/v1/schemas"), Some(("application/yaml", body)));
            assert!(status == 201 || status == 200, "{status} {v}");
        }
    }

    /// (rows, distinct ids, sum of ids) in the table.
    fn rows(&self) -> (i64, i64, i64) {
        let client = ClickHouseClient::new(ClickHouseConfig::new(&self.clickhouse)).expect("ch");
        let sql = format!(
            "SELECT count() AS n, uniqExact(id) AS ids, sum(id) AS s FROM {}",
            self.table
        );
        match block_on(client.query_json(&sql)) {
            Ok(mut rows) if !rows.is_empty() => {
                let r = rows.remove(0);
                (int(&r, "n"), int(&r, "ids"), int(&r, "s"))
            }
            _ => (0, 0, 0),
        }
    }

    /// Waits until the table holds `n` rows (and a little longer, to see no more arrive).
    fn wait_rows(&self, server: &Server, n: i64, ids: &[i64]) {
        let started = Instant::now();
        while self.rows().0 < n && started.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_secs(1));
        let (rows, distinct, sum) = self.rows();
        if rows != n {
            let (_, info) = call(
                "GET",
                &format!("{}/v1/pipelines/{}", server.url, self.name),
                None,
            );
            panic!(
                "{rows} rows in ClickHouse, expected {n} (losses or duplicates)\npipeline: {info}\nserver log:\n{}",
                server.log_text()
            );
        }
        assert_eq!(distinct, n, "distinct ids");
        assert_eq!(sum, ids.iter().sum::<i64>(), "checksum of ids");
    }

    fn drop_table(&self) {
        if let Ok(client) = ClickHouseClient::new(ClickHouseConfig::new(&self.clickhouse)) {
            let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {}", self.table)));
        }
        common::redis_del(
            &block_on(testing::redis_url()).unwrap_or_default(),
            &self.stream,
        );
    }
}

/// Page views `from..to` (every 100th invalid: `ms` is text).
fn batch(from: u64, to: u64) -> Vec<Record> {
    (from..to).map(|i| pageview(i, true)).collect()
}

fn valid(records: &[Record]) -> Vec<Record> {
    records
        .iter()
        .filter(|r| r.get("ms").and_then(Value::as_i64).is_some())
        .cloned()
        .collect()
}

fn ids(records: &[Record]) -> Vec<i64> {
    records.iter().map(|r| int(r, "id")).collect()
}

/// Posts a batch: the invalid records make the request 400 (naming each and the field, nothing
/// appended); the valid ones are posted again and accepted. Returns the ids accepted.
fn ingest(url: &str, run: &str, from: u64, to: u64) -> Vec<i64> {
    let all = batch(from, to);
    let endpoint = format!("{url}/v1/ingest/analytics.pageview");
    let good = valid(&all);
    if good.len() < all.len() {
        let (status, body, _) = http(
            "POST",
            &endpoint,
            Some(("application/x-ndjson", ndjson(&all))),
            None,
        )
        .expect("ingest");
        assert_eq!(status, 400, "{body}");
        let bad = body["error"]["records"].as_array().expect("records");
        assert_eq!(bad.len(), all.len() - good.len(), "{body}");
        for b in bad {
            let index = b["index"].as_u64().expect("index") as usize;
            assert_eq!(index as u64 % 100, 42 - from % 100, "{b}");
            assert_eq!(b["fields"][0]["field"], "ms", "{b}");
        }
    }
    let key = format!("{run}-{from}-{to}");
    let (status, body, _) = http(
        "POST",
        &endpoint,
        Some(("application/x-ndjson", ndjson(&good))),
        Some(&key),
    )
    .expect("ingest");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], good.len() as u64);
    ids(&good)
}

/// The sum of a metric's samples whose labels include `labels`.
fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn wait_ready(url: &str, want: u16) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = call("GET", &format!("{url}/ready"), None);
        if status == want || started.elapsed() > Duration::from_secs(30) {
            assert_eq!(status, want, "{body}");
            return body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status_of(url: &str, name: &str) -> String {
    let (s, v) = call("GET", &format!("{url}/v1/pipelines/{name}"), None);
    assert_eq!(s, 200, "{v}");
    v["status"].as_str().unwrap_or_default().to_string()
}

fn remote(args: &[&str], url: &str) -> std::process::Output {
    weir()
        .args(args)
        .env("WEIR_SERVER", url)
        .output()
        .expect("weir remote command")
}

#[test]
fn streamhouse_over_http_with_stop_resume_restart_and_readiness() {
    let test_started = Instant::now();
    let Some(s) = setup("serve") else { return };
    let mut server = Server::start(&s.config(), &s.data(), free_port());
    let url = server.url.clone();
    assert_eq!(call("GET", &format!("{url}/health"), None).0, 200);
    s.register_schemas(&url);

    // A bad pipeline: 400 with file, line and key.
    let (status, body) = call(
        "POST",
        &format!("{url}/v1/pipelines"),
        Some((
            "application/yaml",
            b"name: bad\nsource:\n  type: nope\n".to_vec(),
        )),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["line"], 3, "{body}");
    assert_eq!(body["error"]["key"], "source.type", "{body}");

    // Submitted with the remote client.
    let out = remote(&["submit", s.pipeline.to_str().expect("path")], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is running"));
    // The same name again: 409.
    let yaml = std::fs::read(&s.pipeline).expect("pipeline");
    let (status, body) = call(
        "POST",
        &format!("{url}/v1/pipelines"),
        Some(("application/yaml", yaml)),
    );
    assert_eq!(status, 409, "{body}");

    let mut accepted = Vec::new();
    for k in 0..4 {
        accepted.extend(ingest(&url, &s.name, k * 1000, (k + 1) * 1000));
    }
    s.wait_rows(&server, accepted.len() as i64, &accepted);
    // `/metrics`: what the pipeline's source read is what was ingested.
    let (status, text) = call("GET", &format!("{url}/metrics"), None);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap_or_default().to_string();
    assert_eq!(
        metric_sum(
            &text,
            "weir_records_in_total",
            &[("pipeline", &s.name), ("operator", "redis_stream")]
        ),
        accepted.len() as f64,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "weir_http_requests_total",
            &[("route", "/v1/ingest/{schema}"), ("status", "202")]
        ) >= 4.0,
        "{text}"
    );
    wait_ready(&url, 200);

    // ClickHouse paused (< 5 s): not ready, naming it; then ready again.
    {
        let Some(_paused) = Paused::clickhouse() else {
            panic!("cannot pause ClickHouse: no pid file of scripts/services.sh");
        };
        std::thread::sleep(Duration::from_millis(1200)); // past the cached answer
        let (status, body) = call("GET", &format!("{url}/ready"), None);
        assert_eq!(status, 503, "{body}");
        let reasons = body["reasons"].to_string();
        assert!(reasons.contains("clickhouse"), "{body}");
        // The connectors' own checks, per key of the pipeline file.
        assert!(
            reasons.contains(&format!("pipeline `{}`: sink (clickhouse)", s.name)),
            "{body}"
        );
    }
    wait_ready(&url, 200);

    // Stop with the remote client; ingest while stopped; resume.
    let out = remote(&["stop", &s.name], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status_of(&url, &s.name), "stopped");
    accepted.extend(ingest(&url, &s.name, 4000, 6000));
    let out = remote(&["resume", &s.name], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status_of(&url, &s.name), "running");
    let out = remote(&["pipelines"], &url);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&s.name));
    accepted.extend(ingest(&url, &s.name, 6000, 8000));
    s.wait_rows(&server, accepted.len() as i64, &accepted);
    // The counters went on across the stop and the resume: the source read everything
    // ingested, before, during and after the stop.
    let (_, text) = call("GET", &format!("{url}/metrics"), None);
    let text = text.as_str().unwrap_or_default().to_string();
    let source = [
        ("pipeline", s.name.as_str()),
        ("operator", "redis_stream"),
        ("connector", "redis_stream"),
    ];
    assert_eq!(
        metric_sum(&text, "weir_records_in_total", &source),
        accepted.len() as f64,
        "{text}"
    );
    // End-to-end latency, from the ingest (the stream entry's time) to the ClickHouse commit:
    // observed per committed batch, each no longer than the test has run.
    let sink = [
        ("pipeline", s.name.as_str()),
        ("operator", "sink"),
        ("connector", "clickhouse"),
    ];
    let count = metric_sum(&text, "weir_end_to_end_latency_seconds_count", &sink);
    let total = metric_sum(&text, "weir_end_to_end_latency_seconds_sum", &sink);
    assert!(count >= 2.0, "{text}");
    assert!(total > 0.0, "{text}");
    assert!(
        total <= count * test_started.elapsed().as_secs_f64(),
        "{total} s over {count} batches: {text}"
    );

    // SIGTERM: exit 0; the next start resumes the pipeline.
    accepted.extend(ingest(&url, &s.name, 8000, 9000));
    assert_eq!(server.terminate(), Some(0), "{}", server.log_text());
    server.spawn();
    assert_eq!(status_of(&url, &s.name), "running", "{}", server.log_text());
    accepted.extend(ingest(&url, &s.name, 9000, 10_000));
    s.wait_rows(&server, accepted.len() as i64, &accepted);
    assert_eq!(accepted.len(), 9_900);

    // Stop and delete over HTTP.
    assert_eq!(
        call("POST", &format!("{url}/v1/pipelines/{}/stop", s.name), None).0,
        200
    );
    let (status, body) = call(
        "DELETE",
        &format!("{url}/v1/pipelines/{}?purge=true", s.name),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call("GET", &format!("{url}/v1/pipelines/{}", s.name), None).0,
        404
    );
    assert_eq!(server.terminate(), Some(0));
    s.drop_table();
}

#[test]
fn kill_9_during_ingest_loses_and_duplicates_nothing() {
    let Some(s) = setup("serve_kill") else { return };
    let mut server = Server::start(&s.config(), &s.data(), free_port());
    let url = server.url.clone();
    s.register_schemas(&url);
    let yaml = std::fs::read(&s.pipeline).expect("pipeline");
    assert_eq!(
        call(
            "POST",
            &format!("{url}/v1/pipelines"),
            Some(("application/yaml", yaml))
        )
        .0,
        201
    );

    // A client posts large batches of valid records, each with its own idempotency key. The
    // first ones are answered; the next one is sent in full and the server is killed with
    // SIGKILL right after, while it reads, validates or appends that body (it takes the
    // server far longer to handle 8,000 records than it takes the test to kill it), so that
    // the kill lands inside a request that gets no answer.
    const BATCHES: u64 = 6;
    const PER_BATCH: u64 = 8_000;
    const BEFORE_KILL: usize = 3;
    let bodies: Vec<(String, Vec<Record>)> = (0..BATCHES)
        .map(|b| {
            let records: Vec<Record> = (b * PER_BATCH..(b + 1) * PER_BATCH)
                .map(|i| pageview(i, false))
                .collect();
            (format!("{}-{b}", s.name), records)
        })
        .collect();
    let endpoint = format!("{url}/v1/ingest/analytics.pageview");
    let mut answered = Vec::new();
    for (key, records) in &bodies[..BEFORE_KILL] {
        let (status, body, _) = http(
            "POST",
            &endpoint,
            Some(("application/x-ndjson", ndjson(records))),
            Some(key),
        )
        .expect("ingest");
        assert_eq!(status, 202, "{body}");
        answered.push(key.clone());
    }
    {
        use std::io::{Read, Write};
        let (key, records) = &bodies[BEFORE_KILL];
        let body = ndjson(records);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        write!(
            stream,
            "POST /v1/ingest/analytics.pageview HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Content-Type: application/x-ndjson\r\nIdempotency-Key: {key}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            server.port,
            body.len()
        )
        .expect("request head");
        stream.write_all(&body).expect("request body");
        stream.flush().expect("flush");
        server.kill9();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(
            !response.starts_with("HTTP/1.1 202"),
            "the request was answered before the kill: {response}"
        );
    }

    server.spawn();
    // The client retries everything not answered, with the same keys; a replay of a request
    // that was appended but not answered appends nothing.
    let mut replayed = 0;
    for (key, records) in &bodies {
        if answered.contains(key) {
            continue;
        }
        let (status, body, was_replayed) = http(
            "POST",
            &endpoint,
            Some(("application/x-ndjson", ndjson(records))),
            Some(key),
        )
        .expect("retry");
        assert_eq!(status, 202, "{body}");
        replayed += usize::from(was_replayed);
    }
    // Retrying again (a request answered before the kill, the one the kill interrupted) is
    // answered the same and appends nothing.
    for (key, records) in [&bodies[0], &bodies[BEFORE_KILL]] {
        let (status, body, was_replayed) = http(
            "POST",
            &endpoint,
            Some(("application/x-ndjson", ndjson(records))),
            Some(key),
        )
        .expect("retry");
        assert_eq!((status, was_replayed), (202, true), "{key}: {body}");
        assert_eq!(body["accepted"], PER_BATCH);
    }
    let all: Vec<i64> = (0..(BATCHES * PER_BATCH) as i64).collect();
    s.wait_rows(&server, all.len() as i64, &all);
    eprintln!(
        "{} answered before the kill, {replayed} retries were replays",
        answered.len()
    );
    assert_eq!(server.terminate(), Some(0));
    s.drop_table();
}

#[test]
fn bad_config_and_non_loopback_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\ningest:\n  strems: {}\n").expect("write");
    let out = weir()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weir.yaml:3: ingest.strems"), "{err}");

    let out = weir()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
}

#[test]
fn the_readme_server_session_works_as_written() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let section = readme
        .split("## Running the server")
        .nth(1)
        .and_then(|s| s.split("A session, with the services").nth(1))
        .expect("the README's server session");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("the README's server session");
    let port = free_port();
    let stream = testing::unique_name("readme_pageviews_stream");
    let table = testing::unique_name("readme_pageviews");
    let script = script
        .replace("7878", &port.to_string())
        .replace("readme:pageviews", &stream)
        .replace("readme_pageviews", &table)
        .replace("redis://127.0.0.1:6390", &redis)
        .replace("http://127.0.0.1:8124", &clickhouse);
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples"))
        .expect("symlink");
    let bin = Path::new(env!("CARGO_BIN_EXE_weir"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        // The README uses the default port; the test moves it with the environment layer.
        .env("WEIR_LISTEN", format!("127.0.0.1:{port}"))
        .env("WEIR_SERVER", format!("http://127.0.0.1:{port}"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let pid = child.id();
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(r#"{"accepted":2}"#), "{stdout}");
    assert!(stdout.contains(r#""field":"ts""#), "{stdout}");
    assert!(
        stdout.contains("resumed: pipeline 'pageviews' is running"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"weir_records_in_total{pipeline="pageviews""#),
        "{stdout}"
    );
    // The server's last event: it stopped (every pipeline with a checkpoint) after SIGTERM.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("weir_server:") && l.trim_end().ends_with("stopped")),
        "{stderr}"
    );
    if let Ok(client) = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)) {
        let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {table}")));
    }
    common::redis_del(&redis, &stream);
}
