//! `weir serve`'s defences, as a process with `auth.enabled: true`: the input limits (413 for
//! the body, the records of an ingest request and the size of one record; 429 with
//! `Retry-After` per token), slow clients (slowloris) dropped while others are served,
//! `weir submit --token`, and a property-based fuzz test of every route of the OpenAPI
//! document (no 5xx but `/ready`'s 503, the process alive, its memory flat).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
mod auth_server;

use auth_server::{Server, free_port, keygen, weir};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_connectors::{block_on, testing};

/// `weir token create`: the token.
fn create(key: &Path, role: &str, name: &str) -> String {
    let out = weir()
        .args([
            "token", "create", "--role", role, "--ttl", "1h", "--name", name,
        ])
        .arg("--key-file")
        .arg(key)
        .output()
        .expect("run weir token create");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// An answer: status, headers (names lower case), body (empty when it has no length).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as it is on a fresh connection and reads the answer's head (and its body
/// when it has a Content-Length). `None`: the server closed without answering.
fn send(port: u16, request: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // The server may answer (413) and close before it has read everything.
    let _ = stream.write_all(request);
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(n) => {
            let mut body = vec![0u8; n];
            stream.read_exact(&mut body).ok()?;
            String::from_utf8_lossy(&body).to_string()
        }
        None => String::new(),
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

/// A request with a body and an optional token.
fn request(method: &str, path: &str, token: Option<&str>, ctype: &str, body: &[u8]) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn answer(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    send(
        port,
        &request(method, path, token, "application/json", body),
    )
    .unwrap_or_else(|| panic!("{method} {path}: no answer"))
}

const SCHEMA: &str = "name: limits.event\nfields:\n  - { name: id, type: int, required: true }\n  - { name: note, type: string }\n";

#[test]
fn limits_answer_413_and_429_naming_the_limit_and_the_server_keeps_serving() {
    let Some(redis) = block_on(testing::redis_url()) else {
        eprintln!("skipped: no Redis (scripts/services.sh start)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let stream = testing::unique_name("limits_events");
    let server = Server::start(
        dir.path(),
        &key,
        &format!(
            "ingest:\n  redis_url: {redis}\n  streams:\n    limits.event: {stream}\nlimits:\n  body_bytes: 4096\n  ingest_records: 3\n  record_bytes: 100\n  requests_per_second: 0.01\n  burst: 5\n"
        ),
    );
    let port = server.port;
    let admin = create(&key, "admin", "limits-admin");
    let ingest = create(&key, "ingest", "limits-ingest");
    let a = answer(port, "POST", "/v1/schemas", Some(&admin), SCHEMA.as_bytes());
    assert!(a.status == 201 || a.status == 200, "{a:?}");

    // The body: refused from its Content-Length before it is read, and (chunked, no length)
    // as soon as it grows past the limit.
    let big = vec![b' '; 5000];
    let whole = request(
        "POST",
        "/v1/ingest/limits.event",
        Some(&ingest),
        "application/json",
        &big,
    );
    let a = send(port, &whole[..whole.len() - big.len()]);
    let a = a.expect("an answer before the body");
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("limits.body_bytes"), "{a:?}");
    let mut chunked = format!(
        "POST /v1/schemas HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        big.len()
    )
    .into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let a = send(port, &chunked).expect("an answer to the chunked body");
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("limits.body_bytes"), "{a:?}");

    // Records per request, and the size of one record (naming its index).
    let four = b"{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n{\"id\": 4}\n";
    let a = answer(port, "POST", "/v1/ingest/limits.event", Some(&ingest), four);
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("limits.ingest_records"), "{a:?}");
    let long = format!(
        "[{{\"id\": 1}}, {{\"id\": 2, \"note\": \"{}\"}}]",
        "n".repeat(200)
    );
    let a = answer(
        port,
        "POST",
        "/v1/ingest/limits.event",
        Some(&ingest),
        long.as_bytes(),
    );
    assert_eq!(a.status, 413, "{a:?}");
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(v["error"]["index"], 1, "{a:?}");
    assert!(
        a.body.contains("limits.record_bytes") && a.body.contains("record 1"),
        "{a:?}"
    );
    // Within the limits it is accepted.
    let a = answer(
        port,
        "POST",
        "/v1/ingest/limits.event",
        Some(&ingest),
        b"[{\"id\": 1}, {\"id\": 2}]",
    );
    assert_eq!(a.status, 202, "{a:?}");

    // Requests per token: a burst of 5, then one per 100 s: the 6th is 429 with Retry-After.
    let viewer = create(&key, "viewer", "limits-viewer");
    for i in 0..5 {
        let a = answer(port, "GET", "/v1/pipelines", Some(&viewer), b"");
        assert_eq!(a.status, 200, "request {i}: {a:?}");
    }
    let a = answer(port, "GET", "/v1/pipelines", Some(&viewer), b"");
    assert_eq!(a.status, 429, "{a:?}");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {a:?}"));
    assert!((1..=100).contains(&retry), "{a:?}");
    assert!(
        a.body.contains("limits.requests_per_second") && a.body.contains("limits-viewer"),
        "{a:?}"
    );
    let a = answer(port, "GET", "/v1/pipelines", Some(&viewer), b"");
    assert_eq!(a.status, 429, "{a:?}");
    // Another token has its own budget; the public routes are not limited.
    let other = create(&key, "viewer", "limits-other");
    assert_eq!(
        answer(port, "GET", "/v1/pipelines", Some(&other), b"").status,
        200
    );
    // Both refusals are counted, under `policy="api"`, with no token name in the labels.
    let a = answer(port, "GET", "/metrics", Some(&other), b"");
    assert_eq!(a.status, 200, "{a:?}");
    let count = a
        .body
        .lines()
        .find_map(|l| l.strip_prefix("weir_rate_limited_total{policy=\"api\"} "))
        .unwrap_or_else(|| panic!("no weir_rate_limited_total{{policy=\"api\"}}: {}", a.body));
    assert_eq!(count.trim(), "2", "{}", a.body);
    assert!(
        !a.body.contains("limits-viewer") && !a.body.contains(&viewer),
        "{}",
        a.body
    );
    for _ in 0..20 {
        assert_eq!(answer(port, "GET", "/health", None, b"").status, 200);
    }
    assert!(
        server.child.id() > 0 && !server.stderr().contains("panicked"),
        "{}",
        server.stderr()
    );
    common_redis_del(&redis, &stream);
}

fn common_redis_del(redis: &str, stream: &str) {
    block_on(async {
        let Ok(client) = redis::Client::open(redis) else {
            return;
        };
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("DEL").arg(stream).query_async(&mut conn).await;
        }
    });
}

/// Sends `bytes` one per second on `stream` until the server closes it: true if it did
/// before all were sent (the server's answer, e.g. 408, counts as closing).
fn trickle(mut stream: TcpStream, bytes: &[u8]) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            return true;
        }
        match stream.read(&mut buf) {
            Ok(_) => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slow_clients_are_dropped_and_the_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let server = Server::start(
        dir.path(),
        &key,
        "limits:\n  header_timeout: 2s\n  body_timeout: 2s\n",
    );
    let port = server.port;
    let admin = create(&key, "admin", "slow-admin");
    // Twelve clients that send their request head a byte a second (60 bytes: a minute), and
    // four that send a complete head and then their body a byte a second.
    let head = b"GET /v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaa\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..12 {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        slow.push(std::thread::spawn(move || trickle(stream, head)));
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let body = vec![b'x'; 60];
        let whole = request(
            "POST",
            "/v1/schemas",
            Some(&admin),
            "application/yaml",
            &body,
        );
        stream
            .write_all(&whole[..whole.len() - body.len()])
            .expect("send the head");
        slow_bodies.push(std::thread::spawn(move || trickle(stream, &body)));
    }
    // Meanwhile the others are answered.
    for _ in 0..10 {
        assert_eq!(answer(port, "GET", "/health", None, b"").status, 200);
        let a = answer(port, "GET", "/v1/pipelines", Some(&admin), b"");
        assert_eq!(a.status, 200, "{a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for t in slow {
        assert!(
            t.join().expect("thread"),
            "a client trickling its head was not dropped"
        );
    }
    for t in slow_bodies {
        assert!(
            t.join().expect("thread"),
            "a client trickling its body was not dropped"
        );
    }
    // A body that stalls gets 408 naming the limit.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let r = request(
        "POST",
        "/v1/schemas",
        Some(&admin),
        "application/yaml",
        b"0123456789",
    );
    stream
        .write_all(&r[..r.len() - 5])
        .expect("send all but 5 bytes");
    let a = read_answer(&mut stream).expect("an answer");
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.body.contains("limits.body_timeout"), "{a:?}");
    assert_eq!(answer(port, "GET", "/health", None, b"").status, 200);
}

#[test]
fn submit_sends_the_token_and_without_one_prints_the_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let server = Server::start(dir.path(), &key, "");
    let operator = create(&key, "operator", "submit-operator");
    let pipeline = |name: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\nsource:\n  type: generator\n  count: 10\n  fields:\n    id: id\nsink:\n  type: discard\n"
            ),
        )
        .expect("pipeline");
        path
    };
    let with_flag = weir()
        .arg("submit")
        .arg(pipeline("submit-flag"))
        .args(["--server", &server.url(), "--token", &operator])
        .output()
        .expect("weir submit");
    assert!(with_flag.status.success(), "{with_flag:?}");
    assert!(
        String::from_utf8_lossy(&with_flag.stdout).contains("submitted: pipeline 'submit-flag'"),
        "{with_flag:?}"
    );
    let with_env = weir()
        .arg("submit")
        .arg(pipeline("submit-env"))
        .env("WEIR_SERVER", server.url())
        .env("WEIR_TOKEN", &operator)
        .output()
        .expect("weir submit");
    assert!(with_env.status.success(), "{with_env:?}");
    let without = weir()
        .arg("submit")
        .arg(pipeline("submit-none"))
        .args(["--server", &server.url()])
        .output()
        .expect("weir submit");
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(!without.status.success(), "{without:?}");
    assert!(err.contains("401"), "{err}");
    // The server has the two pipelines, not the third.
    let a = answer(server.port, "GET", "/v1/pipelines", Some(&operator), b"");
    assert!(
        a.body.contains("submit-flag") && a.body.contains("submit-env"),
        "{a:?}"
    );
    assert!(!a.body.contains("submit-none"), "{a:?}");
    // And the token is not in the server's log.
    assert!(!server.stderr().contains(&operator));
}

/// One fuzzed request.
#[derive(Debug, Clone)]
struct Fuzz {
    route: usize,
    param: String,
    auth: usize,
    content_type: usize,
    body: Vec<u8>,
    query: String,
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let json_leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        ".{0,40}".prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    let json = json_leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("action".to_string()),
                        Just("data".to_string()),
                        Just("name".to_string()),
                        Just("fields".to_string()),
                        Just("id".to_string()),
                        Just("priority".to_string()),
                        Just("timeout".to_string()),
                        "[a-z_]{1,8}".prop_map(|s| s)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| format!(
                "{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    });
    prop_oneof![
        3 => Just(Vec::new()),
        6 => json.prop_map(String::into_bytes),
        3 => prop::collection::vec(any::<u8>(), 0..300),
        2 => (1usize..20_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        1 => (1usize..5000).prop_map(|n| format!("{}1", "{\"a\":".repeat(n)).into_bytes()),
        2 => ".{0,200}".prop_map(|s: String| format!("name: {s}\nsource: {{type: generator}}\nsink: 7\n").into_bytes()),
        1 => Just(b"\xff\xfe\x00name: x\n".to_vec()),
        1 => (60_000usize..70_000).prop_map(|n| vec![b'{'; n]),
        1 => Just("\"".repeat(3000).into_bytes()),
    ]
}

fn param_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{1,20}",
        Just("..".to_string()),
        Just("%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_string()),
        Just("..%2F..%2Fweir.key".to_string()),
        "\\PC{1,12}".prop_map(|s: String| percent(&s)),
        (1000usize..9000).prop_map(|n| "a".repeat(n)),
        Just("%00".to_string()),
        Just("%ff%fe".to_string()),
        Just("%".to_string()),
    ]
}

/// Percent-encodes everything but unreserved ASCII.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/yaml",
    "text/plain",
    "application/x-ndjson",
    "multipart/form-data; boundary=zz",
    "garbage/\u{1}",
];

#[test]
fn fuzzing_every_route_of_the_openapi_document_finds_no_5xx_and_no_growth() {
    let Some(redis) = block_on(testing::redis_url()) else {
        eprintln!("skipped: no Redis (scripts/services.sh start)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let stream = testing::unique_name("fuzz_events");
    let server = Server::start(
        dir.path(),
        &key,
        &format!(
            "ingest:\n  redis_url: {redis}\n  streams:\n    fuzz.event: {stream}\nlimits:\n  body_bytes: 65536\n  requests_per_second: 0\n"
        ),
    );
    let port = server.port;
    let tokens: Vec<String> = ["admin", "operator", "viewer", "ingest"]
        .into_iter()
        .map(|r| create(&key, r, &format!("fuzz-{r}")))
        .collect();
    let schema = "name: fuzz.event\nfields:\n  - { name: id, type: int, required: true }\n  - { name: note, type: string }\n";
    let a = answer(
        port,
        "POST",
        "/v1/schemas",
        Some(&tokens[0]),
        schema.as_bytes(),
    );
    assert!(a.status == 201 || a.status == 200, "{a:?}");

    // The routes, from the served document.
    let doc = answer(port, "GET", "/openapi.json", None, b"");
    let doc: serde_json::Value = serde_json::from_str(&doc.body).expect("openapi");
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            routes.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    // Auth variants: the four roles, none, garbage, another scheme, a huge one.
    let auth_headers: Vec<Option<String>> = tokens
        .iter()
        .map(|t| Some(format!("Bearer {t}")))
        .chain([
            None,
            Some("Bearer not.a.token".to_string()),
            Some("Basic YWRtaW46YWRtaW4=".to_string()),
            Some(format!("Bearer {}", "x".repeat(6000))),
            Some("Bearer ".to_string()),
        ])
        .collect();

    let strategy = (
        0..routes.len(),
        param_strategy(),
        0..auth_headers.len(),
        0..CONTENT_TYPES.len(),
        body_strategy(),
        prop_oneof![
            Just(String::new()),
            Just("?limit=-1".to_string()),
            Just("?limit=99999999999999999999".to_string()),
            Just("?purge=maybe".to_string()),
            Just("?purge=true".to_string()),
            "\\?[a-z=&%0-9]{0,30}",
        ],
    )
        .prop_map(|(route, param, auth, content_type, body, query)| Fuzz {
            route,
            param,
            auth,
            content_type,
            body,
            query,
        });
    let cases: u32 = std::env::var("WEIR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    });
    let sent = std::cell::Cell::new(0u64);
    let rss_after_warmup = std::cell::Cell::new(None);
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let result = runner.run(&strategy, |f| {
        let (method, template) = &routes[f.route];
        let path: String = template
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    f.param.as_str()
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut head = format!(
            "{method} {path}{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            f.query,
            CONTENT_TYPES[f.content_type],
            f.body.len()
        );
        if let Some(a) = &auth_headers[f.auth] {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&f.body);
        let answer = send(port, &bytes);
        sent.set(sent.get() + 1);
        if sent.get() == 300 {
            rss_after_warmup.set(Some(server.rss_kb()));
        }
        let alive = server_alive(port);
        prop_assert!(alive, "the server stopped answering after {method} {path}");
        // The server may close without an answer only for a request it cannot parse.
        if let Some(a) = answer {
            *statuses.borrow_mut().entry(a.status).or_insert(0u32) += 1;
            let ready = template == "/ready" && a.status == 503;
            prop_assert!(
                a.status < 500 || ready,
                "{method} {path}{} ({} bytes of body): {} {}",
                f.query,
                f.body.len(),
                a.status,
                a.body
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", tail(&server.stderr()));
    }
    let before = rss_after_warmup.get().expect("warmed up");
    let sent = sent.get();
    let statuses = statuses.into_inner();
    let after = server.rss_kb();
    eprintln!(
        "fuzz: {sent} requests; statuses {statuses:?}; RSS {before} kB after 300, {after} kB after all"
    );
    // Generous: flat means no growth per request (3000 requests would leak far more).
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    assert!(
        statuses.keys().any(|s| (200..300).contains(s)),
        "{statuses:?}"
    );
    common_redis_del(&redis, &stream);
}

/// `/health` answers 200 (a cheap liveness probe after each fuzzed request, every 50th only).
fn server_alive(port: u16) -> bool {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if !N
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(50)
    {
        return true;
    }
    send(
        port,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .is_some_and(|a| a.status == 200)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn planted_secrets_appear_in_no_output() {
    let (Some(clickhouse), Some(_)) = (
        block_on(testing::clickhouse_url()),
        block_on(testing::redis_url()),
    ) else {
        eprintln!("skipped: no ClickHouse or Redis (scripts/services.sh start)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let key_text = std::fs::read_to_string(&key)
        .expect("key")
        .trim()
        .to_string();
    let password = format!("planted-{}", testing::unique_name("pw"));
    let admin = create(&key, "admin", "secrets-admin");
    // A ClickHouse sink with the password from the environment: ClickHouse refuses it (the
    // `default` user has none), so the pipeline fails and its error is shown everywhere.
    let table = testing::unique_name("secrets_rows");
    let pipeline_text = format!(
        "name: secrets-leak
source:
  type: generator
  count: 50
  fields:
    id: id
sink:
  type: clickhouse
  url: {clickhouse}
  table: {table}
  user: default
  password_env: WEIR_TEST_SECRET_PASSWORD
"
    );
    let pipeline = dir.path().join("secrets.yaml");
    std::fs::write(&pipeline, &pipeline_text).expect("pipeline");
    // The ingest Redis with a password, from the environment, unreachable: ingest fails.
    let redis_password = format!("redispw-{}", testing::unique_name("pw"));
    let secrets: [(&str, &str); 4] = [
        ("the ClickHouse password", &password),
        ("the auth key", &key_text),
        ("a token", &admin),
        ("the ingest Redis password", &redis_password),
    ];
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    for (format, level) in [("text", "debug"), ("json", "info")] {
        let run_dir = dir.path().join(format);
        std::fs::create_dir_all(&run_dir).expect("dir");
        let port = free_port();
        let config = run_dir.join("weir.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: data\nauth:\n  enabled: true\n  key_file: {}\ningest:\n  streams:\n    secrets.event: secrets_events\nalerts:\n  evaluate_every: 200ms\n  webhook:\n    url: http://127.0.0.1:9/hook\n    policy: {{ retries: 0 }}\n  rules:\n    - name: failures\n      expr: \"weir_errors_total sum >= 0 for 0s\"\n",
                key.display()
            ),
        )
        .expect("config");
        let log = run_dir.join("serve.log");
        let out = run_dir.join("serve.out");
        let child = weir()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("WEIR_LOG", level)
            .env("WEIR_LOG_FORMAT", format)
            .env("WEIR_TEST_SECRET_PASSWORD", &password)
            .env(
                "WEIR_INGEST_REDIS_URL",
                format!("redis://:{redis_password}@127.0.0.1:1"),
            )
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start weir serve");
        let server = Server {
            child,
            port,
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !server.stderr().contains("listening on") {
            assert!(Instant::now() < deadline, "no start: {}", server.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = answer(
            port,
            "POST",
            "/v1/pipelines",
            Some(&admin),
            pipeline_text.as_bytes(),
        );
        assert_eq!(a.status, 201, "{a:?}");
        // It fails on ClickHouse's refusal.
        let deadline = Instant::now() + Duration::from_secs(120);
        let shown = loop {
            let a = answer(port, "GET", "/v1/pipelines/secrets-leak", Some(&admin), b"");
            if a.body.contains("\"failed\"") {
                break a;
            }
            assert!(Instant::now() < deadline, "never failed: {a:?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        outputs.push((
            format!("{format}: GET /v1/pipelines/secrets-leak"),
            shown.body.into_bytes(),
        ));
        for path in [
            "/v1/pipelines",
            "/metrics",
            "/v1/alerts",
            "/v1/pipelines/secrets-leak/dead-letters",
            "/openapi.json",
        ] {
            let a = answer(port, "GET", path, Some(&admin), b"");
            outputs.push((format!("{format}: GET {path}"), a.body.into_bytes()));
        }
        // Ingest into the unreachable Redis: 503, naming the Redis without its password.
        let a = answer(
            port,
            "POST",
            "/v1/schemas",
            Some(&admin),
            b"name: secrets.event\nfields:\n  - { name: id, type: int, required: true }\n",
        );
        assert!(a.status == 201 || a.status == 200, "{a:?}");
        let a = answer(
            port,
            "POST",
            "/v1/ingest/secrets.event",
            Some(&admin),
            b"{\"id\": 1}",
        );
        assert_eq!(a.status, 503, "{a:?}");
        assert!(a.body.contains("127.0.0.1:1"), "{a:?}");
        outputs.push((format!("{format}: the failed ingest"), a.body.into_bytes()));
        // A refused token's answer.
        let a = answer(
            port,
            "GET",
            "/v1/pipelines",
            Some(&format!("{admin}x")),
            b"",
        );
        outputs.push((format!("{format}: a bad token's 401"), a.body.into_bytes()));
        drop(server);
        outputs.push((
            format!("{format}: server stderr"),
            std::fs::read(&log).expect("log"),
        ));
        outputs.push((
            format!("{format}: server stdout"),
            std::fs::read(&out).expect("out"),
        ));
        for file in files(&run_dir.join("data")) {
            outputs.push((
                format!("data dir file {}", file.display()),
                std::fs::read(&file).unwrap_or_default(),
            ));
        }
        // `weir run` of the same pipeline, with the summary as JSON.
        let run = weir()
            .arg("run")
            .arg(&pipeline)
            .arg("--summary-json")
            .env("WEIR_LOG", level)
            .env("WEIR_LOG_FORMAT", format)
            .env("WEIR_TEST_SECRET_PASSWORD", &password)
            .output()
            .expect("weir run");
        assert!(!run.status.success(), "the run should fail: {run:?}");
        outputs.push((format!("{format}: weir run stdout"), run.stdout));
        outputs.push((format!("{format}: weir run stderr"), run.stderr.clone()));
        // The failure is the connector's, with ClickHouse's reason.
        let err = String::from_utf8_lossy(&run.stderr).to_lowercase();
        assert!(
            err.contains("clickhouse") && (err.contains("auth") || err.contains("password")),
            "{err}"
        );
    }
    assert!(outputs.len() > 20, "{}", outputs.len());
    for (what, bytes) in &outputs {
        for (secret_name, secret) in secrets {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "{secret_name} appears in {what}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
