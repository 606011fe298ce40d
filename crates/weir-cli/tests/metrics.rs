//! Observability of `weir run`: `--metrics-listen` serves the run's counters as Prometheus
//! (OpenMetrics) text over real HTTP, from the same source as the summary; `--log-format json`
//! (or `WEIR_LOG_FORMAT=json`) gives JSON log lines with the pipeline's context.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("WEIR_LOG").env_remove("WEIR_LOG_FORMAT");
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1; (status, content type, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response with headers");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, content_type, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the exposition strictly: `# TYPE`/`# HELP` lines, samples of declared families
/// only, label values quoted with escapes, a number as the value, `# EOF` last.
fn parse(body: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end:\n{body}");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let sample = parse_sample(line);
        // Which declared family the sample belongs to.
        let family = types
            .iter()
            .find(|(family, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                suffixes
                    .iter()
                    .any(|s| sample.name == format!("{family}{s}"))
            })
            .map(|(f, _)| f.clone());
        assert!(family.is_some(), "sample of an undeclared family: {line}");
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            // key
            let start = chars.peek().map(|&(i, _)| i).expect("label key");
            let mut key_end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                assert!(
                    c.is_ascii_alphanumeric() || c == '_',
                    "bad label key in {line}"
                );
            }
            let key = &after[start..key_end];
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "unquoted value: {line}"
            );
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    end = Some(i);
                    break;
                }
                other => panic!("after a label: {other:?} in {line}"),
            }
        }
        rest = &after[end.expect("closing brace") + 1..];
    }
    let value = rest.trim();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn write_pipeline(dir: &Path, name: &str) {
    let yaml = format!(
        "name: {name}\n\
         fields: {{ n: int }}\n\
         settings: {{ batch_timeout: 5ms, checkpoint: {{ interval: 100ms }} }}\n\
         source: {{ type: stdin }}\n\
         steps:\n  - filter: \"n % 3 != 0\"\n\
         sink: {{ type: file, path: out.jsonl }}\n\
         dead_letter: {{ type: file, path: dead.jsonl }}\n"
    );
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
}

#[test]
fn metrics_listen_serves_the_runs_counters_as_prometheus_text_over_http() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "metered");
    let port = free_port();
    let mut child = weir()
        .args(["run", "p.yaml", "--progress", "never", "--summary-json"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    const GOOD: u64 = 1000;
    const BAD: u64 = 3;
    for n in 0..GOOD {
        writeln!(stdin, "{{\"n\":{n}}}").unwrap();
        if n % 400 == 0 {
            writeln!(stdin, "not json {n}").unwrap();
        }
    }
    stdin.flush().unwrap();

    // The input stays open: the run is live while we scrape. Wait until everything fed was
    // read (a deadline only so that a broken build fails instead of hanging).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (content_type, samples, body) = loop {
        if let Ok((200, content_type, body)) = get(port, "/metrics") {
            let samples = parse(&body);
            let read = sum(&samples, "weir_records_in_total", &[("kind", "source")]);
            let committed = sum(
                &samples,
                "weir_checkpoints_total",
                &[("outcome", "completed")],
            );
            if read as u64 == GOOD + BAD && committed >= 1.0 {
                break (content_type, samples, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "never saw every record read; last scrape:\n{:?}",
            get(port, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let p = ("pipeline", "metered");
    // Every per-operator series carries pipeline, operator, instance and kind.
    for s in samples
        .iter()
        .filter(|s| s.name.starts_with("weir_records_"))
    {
        for label in ["pipeline", "operator", "instance", "kind"] {
            assert!(s.labels.contains_key(label), "{s:?} has no {label}");
        }
    }
    // The source read every line, good and bad; the filter passed n % 3 != 0; the bad lines
    // went to the dead-letter output.
    assert_eq!(
        sum(&samples, "weir_records_in_total", &[p, ("kind", "source")]) as u64,
        GOOD + BAD
    );
    let passed = (0..GOOD).filter(|n| n % 3 != 0).count() as f64;
    assert_eq!(
        sum(
            &samples,
            "weir_records_out_total",
            &[p, ("operator", "sink")]
        ),
        passed,
        "{body}"
    );
    assert_eq!(
        sum(&samples, "weir_dead_letters_total", &[p]) as u64,
        BAD,
        "{body}"
    );
    assert!(sum(&samples, "weir_operator_busy_seconds_total", &[p]) > 0.0);
    // Checkpoints: a histogram whose count is the completed ones.
    let completed = sum(
        &samples,
        "weir_checkpoints_total",
        &[p, ("outcome", "completed")],
    );
    assert_eq!(
        sum(&samples, "weir_checkpoint_duration_seconds_count", &[p]),
        completed
    );
    assert_eq!(
        sum(
            &samples,
            "weir_checkpoint_duration_seconds_bucket",
            &[p, ("le", "+Inf")]
        ),
        completed
    );
    assert_eq!(
        sum(
            &samples,
            "weir_checkpoints_total",
            &[p, ("outcome", "failed")]
        ),
        0.0
    );
    assert!(
        sum(&samples, "weir_checkpoint_size_bytes", &[p]) > 0.0,
        "{body}"
    );
    // A ratio only where an instance has an input channel, always within 0..1.
    for s in samples
        .iter()
        .filter(|s| s.name == "weir_channel_fill_ratio")
    {
        assert!((0.0..=1.0).contains(&s.value), "{s:?}");
    }

    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("metrics at http://127.0.0.1:{port}/metrics")),
        "{err}"
    );
    // The summary reads the same counters.
    let summary: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(summary["read"], GOOD + BAD);
    assert_eq!(summary["dead_letters"]["written"], BAD);
}

#[test]
fn a_bad_metrics_address_or_log_format_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "refused");
    let out = weir()
        .args(["run", "p.yaml", "--metrics-listen", "nowhere"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--metrics-listen") && err.contains("nowhere"),
        "{err}"
    );
    assert!(!dir.path().join("out.jsonl").exists());

    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = weir()
        .args(["run", "p.yaml", "--metrics-listen", &addr])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");

    let out = weir()
        .args(["run", "p.yaml"])
        .env("WEIR_LOG_FORMAT", "xml")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown log format 'xml'"), "{err}");
}

/// JSON log lines of a run: (message, line) for each line that is a JSON log object.
fn json_logs(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("level").is_some())
        .collect()
}

#[test]
fn json_logs_carry_level_message_time_and_the_pipeline_context() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "logged");
    for (flag, env) in [(true, None), (false, Some("json"))] {
        let mut cmd = weir();
        cmd.args(["run", "p.yaml", "--progress", "never", "--ignore-state"]);
        if flag {
            cmd.args(["--log-format", "json"]);
        }
        if let Some(format) = env {
            cmd.env("WEIR_LOG_FORMAT", format);
        }
        let mut child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut stdin = child.stdin.take().unwrap();
            for n in 0..100 {
                writeln!(stdin, "{{\"n\":{n}}}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let logs = json_logs(&err);
        let find = |message: &str| {
            logs.iter()
                .find(|l| l["message"] == message)
                .unwrap_or_else(|| panic!("no '{message}' in {err}"))
                .clone()
        };
        let started = find("pipeline started");
        assert_eq!(started["level"], "info");
        assert_eq!(started["pipeline"], "logged");
        assert!(started["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        // Checkpoints complete on a task thread: the pipeline and the operator are known.
        let checkpoint = find("checkpoint completed");
        assert_eq!(checkpoint["pipeline"], "logged", "{checkpoint}");
        assert!(checkpoint["operator"].is_string(), "{checkpoint}");
        assert!(checkpoint["checkpoint"].as_u64().is_some(), "{checkpoint}");
        let ended = find("pipeline ended");
        assert_eq!(ended["read"], 100);
        assert_eq!(ended["outcome"], "finished");
        // Every JSON line is a log object; the human summary is still there.
        assert!(err.contains("logged: finished in"), "{err}");
    }

    // Text (the default) shows no info events: the human output is unchanged.
    let out = weir()
        .args(["run", "p.yaml", "--progress", "never", "--ignore-state"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(json_logs(&err).is_empty(), "{err}");
    assert!(!err.contains("checkpoint completed"), "{err}");

    // WEIR_LOG sets levels: warn hides info events even in JSON.
    let out = weir()
        .args(["run", "p.yaml", "--progress", "never", "--ignore-state"])
        .args(["--log-format", "json"])
        .env("WEIR_LOG", "warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(json_logs(&err).is_empty(), "{err}");
}

/// Scrapes until `done` holds (a deadline only so that a broken build fails instead of
/// hanging); the samples and the body.
fn scrape_until(port: u16, what: &str, done: impl Fn(&[Sample]) -> bool) -> (Vec<Sample>, String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok((200, _, body)) = get(port, "/metrics") {
            let samples = parse(&body);
            if done(&samples) {
                return (samples, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; last scrape:\n{:?}",
            get(port, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn append_lines(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for n in from..to {
        text.push_str(&format!("{{\"n\":{n},\"k\":\"key{}\"}}\n", n % 1000));
    }
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn end_to_end_latency_of_a_file_to_stdout_run_is_a_histogram_of_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    append_lines(&input, 0, 500);
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: e2e\nsource: { type: file, path: in.jsonl, follow: true }\nsink: { type: stdout }\n",
    )
    .unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut child = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sink = [("pipeline", "e2e"), ("operator", "sink")];
    let written = |s: &[Sample]| sum(s, "weir_records_out_total", &sink) as u64;
    let observed = |s: &[Sample]| sum(s, "weir_end_to_end_latency_seconds_count", &sink);
    let (first, _) = scrape_until(port, "500 records delivered", |s| {
        written(s) == 500 && observed(s) >= 1.0
    });
    // More input later: more deliveries observed.
    append_lines(&input, 500, 1000);
    let (samples, body) = scrape_until(port, "1000 records delivered", |s| {
        written(s) == 1000 && observed(s) > observed(&first)
    });
    let wall = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();

    // The sink's series, labelled with its connector; the source's too.
    let latency = [
        ("pipeline", "e2e"),
        ("operator", "sink"),
        ("kind", "sink"),
        ("connector", "stdout"),
    ];
    let count = sum(&samples, "weir_end_to_end_latency_seconds_count", &latency);
    let total = sum(&samples, "weir_end_to_end_latency_seconds_sum", &latency);
    assert!(count >= 2.0, "{body}");
    assert_eq!(
        sum(
            &samples,
            "weir_end_to_end_latency_seconds_bucket",
            &[("operator", "sink"), ("le", "+Inf")]
        ),
        count,
        "{body}"
    );
    // Plausible: every batch took some time, and none longer than the whole run.
    assert!(total > 0.0, "{body}");
    assert!(
        total <= count * wall,
        "sum {total} over {count} batches in {wall}s: {body}"
    );
    assert_eq!(
        sum(
            &samples,
            "weir_records_in_total",
            &[("kind", "source"), ("connector", "file")]
        ),
        1000.0,
        "{body}"
    );
    // Only sinks have the histogram.
    assert!(
        samples
            .iter()
            .filter(|s| s.name.starts_with("weir_end_to_end_latency_seconds"))
            .all(|s| s.labels.get("kind").map(String::as_str) == Some("sink")),
        "{body}"
    );
}

#[test]
fn state_size_of_a_keyed_aggregate_is_reported_at_checkpoints_in_memory_and_on_disk() {
    for backend in ["memory", "disk"] {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("sized_{backend}");
        std::fs::write(
            dir.path().join("p.yaml"),
            format!(
                "name: {name}\n\
                 fields: {{ n: int, k: string }}\n\
                 settings: {{ batch_timeout: 5ms, checkpoint: {{ interval: 100ms }}, state: {{ backend: {backend} }} }}\n\
                 source: {{ type: stdin }}\n\
                 steps:\n  - key_by: k\n  - aggregate: {{ count: count(), total: sum(n) }}\n\
                 sink: {{ type: file, path: out.jsonl }}\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut child = weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = |stdin: &mut std::process::ChildStdin, from: u64, to: u64, keys: u64| {
            let mut text = String::new();
            for n in from..to {
                text.push_str(&format!("{{\"n\":{n},\"k\":\"key-{:06}\"}}\n", n % keys));
            }
            stdin.write_all(text.as_bytes()).unwrap();
            stdin.flush().unwrap();
        };
        let p = ("pipeline", name.as_str());
        let read = |s: &[Sample]| sum(s, "weir_records_in_total", &[p, ("kind", "source")]);
        let size = |s: &[Sample]| sum(s, "weir_state_size_bytes", &[p]);
        let completed =
            |s: &[Sample]| sum(s, "weir_checkpoints_total", &[p, ("outcome", "completed")]);
        // 100 keys.
        feed(&mut stdin, 0, 2000, 100);
        let (first, body) = scrape_until(port, "state size after 100 keys", |s| {
            read(s) == 2000.0 && size(s) > 0.0
        });
        let small = size(&first);
        let seen = completed(&first);
        // Only the keyed aggregate holds keyed state.
        for s in first.iter().filter(|s| s.name == "weir_state_size_bytes") {
            assert!(s.labels["operator"].contains("aggregate"), "{body}");
            assert!(s.labels.contains_key("instance"), "{body}");
        }
        // 5,000 keys: the state grows, and so does its reported size (at a later checkpoint).
        feed(&mut stdin, 2000, 12_000, 5000);
        let (_, body) = scrape_until(port, "state size after 5000 keys", |s| {
            read(s) == 12_000.0 && completed(s) >= seen + 2.0 && size(s) > small
        });
        assert!(
            size(&parse(&body)) > small,
            "{backend}: {small} then {body}"
        );
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}
