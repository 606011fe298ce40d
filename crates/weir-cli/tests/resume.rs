//! Stop and resume through the real `weir` binary and the real services of
//! `scripts/services.sh`: a windowed pipeline stopped by SIGTERM mid-stream, given more input,
//! and resumed produces exactly what one uninterrupted run over all the input produces (over a
//! Redis stream, and over a file that grows between runs); and the StreamHouse example's "add
//! events and run again" workflow delivers the new events to ClickHouse.

mod common;
use common::{int, pageview, redis_del, repo, weir, xadd};

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use weir_connectors::{ClickHouseClient, ClickHouseConfig, block_on, testing};
use weir_types::{Record, Value};

/// Event `i` of the windowed pipelines: five keys, a value, and event time 7 ms apart.
fn event(i: u64) -> Record {
    Record::from_pairs([
        ("id", Value::Int(i as i64)),
        ("k", Value::from(format!("k{}", i % 5))),
        ("v", Value::Int((i % 13) as i64)),
        ("ts", Value::Int(1_700_000_000_000 + (i * 7) as i64)),
    ])
}

fn event_line(i: u64) -> String {
    format!(
        "{{\"id\":{i},\"k\":\"k{}\",\"v\":{},\"ts\":{}}}\n",
        i % 5,
        i % 13,
        1_700_000_000_000 + i * 7
    )
}

/// Entries the group has delivered so far (XINFO GROUPS `entries-read`), for the log.
fn entries_read(redis: &str, stream: &str) -> Option<i64> {
    block_on(async {
        let client = redis::Client::open(redis).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .ok()?;
        let redis::Value::Array(groups) = groups else {
            return None;
        };
        let group = groups.first()?;
        let fields: Vec<redis::Value> = match group {
            redis::Value::Array(f) => f.clone(),
            redis::Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
            _ => return None,
        };
        fields.chunks(2).find_map(|kv| match kv {
            [redis::Value::BulkString(k), redis::Value::Int(n)] if k == b"entries-read" => Some(*n),
            [redis::Value::SimpleString(k), redis::Value::Int(n)] if k == "entries-read" => {
                Some(*n)
            }
            _ => None,
        })
    })
}

/// Runs `weir run p.yaml` in `dir` to its end.
fn run_to_end(dir: &Path, extra: &[&str]) -> Output {
    let out = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weir run {extra:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(dir: &Path, stderr: &Path) -> Child {
    weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits until the first checkpoint has committed window results to `out` (so part of the
/// input was processed), then sends SIGTERM and waits for the run to end. Returns its
/// standard error; the run must have exited 0, stopped by the signal.
fn sigterm_after_first_results(mut child: Child, out: &Path, stderr: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(out) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before any result: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no result after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM failed");
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(stderr).unwrap();
    assert!(
        status.success(),
        "a SIGTERM stop must exit 0: {status}\n{err}"
    );
    assert!(
        err.contains("stopped by SIGTERM"),
        "not stopped by the signal: {err}"
    );
    err
}

/// The output lines, sorted (parallel windows may emit in any order).
fn sorted_lines(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn assert_no_dead_letters(dir: &Path) {
    let dead = dir.join("dead.jsonl");
    let text = std::fs::read_to_string(&dead).unwrap_or_default();
    assert!(
        text.is_empty(),
        "dead letters in {}:\n{text}",
        dead.display()
    );
}

/// Compares the resumed output with the uninterrupted one, naming the first differences.
fn assert_same_output(resumed: &Path, uninterrupted: &Path) {
    let (a, b) = (sorted_lines(resumed), sorted_lines(uninterrupted));
    let only_resumed: Vec<&String> = a.iter().filter(|l| !b.contains(l)).take(5).collect();
    let only_once: Vec<&String> = b.iter().filter(|l| !a.contains(l)).take(5).collect();
    assert!(
        a == b,
        "resumed output ({} lines) differs from one uninterrupted run ({} lines)\n\
         only in the resumed run: {only_resumed:#?}\nonly in the uninterrupted run: {only_once:#?}",
        a.len(),
        b.len()
    );
}

const WINDOW_STEPS: &str = "steps:
  - key_by: k
  - window:
      type: tumbling
      size: 10s
      time_field: ts
      watermark_delay: 50ms
      aggregate: { n: count(), total: sum(v), first_id: min(id), last_id: max(id) }
sink:
  type: file
  path: out.jsonl
dead_letter:
  type: file
  path: dead.jsonl
";

fn redis_pipeline(redis: &str, stream: &str, parallelism: usize) -> String {
    format!(
        "name: resume_redis
settings:
  parallelism: {parallelism}
  checkpoint: {{ interval: 100ms, dir: checkpoints }}
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: windows
  read_count: 100
  stop_after_idle: 1s
{WINDOW_STEPS}"
    )
}

#[test]
fn a_redis_pipeline_stopped_by_sigterm_and_resumed_equals_one_uninterrupted_run() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    redis_stop_and_resume(&redis, 1);
}

#[test]
fn a_parallel_redis_pipeline_stopped_by_sigterm_and_resumed_equals_one_uninterrupted_run() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    redis_stop_and_resume(&redis, 2);
}

fn redis_stop_and_resume(redis: &str, parallelism: usize) {
    let redis = redis.to_string();
    // 20,500 entries first (event time ends inside a 10 s window), 4,800 after the SIGTERM
    // stop, 4,700 after a second stop.
    const FIRST: u64 = 20_500;
    const SECOND: u64 = 25_300;
    const ALL: u64 = 30_000;
    let stopped_stream = testing::unique_name("resume_stopped");
    let whole_stream = testing::unique_name("resume_whole");
    let stopped = tempfile::tempdir().unwrap();
    let whole = tempfile::tempdir().unwrap();
    std::fs::write(
        stopped.path().join("p.yaml"),
        redis_pipeline(&redis, &stopped_stream, parallelism),
    )
    .unwrap();
    std::fs::write(
        whole.path().join("p.yaml"),
        redis_pipeline(&redis, &whole_stream, parallelism),
    )
    .unwrap();

    xadd(&redis, &stopped_stream, (0..FIRST).map(event));
    let stderr = stopped.path().join("run1.err");
    let child = spawn(stopped.path(), &stderr);
    sigterm_after_first_results(child, &stopped.path().join("out.jsonl"), &stderr);
    eprintln!(
        "stopped after the group had delivered {:?} of {FIRST} entries",
        entries_read(&redis, &stopped_stream)
    );
    assert_no_dead_letters(stopped.path());

    // More entries; the resumed run stops again, at `stop_after_idle` this time (a stop, too:
    // the window open at its end stays in the checkpoint).
    xadd(&redis, &stopped_stream, (FIRST..SECOND).map(event));
    let resumed = run_to_end(stopped.path(), &[]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_no_dead_letters(stopped.path());

    // The last entries; this run ends when the stream is quiet, and `--drain` fires the
    // windows still open.
    xadd(&redis, &stopped_stream, (SECOND..ALL).map(event));
    let resumed = run_to_end(stopped.path(), &["--drain"]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");

    xadd(&redis, &whole_stream, (0..ALL).map(event));
    run_to_end(whole.path(), &["--drain"]);

    assert_no_dead_letters(stopped.path());
    assert_no_dead_letters(whole.path());
    assert_same_output(
        &stopped.path().join("out.jsonl"),
        &whole.path().join("out.jsonl"),
    );
    // Sanity: the uninterrupted run saw every entry once.
    let counted: u64 = sorted_lines(&whole.path().join("out.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["n"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(counted, ALL);
    redis_del(&redis, &stopped_stream);
    redis_del(&redis, &whole_stream);
}

fn file_pipeline(parallelism: usize) -> String {
    format!(
        "name: resume_file
settings:
  parallelism: {parallelism}
  checkpoint: {{ interval: 100ms, dir: checkpoints }}
source:
  type: file
  path: in.jsonl
{WINDOW_STEPS}"
    )
}

fn write_events(path: &Path, ids: std::ops::Range<u64>, append: bool) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .unwrap();
    let mut w = std::io::BufWriter::new(file);
    for i in ids {
        w.write_all(event_line(i).as_bytes()).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn a_file_pipeline_stopped_by_sigterm_mid_file_then_appended_and_resumed_equals_one_run() {
    file_stop_and_resume(1);
}

#[test]
fn a_parallel_file_pipeline_stopped_mid_file_then_appended_and_resumed_equals_one_run() {
    file_stop_and_resume(2);
}

fn file_stop_and_resume(parallelism: usize) {
    // Large enough that the first results commit well before the end of the file.
    const FIRST: u64 = 400_000;
    const ALL: u64 = 430_000;
    let stopped = tempfile::tempdir().unwrap();
    let whole = tempfile::tempdir().unwrap();
    for dir in [&stopped, &whole] {
        std::fs::write(dir.path().join("p.yaml"), file_pipeline(parallelism)).unwrap();
    }
    write_events(&stopped.path().join("in.jsonl"), 0..FIRST, false);
    let stderr = stopped.path().join("run1.err");
    let child = spawn(stopped.path(), &stderr);
    let err = sigterm_after_first_results(child, &stopped.path().join("out.jsonl"), &stderr);
    eprintln!("first run:\n{err}");
    assert_no_dead_letters(stopped.path());

    write_events(&stopped.path().join("in.jsonl"), FIRST..ALL, true);
    let resumed = run_to_end(stopped.path(), &[]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");

    write_events(&whole.path().join("in.jsonl"), 0..ALL, false);
    run_to_end(whole.path(), &[]);

    assert_no_dead_letters(stopped.path());
    assert_no_dead_letters(whole.path());
    assert_same_output(
        &stopped.path().join("out.jsonl"),
        &whole.path().join("out.jsonl"),
    );
    let counted: u64 = sorted_lines(&whole.path().join("out.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["n"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(counted, ALL);
}

fn followed_file_pipeline(stop_after_idle: &str) -> String {
    format!(
        "name: resume_follow
settings:
  checkpoint: {{ interval: 100ms, dir: checkpoints }}
source:
  type: file
  path: in.jsonl
  follow: true
{stop_after_idle}{WINDOW_STEPS}"
    )
}

/// Issue 12's acceptance with a followed file: it never ends by itself, so the first run is
/// stopped by SIGTERM mid-file; lines are appended; the resumed run follows the file from its
/// checkpointed offset until it is idle, then drains (`--drain`), and the result equals one
/// uninterrupted run over all lines, with no dead letters.
#[test]
fn a_followed_file_pipeline_stopped_by_sigterm_then_grown_and_resumed_equals_one_run() {
    const FIRST: u64 = 400_000;
    const ALL: u64 = 430_000;
    let stopped = tempfile::tempdir().unwrap();
    let whole = tempfile::tempdir().unwrap();
    std::fs::write(stopped.path().join("p.yaml"), followed_file_pipeline("")).unwrap();
    std::fs::write(whole.path().join("p.yaml"), file_pipeline(1)).unwrap();
    write_events(&stopped.path().join("in.jsonl"), 0..FIRST, false);
    let stderr = stopped.path().join("run1.err");
    let child = spawn(stopped.path(), &stderr);
    let err = sigterm_after_first_results(child, &stopped.path().join("out.jsonl"), &stderr);
    eprintln!("first run:\n{err}");
    assert_no_dead_letters(stopped.path());

    write_events(&stopped.path().join("in.jsonl"), FIRST..ALL, true);
    std::fs::write(
        stopped.path().join("p.yaml"),
        followed_file_pipeline("  stop_after_idle: 1s\n"),
    )
    .unwrap();
    let resumed = run_to_end(stopped.path(), &["--drain"]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");

    write_events(&whole.path().join("in.jsonl"), 0..ALL, false);
    run_to_end(whole.path(), &[]);

    assert_no_dead_letters(stopped.path());
    assert_no_dead_letters(whole.path());
    assert_same_output(
        &stopped.path().join("out.jsonl"),
        &whole.path().join("out.jsonl"),
    );
}

/// `examples/streamhouse.yaml` as a user runs it, with only its names changed so that the test
/// cannot collide with another run of the example: its own stream, table, checkpoint directory
/// and dead-letter file, and the services' URLs of the test environment.
fn streamhouse_copy(redis: &str, clickhouse: &str, stream: &str, table: &str) -> String {
    let example = std::fs::read_to_string(repo().join("examples/streamhouse.yaml")).unwrap();
    let schemas = repo().join("examples/schemas");
    let mut yaml = example.clone();
    for (from, to) in [
        (
            "schemas: schemas",
            format!("schemas: {}", schemas.display()),
        ),
        (
            "dir: ../target/examples/checkpoints/streamhouse",
            "dir: checkpoints".to_string(),
        ),
        ("url: redis://127.0.0.1:6390", format!("url: {redis}")),
        ("stream: streamhouse:pageviews", format!("stream: {stream}")),
        ("url: http://127.0.0.1:8124", format!("url: {clickhouse}")),
        ("table: streamhouse_page_minutes", format!("table: {table}")),
        (
            "path: ../target/examples/streamhouse-dead-letters.jsonl",
            "path: dead.jsonl".to_string(),
        ),
    ] {
        assert_eq!(
            yaml.matches(from).count(),
            1,
            "examples/streamhouse.yaml changed: `{from}` is not there once"
        );
        yaml = yaml.replace(from, &to);
    }
    yaml
}

/// Page views per (page, minute) that ClickHouse holds.
fn page_minutes(clickhouse: &str, table: &str) -> Vec<(String, i64, i64)> {
    let client = ClickHouseClient::new(ClickHouseConfig::new(clickhouse)).unwrap();
    let rows = block_on(client.query_json(&format!(
        "SELECT page, toMinute(window_start) AS m, views FROM {table} ORDER BY page, m, views"
    )))
    .unwrap();
    rows.iter()
        .map(|r| {
            let page = r.get("page").and_then(Value::as_str).unwrap().to_string();
            (page, int(r, "m"), int(r, "views"))
        })
        .collect()
}

/// What the table must hold once the windows of minutes `0..minutes` fired, for page views
/// `0..n`: one row per page and minute with all of its views.
fn expected_page_minutes(n: u64, minutes: i64) -> Vec<(String, i64, i64)> {
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..n {
        let minute = ((i / 60) % 60) as i64;
        if minute < minutes {
            *counts.entry((format!("/p/{}", i % 9), minute)).or_insert(0) += 1;
        }
    }
    counts.into_iter().map(|((p, m), v)| (p, m, v)).collect()
}

#[test]
fn the_streamhouse_example_delivers_events_added_between_runs() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let stream = testing::unique_name("streamhouse_pageviews");
    let table = testing::unique_name("streamhouse_page_minutes");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        streamhouse_copy(&redis, &clickhouse, &stream, &table),
    )
    .unwrap();
    // First events up to 12:24:29; the example ends the run after 3 s without input
    // (`stop_after_idle`), a stop: the windows of 12:00 to 12:23 are closed by the watermark
    // (newest event − 5 s) and written; the window of 12:24 stays open in the checkpoint.
    const FIRST: u64 = 1_470;
    const ALL: u64 = 3_000;
    xadd(&redis, &stream, (0..FIRST).map(|i| pageview(i, false)));
    run_to_end(dir.path(), &[]);
    assert_eq!(
        page_minutes(&clickhouse, &table),
        expected_page_minutes(FIRST, 24)
    );
    assert_no_dead_letters(dir.path());

    // Add events and run again: the open window of 12:24 continues (one row per page with
    // the views of both runs) and the new events' windows up to 12:48 are written.
    xadd(&redis, &stream, (FIRST..ALL).map(|i| pageview(i, false)));
    let out = run_to_end(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(
        page_minutes(&clickhouse, &table),
        expected_page_minutes(ALL, 49)
    );
    assert_no_dead_letters(dir.path());

    // Draining fires the last window: every event once, nothing twice.
    run_to_end(dir.path(), &["--drain"]);
    assert_eq!(
        page_minutes(&clickhouse, &table),
        expected_page_minutes(ALL, 60)
    );
    assert_no_dead_letters(dir.path());

    let client = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)).unwrap();
    let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {table}")));
    redis_del(&redis, &stream);
}

#[test]
fn the_readme_quickstart_delivers_every_generated_event() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let command = readme
        .lines()
        .find(|l| l.contains("-- run "))
        .expect("the README's quickstart command");
    let example = command
        .split("-- run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a pipeline after `-- run`");
    assert_eq!(example, "examples/quickstart.yaml", "{command}");
    let out = weir()
        .args(["run", example, "--progress", "never"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The generator's 1,000,000 ids; `filter: ms < 1500`, `slow: ms > 1000`.
    let ms = |id: u64| (id * 37) % 2000;
    let views = (0..1_000_000u64).filter(|&id| ms(id) < 1500).count() as u64;
    let slow = (0..1_000_000u64)
        .filter(|&id| ms(id) < 1500 && ms(id) > 1000)
        .count() as u64;
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(rows.len(), 7 * 2, "one row per page and device");
    let sum = |f: &str| rows.iter().map(|r| r[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("views"), views);
    assert_eq!(sum("slow_views"), slow);
}
