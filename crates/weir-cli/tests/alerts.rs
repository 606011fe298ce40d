//! Alert rules of `weir serve`, as a process: a pipeline that dead-letters records fires the
//! rule `weir_dead_letters_total rate[2s] > 5/s for 1s` to a webhook receiver (a real HTTP server in
//! the test, which fails its first call so the policy's retry is used), `GET /v1/alerts` shows
//! it firing, and once the dead letters stop the rule resolves with a second notification.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("WEIR_LOG")
        .env_remove("WEIR_LOG_FORMAT")
        .env_remove("WEIR_AUTH_KEY_FILE")
        .env_remove("WEIR_PROFILE")
        .env_remove("WEIR_DATA_DIR");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Reads one HTTP/1.1 request: (request line, body).
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? != 1 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head.lines().next().unwrap_or_default().to_string(), body))
}

/// A webhook receiver on 127.0.0.1: answers 503 to the first call, 200 to the others, and
/// keeps every JSON body it was sent (also the refused one).
struct Receiver {
    port: u16,
    calls: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let calls: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let seen = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some((line, body)) = read_request(&mut stream) else {
                    continue;
                };
                let value: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(format!("{line}: not JSON")));
                let mut calls = seen.lock().unwrap_or_else(|p| p.into_inner());
                let status = if calls.is_empty() { 503 } else { 200 };
                calls.push((status, value));
                drop(calls);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, calls }
    }

    fn calls(&self) -> Vec<(u16, Value)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `method url` with an optional YAML body: (status, JSON body).
fn call(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, config: &str) -> Server {
    let path = dir.join("weir.yaml");
    std::fs::write(&path, config).expect("config");
    let log = dir.join("serve.log");
    let child = weir()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start weir serve");
    let mut server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&server.log).unwrap_or_default();
        if text.contains("listening on") {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("weir serve exited with {status}: {text}");
        }
        assert!(Instant::now() < deadline, "no start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (up to two minutes) until `done` holds for the receiver's calls.
fn wait_for(
    receiver: &Receiver,
    server: &Server,
    what: &str,
    done: impl Fn(&[(u16, Value)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(&receiver.calls()) {
        assert!(
            Instant::now() < deadline,
            "{what}: the webhook got {:?}\nserver log:\n{}",
            receiver.calls(),
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_pipeline_that_dead_letters_fires_the_rule_to_the_webhook_then_it_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start();
    let port = free_port();
    let server = start(
        dir.path(),
        &format!(
            "listen: 127.0.0.1:{port}
data_dir: data
alerts:
  evaluate_every: 200ms
  webhook:
    url: http://127.0.0.1:{}/hook
    policy: {{ retries: 3, backoff: {{ min: 50ms, max: 200ms }} }}
  rules:
    - name: dead-letters
      expr: \"weir_dead_letters_total rate[2s] > 5/s for 1s\"
    - name: breaker-open
      expr: \"weir_circuit_breaker_state max >= 2 for 1s\"
",
            receiver.port
        ),
    );
    let (status, body) = call(port, "GET", "/v1/alerts", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rules"][0]["name"], "dead-letters", "{body}");
    assert_eq!(body["rules"][0]["state"], "inactive", "{body}");
    let (status, body) = call(
        port,
        "POST",
        "/v1/schemas",
        Some(
            "name: alerts.event\nfields:\n  - { name: id, type: int, required: true }\n  - { name: ms, type: int, required: true }\n",
        ),
    );
    assert!(status == 201 || status == 200, "{status} {body}");
    // 200 records at 50 a second, every one invalid (`ms` is text): four seconds of dead letters.
    let dead = dir.path().join("dead.jsonl");
    let pipeline = format!(
        "name: alerting
source:
  type: generator
  count: 200
  rate: 50
  fields:
    id: id
    ms: \"'slow'\"
steps:
  - validate: alerts.event
sink:
  type: discard
dead_letter:
  type: file
  path: {}
",
        dead.display()
    );
    let (status, body) = call(port, "POST", "/v1/pipelines", Some(&pipeline));
    assert_eq!(status, 201, "{body}");

    wait_for(&receiver, &server, "firing", |calls| {
        calls
            .iter()
            .any(|(s, v)| *s == 200 && v["status"] == "firing")
    });
    let calls = receiver.calls();
    // The first call was refused (503) and retried by the policy: the same notification.
    assert_eq!(calls[0].0, 503, "{calls:?}");
    assert_eq!(calls[0].1["status"], "firing", "{calls:?}");
    let fired = &calls[1].1;
    assert_eq!(fired["rule"], "dead-letters", "{fired}");
    assert_eq!(
        fired["expr"],
        "weir_dead_letters_total rate[2s] > 5/s for 1s"
    );
    assert!(fired["value"].as_f64().is_some_and(|v| v > 5.0), "{fired}");
    assert_eq!(fired["threshold"], 5.0);
    let (_, view) = call(port, "GET", "/v1/alerts", None);
    let rule = &view["rules"][0];
    assert!(
        rule["state"] == "firing" || rule["notifications"].as_u64() >= Some(1),
        "{view}"
    );

    // The generator ends, the dead letters stop: resolved.
    wait_for(&receiver, &server, "resolved", |calls| {
        calls.iter().any(|(_, v)| v["status"] == "resolved")
    });
    let calls = receiver.calls();
    let resolved = calls
        .iter()
        .find(|(_, v)| v["status"] == "resolved")
        .map(|(_, v)| v.clone())
        .expect("resolved");
    assert_eq!(resolved["rule"], "dead-letters", "{resolved}");
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    let (_, view) = call(port, "GET", "/v1/alerts", None);
    let rule = &view["rules"][0];
    assert_eq!(rule["state"], "inactive", "{view}");
    assert_eq!(rule["notifications"], 2, "{view}");
    assert_eq!(rule["last_delivery"]["status"], "resolved", "{view}");
    assert_eq!(rule["last_delivery"]["outcome"], "delivered", "{view}");
    // The other rule never held: nothing about it was sent.
    assert_eq!(view["rules"][1]["state"], "inactive", "{view}");
    assert!(
        calls.iter().all(|(_, v)| v["rule"] == "dead-letters"),
        "{calls:?}"
    );
    // Every dead letter was written.
    let lines = std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(lines, 200);
}

#[test]
fn a_bad_rule_refuses_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.yaml");
    std::fs::write(
        &path,
        "alerts:\n  webhook:\n    url: http://127.0.0.1:9/hook\n  rules:\n    - name: lag\n      expr: \"weir_consumer_lag > lots for 1m\"\n",
    )
    .expect("config");
    let out = weir()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run weir serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("alerts.rules[0].expr") && err.contains("`lots` is not a number"),
        "{err}"
    );
}
