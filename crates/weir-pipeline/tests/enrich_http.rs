//! `enrich_http` and the `http` sink against a real HTTP server on 127.0.0.1, started by the
//! test (no service needs installing).
//!
//! The acceptance case: 100,000 records enriched through a server that fails the first calls of
//! every key, is slow on some keys (one answer slower than the attempt timeout), and does not
//! know some users; every record ends enriched or in the dead-letter file with its reason, and
//! the server never sees more requests per second than the configured rate limit.

use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use weir_connectors::http::test_server::{Reply, Request, TestServer};
use weir_core::Environment;
use weir_pipeline::Pipeline;

const RECORDS: u64 = 100_000;
/// Distinct known users; records cycle through them.
const KEYS: u64 = 400;
/// The first `FAIL_FIRST` calls of every known user answer 503.
const FAIL_FIRST: u32 = 2;
/// Requests per second the step may make.
const RATE: u64 = 250;

/// Record `i`: every 1000th names a user the server does not know (404), every 2000th
/// (offset 500) has no `user_id` at all (cannot fill the URL); the others cycle through
/// `KEYS` users.
fn record(i: u64) -> Json {
    if i % 1000 == 999 {
        json!({ "id": i, "user_id": format!("ghost{i}") })
    } else if i % 2000 == 500 {
        json!({ "id": i, "amount": 1 })
    } else {
        json!({ "id": i, "user_id": i % KEYS, "amount": i % 7 })
    }
}

enum Expected {
    Enriched(u64),
    Unknown,
    NoUserId,
}

fn expected(i: u64) -> Expected {
    if i % 1000 == 999 {
        Expected::Unknown
    } else if i % 2000 == 500 {
        Expected::NoUserId
    } else {
        Expected::Enriched(i % KEYS)
    }
}

/// The users' service: `/users/{id}`.
fn users_service() -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let calls = Mutex::new(HashMap::<String, u32>::new());
    move |request: &Request| {
        let Some(user) = request.path.strip_prefix("/users/") else {
            return Reply::status(400, "unexpected path");
        };
        let Ok(id) = user.parse::<u64>() else {
            return Reply::status(404, &format!("no such user: {user}"));
        };
        let n = {
            let mut calls = calls.lock().unwrap();
            let n = calls.entry(user.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        if n <= FAIL_FIRST {
            return Reply::status(503, "warming up");
        }
        let answer = Reply::json(&json!({ "id": id, "name": format!("user-{id}") }));
        if id % 100 == 1 && n == FAIL_FIRST + 1 {
            // Slower than the attempt timeout once: the retry gets it.
            answer.after(Duration::from_millis(1500))
        } else if id % 40 == 0 {
            answer.after(Duration::from_millis(200))
        } else {
            answer
        }
    }
}

fn write_input(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..RECORDS {
        writeln!(out, "{}", record(i)).unwrap();
    }
    out.flush().unwrap();
}

fn read_lines(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_pipeline_enriches_100k_records_through_a_flaky_rate_limited_service() {
    let server = TestServer::start(users_service()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dead) = (
        dir.path().join("orders.jsonl"),
        dir.path().join("enriched.jsonl"),
        dir.path().join("dead.jsonl"),
    );
    write_input(&input);
    let yaml = format!(
        r#"
name: enrich_acceptance
source:
  type: file
  path: {input}
steps:
  - enrich_http:
      url: "{url}/users/{{user_id}}"
      into: user
      workers: 16
      ordered: false
      policy:
        retries: 3
        backoff: {{ min: 10ms, max: 100ms }}
        rate_limit: {{ per_second: {RATE} }}
        timeout: 1s
        circuit_breaker: {{ failure_threshold: 1000, reset_timeout: 1s }}
        cache: {{ ttl: 60s }}
sink:
  type: file
  path: {output}
dead_letter:
  type: file
  path: {dead}
"#,
        input = input.display(),
        output = output.display(),
        dead = dead.display(),
        url = server.url(),
    );
    let pipeline = Pipeline::parse(&yaml, "enrich.yaml").unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    let job = env.start().unwrap();
    let metrics = job.metrics().clone();
    job.wait().unwrap();

    let enriched = read_lines(&output);
    let dead = read_lines(&dead);
    assert_eq!(
        enriched.len() + dead.len(),
        RECORDS as usize,
        "no record lost or duplicated"
    );

    let mut seen = vec![false; RECORDS as usize];
    for r in &enriched {
        let id = r["id"].as_u64().unwrap();
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "record {id} twice"
        );
        match expected(id) {
            Expected::Enriched(user) => {
                assert_eq!(r["user_id"], user);
                assert_eq!(
                    r["user"],
                    json!({ "id": user, "name": format!("user-{user}") })
                );
                assert_eq!(r["amount"], id % 7, "the record's own fields are kept");
            }
            _ => panic!("record {id} should have failed: {r}"),
        }
    }
    let (mut unknown, mut no_user_id) = (0, 0);
    for d in &dead {
        let id = d["record"]["id"].as_u64().unwrap();
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "record {id} twice"
        );
        assert_eq!(d["stage"], "steps[0].enrich_http");
        // One file source, one instance: the position is the record's line index.
        assert_eq!(d["position"], id, "{d}");
        let error = d["error"].as_str().unwrap();
        match expected(id) {
            Expected::Unknown => {
                unknown += 1;
                assert!(
                    error.contains(&format!("answered HTTP 404: no such user: ghost{id}")),
                    "{error}"
                );
                assert!(
                    error.contains("after 1 attempt(s)"),
                    "404 is not retried: {error}"
                );
            }
            Expected::NoUserId => {
                no_user_id += 1;
                assert!(error.contains("field `user_id` is missing"), "{error}");
            }
            Expected::Enriched(_) => panic!("record {id} should have been enriched: {d}"),
        }
    }
    assert_eq!((unknown, no_user_id), (100, 50));
    assert!(seen.iter().all(|s| *s));

    // Calls: per known user two 503s and one success (cached for the rest of the run), plus
    // one timed-out attempt for each user slow beyond the timeout; one 404 per unknown user.
    let slow_users = (0..KEYS).filter(|id| id % 100 == 1).count();
    assert_eq!(
        server.request_count(),
        KEYS as usize * (FAIL_FIRST as usize + 1) + slow_users + 100
    );
    // The step's policy reports the same story to the job's metrics: two retries per known
    // user and one per timed-out attempt; a miss per known user and per unknown one (404s
    // are not cached), every other lookup a hit (records without a user_id make none).
    let step = metrics
        .operators()
        .iter()
        .find(|o| o.name() == "steps[0].enrich_http")
        .expect("the enrich step's metrics");
    let policies = step.policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    let (name, policy) = &policies[0];
    assert_eq!(name, "http");
    assert_eq!(
        policy.retries as usize,
        KEYS as usize * FAIL_FIRST as usize + slow_users
    );
    assert_eq!(policy.cache_misses, Some(KEYS + 100));
    assert_eq!(
        policy.cache_hits.unwrap() + policy.cache_misses.unwrap(),
        RECORDS - 50
    );
    assert_eq!(policy.breaker_state, Some(0), "closed");
    assert!(
        policy.rate_limited.unwrap() > 0,
        "the limiter held calls back"
    );
    // The limiter reserves slots 1/RATE apart, the first immediate (a burst of 1). A request
    // leaves when its timer fires, which can be late (timer resolution, a loaded machine), so
    // a late request bunches with the next ones: allow 50 ms of such lateness, i.e.
    // RATE * 0.05 more requests. (Without the limiter this server sees ~1200 in one second.)
    let allowed = RATE as usize + 1 + (RATE as usize * 50).div_ceil(1000);
    let busiest = server.max_in_window(Duration::from_secs(1));
    eprintln!("busiest second: {busiest} requests (limit {RATE}/s, allowed {allowed})");
    assert!(
        busiest <= allowed,
        "{busiest} requests within one second; the limit is {RATE}/s (+{})",
        allowed - RATE as usize
    );
    // And the limiter was what held it back: the run needed more than one second of calls.
    assert!(
        busiest > RATE as usize / 2,
        "only {busiest} requests in the busiest second"
    );
}

#[test]
fn the_http_sink_posts_every_record_and_retries_a_failed_batch() {
    let posts = Mutex::new(0u32);
    let server = TestServer::start(move |_: &Request| {
        let mut n = posts.lock().unwrap();
        *n += 1;
        if *n == 2 {
            Reply::status(503, "busy")
        } else {
            Reply::status(200, "{}")
        }
    })
    .unwrap();
    let yaml = format!(
        r#"
source:
  type: generator
  count: 10000
  fields: {{ id: id, key: "id % 10" }}
sink:
  type: http
  url: "{url}/hook"
  format: json_lines
  batch_rows: 1000
  headers: {{ Authorization: "Bearer t0k3n" }}
  policy:
    retries: 2
    backoff: {{ min: 1ms, max: 10ms }}
"#,
        url = server.url()
    );
    let pipeline = Pipeline::parse(&yaml, "hook.yaml").unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    let job = env.start().unwrap();
    let metrics = job.metrics().clone();
    job.wait().unwrap();
    // The sink's policy retried the failed batch once, and says so in the job's metrics.
    let sink = metrics
        .operators()
        .iter()
        .find(|o| o.name() == "sink")
        .expect("the sink's metrics");
    let policies = sink.policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0].0, "http");
    assert_eq!(policies[0].1.retries, 1);
    assert_eq!(policies[0].1.cache_hits, None);

    let requests = server.requests();
    assert_eq!(requests.len(), 11, "10 batches, one of them sent twice");
    assert_eq!(
        requests[1].body, requests[2].body,
        "the failed batch is re-sent as it was"
    );
    let mut ids: Vec<u64> = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, r)| {
            assert_eq!(r.header("authorization"), Some("Bearer t0k3n"));
            assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
            String::from_utf8(r.body.clone())
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<Json>(l).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
}

#[test]
fn without_a_dead_letter_output_a_failed_call_fails_the_job_naming_the_step() {
    let server = TestServer::start(|_: &Request| Reply::status(404, "gone")).unwrap();
    let yaml = format!(
        r#"
source:
  type: generator
  count: 10
  fields: {{ id: id }}
steps:
  - enrich_http:
      url: "{url}/x/{{id}}"
      policy: {{ retries: 0 }}
sink:
  type: discard
"#,
        url = server.url()
    );
    let pipeline = Pipeline::parse(&yaml, "strict.yaml").unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    let error = env.execute().unwrap_err().to_string();
    assert!(error.contains("steps[0].enrich_http"), "{error}");
    assert!(error.contains("answered HTTP 404: gone"), "{error}");
}

fn config_error(yaml: &str) -> String {
    let error = match Pipeline::parse(yaml, "bad.yaml") {
        Err(e) => e,
        Ok(p) => p.validate().unwrap_err(),
    };
    error.to_string()
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let head = "source:\n  type: generator\n  count: 1\n  fields: { id: id }\n";
    let sink = "sink:\n  type: discard\n";
    let error = config_error(&format!(
        "{head}steps:\n  - enrich_http:\n      url: \"http://127.0.0.1:1/{{id}}\"\n      policy:\n        rate_limit:\n          per_second: 0\n{sink}"
    ));
    assert_eq!(
        error,
        "bad.yaml:10: steps[0].enrich_http.policy.rate_limit.per_second: invalid \
         `rate_limit.per_second`: expected a positive, finite number of calls per second, found 0"
    );
    let error = config_error(&format!(
        "{head}steps:\n  - enrich_http:\n      url: \"http://127.0.0.1:1/{{nope}}\"\n{sink}"
    ));
    assert!(
        error.starts_with("bad.yaml:7: steps[0].enrich_http.url: unknown field `nope`"),
        "{error}"
    );
    let error = config_error(&format!(
        "{head}steps:\n  - enrich_http:\n      url: \"http://127.0.0.1:1/{{id\"\n{sink}"
    ));
    assert!(
        error.starts_with("bad.yaml:7: steps[0].enrich_http.url: unclosed `{`"),
        "{error}"
    );
    let error = config_error(&format!(
        "{head}steps:\n  - enrich_http:\n      url: \"http://127.0.0.1:1/{{id}}\"\n      retries: 3\n{sink}"
    ));
    assert!(
        error.contains(":8") && error.contains("unknown field `retries`"),
        "{error}"
    );
    let error = config_error(&format!(
        "{head}sink:\n  type: http\n  url: \"http://127.0.0.1:1/hook\"\n  path: out.jsonl\n"
    ));
    assert!(
        error.starts_with("bad.yaml:8: sink.path: `path` is not an option of a http sink"),
        "{error}"
    );
    let error = config_error(&format!(
        "{head}sink:\n  type: http\n  url: \"http://127.0.0.1:1/hook\"\n  policy:\n    backoff: {{ min: 2s, max: 1s }}\n"
    ));
    assert!(
        error.starts_with("bad.yaml:9: sink.policy.backoff"),
        "{error}"
    );
}
