//! The HTTP enrichment client and webhook sink against a real server on 127.0.0.1.

use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use weir_connectors::http::test_server::{Reply, Request, TestServer};
use weir_connectors::http::{
    BodyFormat, HttpEnrichConfig, HttpEnricher, HttpError, HttpSink, HttpSinkConfig, Method,
};
use weir_core::{OperatorContext, Sink};
use weir_resilience::{Error, PolicyConfig};
use weir_types::{Record, Value};

fn policy(text: &str) -> PolicyConfig {
    serde_json::from_str(text).unwrap()
}

/// Fails the first `k` calls per path with `status`, then answers `{"path": ..., "n": calls}`.
fn flaky(k: u32, status: u16) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let calls = Mutex::new(HashMap::<String, u32>::new());
    move |request: &Request| {
        let n = {
            let mut calls = calls.lock().unwrap();
            let n = calls.entry(request.path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if n <= k {
            Reply::status(status, "try again later")
        } else {
            Reply::json(&json!({ "path": request.path, "n": n }))
        }
    }
}

fn enricher(
    server: &TestServer,
    path: &str,
    into: Option<&str>,
    policy_text: &str,
) -> HttpEnricher {
    let mut config = HttpEnrichConfig::new(format!("{}{path}", server.url()));
    config.into = into.map(str::to_string);
    config.policy = policy(policy_text);
    HttpEnricher::new(config).unwrap()
}

fn user(id: i64) -> Record {
    Record::from_pairs([("user_id", Value::Int(id)), ("amount", Value::Int(10))])
}

#[tokio::test]
async fn get_merges_the_answer_under_a_field_or_at_the_top_level() {
    let server = TestServer::start(|r: &Request| {
        Reply::json(&json!({ "name": format!("user{}", &r.path[7..]), "tier": 2 }))
    })
    .unwrap();
    let into = enricher(
        &server,
        "/users/{user_id}",
        Some("user"),
        r#"{"retries": 0}"#,
    );
    let record = into.enrich(user(7)).await.unwrap();
    assert_eq!(record.get("amount"), Some(&Value::Int(10)));
    assert_eq!(
        record.get("user").unwrap().to_json(),
        json!({ "name": "user7", "tier": 2 })
    );
    let top = enricher(&server, "/users/{user_id}", None, r#"{"retries": 0}"#);
    let record = top.enrich(user(8)).await.unwrap();
    assert_eq!(record.get("name"), Some(&Value::from("user8")));
    assert_eq!(record.get("tier"), Some(&Value::Int(2)));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", "/users/7")
    );
    assert_eq!(requests[0].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn post_sends_the_record_and_the_configured_headers() {
    let server = TestServer::start(|r: &Request| {
        let sent: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        Reply::json(&json!({ "score": sent["amount"].as_i64().unwrap() * 3 }))
    })
    .unwrap();
    let mut config = HttpEnrichConfig::new(format!("{}/score", server.url()));
    config.method = Method::Post;
    config.headers = vec![("X-Api-Key".into(), "k1".into())];
    config.policy = policy(r#"{"retries": 0}"#);
    let record = HttpEnricher::new(config)
        .unwrap()
        .enrich(user(1))
        .await
        .unwrap();
    assert_eq!(record.get("score"), Some(&Value::Int(30)));
    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("x-api-key"), Some("k1"));
    assert_eq!(request.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn retryable_answers_are_retried_and_others_fail_at_once() {
    for status in [429, 500, 503] {
        let server = TestServer::start(flaky(2, status)).unwrap();
        let e = enricher(
            &server,
            "/k/{user_id}",
            Some("r"),
            r#"{"retries": 3, "backoff": {"min": "1ms", "max": "5ms"}}"#,
        );
        let record = e.enrich(user(1)).await.unwrap();
        assert_eq!(
            record.get("r").unwrap().to_json()["n"],
            3,
            "status {status}"
        );
        assert_eq!(e.policy().stats().attempts, 3);
    }
    for status in [400, 404, 422] {
        let server = TestServer::start(flaky(5, status)).unwrap();
        let e = enricher(
            &server,
            "/k/{user_id}",
            Some("r"),
            r#"{"retries": 3, "backoff": {"min": "1ms", "max": "5ms"}}"#,
        );
        match e.enrich(user(1)).await.unwrap_err() {
            Error::Operation { source, attempts } => {
                assert_eq!(attempts, 1);
                assert_eq!(source.status(), Some(status));
                assert!(source.to_string().contains("try again later"), "{source}");
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(server.request_count(), 1);
    }
}

#[tokio::test]
async fn exhausted_retries_return_the_last_error() {
    let server = TestServer::start(flaky(100, 503)).unwrap();
    let e = enricher(
        &server,
        "/k/{user_id}",
        None,
        r#"{"retries": 2, "backoff": {"min": "1ms", "max": "2ms"}}"#,
    );
    let err = e.enrich(user(1)).await.unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.operation_error().and_then(HttpError::status), Some(503));
    assert!(err.to_string().contains("answered HTTP 503"), "{err}");
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn slow_answers_hit_the_attempt_timeout_and_are_retried() {
    let calls = Mutex::new(0);
    let server = TestServer::start(move |_: &Request| {
        let mut n = calls.lock().unwrap();
        *n += 1;
        let reply = Reply::json(&json!({ "ok": true }));
        if *n == 1 {
            reply.after(Duration::from_millis(800))
        } else {
            reply
        }
    })
    .unwrap();
    let e = enricher(
        &server,
        "/x/{user_id}",
        None,
        r#"{"retries": 1, "timeout": "100ms", "backoff": {"min": "1ms", "max": "1ms"}}"#,
    );
    let record = e.enrich(user(1)).await.unwrap();
    assert_eq!(record.get("ok"), Some(&Value::Bool(true)));
    assert_eq!(e.policy().stats().attempt_timeouts, 1);
}

#[tokio::test]
async fn connection_failures_are_retryable_errors_naming_the_url() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = HttpEnrichConfig::new(format!("http://127.0.0.1:{port}/x/{{user_id}}"));
    config.policy = policy(r#"{"retries": 1, "backoff": {"min": "1ms", "max": "1ms"}}"#);
    let e = HttpEnricher::new(config).unwrap();
    let err = e.enrich(user(1)).await.unwrap_err();
    assert_eq!(err.attempts(), 2, "connection refused is retried");
    match err.operation_error() {
        Some(HttpError::Connect { url, .. }) => {
            assert_eq!(url, &format!("http://127.0.0.1:{port}/x/1"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unusable_answers_and_unusable_records_are_not_retried() {
    let server = TestServer::start(|r: &Request| {
        if r.path.ends_with("/text") {
            Reply::status(200, "plain text")
        } else {
            Reply::json(&json!([1, 2]))
        }
    })
    .unwrap();
    let retrying = r#"{"retries": 3, "backoff": {"min": "1ms", "max": "1ms"}}"#;
    let text = enricher(&server, "/text", Some("r"), retrying);
    let err = text.enrich(user(1)).await.unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert!(err.to_string().contains("the body is not JSON"), "{err}");
    let array = enricher(&server, "/array", None, retrying);
    let err = array.enrich(user(1)).await.unwrap_err();
    assert!(
        err.to_string().contains("found an array; set `into`"),
        "{err}"
    );
    // An array is fine under a field.
    let under = enricher(&server, "/array", Some("list"), retrying);
    assert_eq!(
        under
            .enrich(user(1))
            .await
            .unwrap()
            .get("list")
            .unwrap()
            .to_json(),
        json!([1, 2])
    );
    assert_eq!(server.request_count(), 3);

    let missing = enricher(&server, "/u/{customer}", None, retrying);
    let err = missing.enrich(user(1)).await.unwrap_err();
    assert_eq!(err.attempts(), 0);
    assert!(
        err.to_string().contains("field `customer` is missing"),
        "{err}"
    );
    assert_eq!(
        server.request_count(),
        3,
        "no request for a record that cannot fill the URL"
    );
}

#[tokio::test]
async fn cached_answers_serve_every_record_of_a_key() {
    let server = TestServer::start(flaky(1, 503)).unwrap();
    let e = enricher(
        &server,
        "/users/{user_id}",
        Some("u"),
        r#"{"retries": 2, "backoff": {"min": "1ms", "max": "1ms"}, "cache": {"ttl": "60s"}}"#,
    );
    let records: Vec<Record> = (0..60).map(|i| user(i % 3)).collect();
    let enriched = futures::future::join_all(records.into_iter().map(|r| e.enrich(r))).await;
    assert!(enriched.iter().all(Result::is_ok));
    // Per key: one failed attempt, one success; every other record is a cache hit.
    assert_eq!(server.request_count(), 6);
    assert_eq!(e.policy().rate_limiter().map(|l| l.acquired()), None);
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let bad_policy = HttpEnrichConfig {
        policy: policy(r#"{"rate_limit": {"per_second": 0}}"#),
        ..HttpEnrichConfig::new("http://127.0.0.1:1/{id}")
    };
    let err = HttpEnricher::new(bad_policy).unwrap_err();
    assert!(
        err.to_string()
            .contains("`policy`: invalid `rate_limit.per_second`"),
        "{err}"
    );
    let bad_header = HttpEnrichConfig {
        headers: vec![("bad header".into(), "x".into())],
        ..HttpEnrichConfig::new("http://127.0.0.1:1/{id}")
    };
    let err = HttpEnricher::new(bad_header).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid HTTP configuration `headers`: invalid name in header `bad header`"
    );
    let err = HttpSink::new(HttpSinkConfig::new("http://127.0.0.1:1/{id}")).unwrap_err();
    assert!(
        err.to_string().contains("takes no `{field}` placeholders"),
        "{err}"
    );
}

// ---- webhook sink ----------------------------------------------------------------------------

fn sink(server: &TestServer, format: BodyFormat, batch_rows: usize, policy_text: &str) -> HttpSink {
    let mut config = HttpSinkConfig::new(format!("{}/hook", server.url()));
    config.format = format;
    config.batch_rows = batch_rows;
    config.policy = policy(policy_text);
    HttpSink::new(config).unwrap()
}

fn records(range: std::ops::Range<i64>) -> Vec<Record> {
    range
        .map(|i| Record::from_pairs([("i", Value::Int(i))]))
        .collect()
}

fn received_ids(server: &TestServer, format: BodyFormat) -> Vec<i64> {
    let mut ids = Vec::new();
    for request in server.requests().iter() {
        let rows: Vec<serde_json::Value> = match format {
            BodyFormat::JsonArray => serde_json::from_slice(&request.body).unwrap(),
            BodyFormat::JsonLines => request
                .body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect(),
        };
        ids.extend(rows.iter().map(|r| r["i"].as_i64().unwrap()));
    }
    ids
}

#[test]
fn batches_are_posted_as_a_json_array_when_full_and_at_the_end() {
    let server = TestServer::start(|_: &Request| Reply::status(204, "")).unwrap();
    let mut sink = sink(&server, BodyFormat::JsonArray, 4, r#"{"retries": 0}"#);
    let mut ctx = OperatorContext::detached("webhook");
    sink.write(&mut records(0..10), &mut ctx).unwrap();
    assert_eq!(server.request_count(), 2, "two full batches of 4");
    sink.close(&mut ctx).unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.header("content-type") == Some("application/json"))
    );
    assert_eq!(
        received_ids(&server, BodyFormat::JsonArray),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(sink.delivered(), 10);
}

#[test]
fn json_lines_batches_and_a_barrier_flushes_what_came_before_it() {
    let server = TestServer::start(|_: &Request| Reply::status(200, "{}")).unwrap();
    let mut sink = sink(&server, BodyFormat::JsonLines, 1000, r#"{"retries": 0}"#);
    let mut ctx = OperatorContext::detached("webhook");
    sink.write(&mut records(0..5), &mut ctx).unwrap();
    assert_eq!(server.request_count(), 0);
    sink.snapshot(1, &mut ctx).unwrap();
    assert_eq!(
        server.request_count(),
        1,
        "delivered before the barrier is acknowledged"
    );
    sink.write(&mut records(5..7), &mut ctx).unwrap();
    sink.close(&mut ctx).unwrap();
    let requests = server.requests();
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/x-ndjson")
    );
    assert_eq!(
        received_ids(&server, BodyFormat::JsonLines),
        (0..7).collect::<Vec<_>>()
    );
}

#[test]
fn failed_deliveries_are_retried_with_the_same_body() {
    let handler = flaky(2, 503);
    let server = TestServer::start(move |r: &Request| handler(r)).unwrap();
    let mut sink = sink(
        &server,
        BodyFormat::JsonArray,
        3,
        r#"{"retries": 3, "backoff": {"min": "1ms", "max": "2ms"}}"#,
    );
    let mut ctx = OperatorContext::detached("webhook");
    sink.write(&mut records(0..3), &mut ctx).unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.body == requests[2].body));
    assert_eq!(sink.delivered(), 3);
}

#[test]
fn a_batch_that_fails_for_good_fails_the_job_with_the_reason() {
    let server =
        TestServer::start(|_: &Request| Reply::status(400, "field i is not allowed")).unwrap();
    let mut sink = sink(
        &server,
        BodyFormat::JsonArray,
        2,
        r#"{"retries": 3, "backoff": {"min": "1ms", "max": "1ms"}}"#,
    );
    let mut ctx = OperatorContext::detached("webhook");
    let err = sink.write(&mut records(0..2), &mut ctx).unwrap_err();
    assert_eq!(server.request_count(), 1, "400 is not retried");
    let text = err.to_string();
    assert!(
        text.contains("delivering a batch of 2 record(s) to"),
        "{text}"
    );
    assert!(text.contains("HTTP 400: field i is not allowed"), "{text}");
}

#[tokio::test]
async fn the_shared_runtime_can_be_looked_up_from_async_code() {
    // Building a pipeline inside an async program must not try to nest runtimes.
    let runtime = weir_connectors::http::runtime();
    let handle = runtime.handle();
    let answer = std::thread::spawn(move || handle.block_on(async { 6 * 7 }))
        .join()
        .unwrap();
    assert_eq!(answer, 42);
}
