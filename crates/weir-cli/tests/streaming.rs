//! Always-on streaming through `weir run`: bounded latency for slow input, stop versus drain
//! (a stopped run resumes its open windows; new input after a drain is a new epoch), and
//! parallelism that applies or says why not.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    weir()
        .args(args)
        .args(["--progress", "never"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn records_trickling_into_stdin_reach_the_file_sink_within_the_batch_timeout() {
    trickle("{ type: stdin }", None, |i| format!("{{\"i\":{i}}}\n"));
}

/// CSV on standard input is cut at row boundaries, so a row (also one with a quoted line break)
/// goes out as soon as it is complete, not when a batch is full.
#[test]
fn csv_rows_trickling_into_stdin_reach_the_file_sink_within_the_batch_timeout() {
    trickle("{ type: stdin, format: csv }", Some("i,note\n"), |i| {
        if i == 5 {
            format!("{i},\"two\nlines, \"\"quoted\"\"\"\n")
        } else {
            format!("{i},plain\n")
        }
    });
}

/// Writes 10 records to `weir run`'s standard input one every 100 ms and measures how long each
/// takes to reach the file sink: each must arrive within `batch_timeout` + 50 ms (issue 12 asks
/// for this measured bound).
fn trickle(source: &str, header: Option<&str>, record: impl Fn(usize) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: trickle\nsettings: {{ batch_timeout: 5ms }}\nsource: {source}\nsink: {{ type: file, path: out.jsonl }}\n"
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let mut child = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = dir.path().join("out.jsonl");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(header) = header {
        stdin.write_all(header.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    // Let the job start (the sink creates its file when it opens).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let bound = Duration::from_millis(5 + 50);
    let mut latencies = Vec::new();
    for i in 0..10 {
        let written = Instant::now();
        stdin.write_all(record(i).as_bytes()).unwrap();
        stdin.flush().unwrap();
        while lines(&out).len() < i + 1 {
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "record {i} never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(written.elapsed());
        std::thread::sleep(Duration::from_millis(100).saturating_sub(written.elapsed()));
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(lines(&out).len(), 10);
    eprintln!("latencies: {latencies:?}");
    for (i, latency) in latencies.iter().enumerate() {
        assert!(
            *latency <= bound,
            "record {i} took {latency:?} (bound {bound:?}); all: {latencies:?}"
        );
    }
}

/// A `redis_stream` source fed one entry at a time (far fewer than a batch of 1,024): each
/// entry reaches the file sink before the next one is written, so the source returns partial
/// batches instead of waiting for a full one (issue 12). The latencies, and the bound of
/// `batch_timeout` + 50 ms the issue sets for stdin, are printed, not asserted (only the order:
/// delivered, then the next one sent).
#[test]
fn entries_trickling_into_a_redis_stream_each_reach_the_file_sink_before_the_next_is_sent() {
    let Some(redis) = weir_connectors::block_on(weir_connectors::testing::redis_url()) else {
        return;
    };
    let stream = weir_connectors::testing::unique_name("trickle");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: redis_trickle\nsettings: {{ batch_timeout: 5ms }}\nsource: {{ type: redis_stream, url: \"{redis}\", stream: {stream}, group: trickle, stop_after_idle: 3s }}\nsink: {{ type: file, path: out.jsonl }}\n"
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let child = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = dir.path().join("out.jsonl");
    // Let the job start (the sink creates its file when it opens; the group exists by then).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut latencies = Vec::new();
    for i in 0..10i64 {
        let written = Instant::now();
        common::xadd(
            &redis,
            &stream,
            std::iter::once(weir_types::Record::from_pairs([(
                "i",
                weir_types::Value::Int(i),
            )])),
        );
        // Generous: a source that waited for a full batch would never deliver it.
        while lines(&out).len() < i as usize + 1 {
            assert!(
                written.elapsed() < Duration::from_secs(30),
                "entry {i} was not delivered before the next one would be sent (it waits for a fuller batch)"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(written.elapsed());
        let got = lines(&out);
        assert!(got[i as usize].contains(&format!("\"i\":{i}")), "{got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    common::redis_del(&redis, &stream);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(lines(&out).len(), 10);
    let bound = Duration::from_millis(5 + 50);
    let within = latencies.iter().filter(|l| **l <= bound).count();
    eprintln!(
        "redis trickle latencies (XADD to the line in the file): {latencies:?}; {within}/10 within batch_timeout + 50 ms = {bound:?}"
    );
}

const WINDOWED: &str = "name: clicks
settings:
  checkpoint: { interval: 50ms }
source: { type: file, path: in.jsonl }
steps:
  - key_by: user
  - window: { type: tumbling, size: 1m, time_field: ts, aggregate: { n: count() } }
sink: { type: file, path: out.jsonl }
dead_letter: { type: file, path: dead.jsonl }
";

fn click(user: &str, minute: u32) -> String {
    format!("{{\"user\":\"{user}\",\"ts\":\"2024-05-01T12:{minute:02}:00Z\"}}\n")
}

#[test]
fn new_input_after_a_drained_run_is_a_new_epoch_not_late_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), WINDOWED).unwrap();
    let input: String = (0..10).map(|m| click("ann", m)).collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let first = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(lines(&dir.path().join("out.jsonl")).len(), 10);
    // Events older than everything the first run saw: late for it, but new input.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("in.jsonl"))
        .unwrap();
    f.write_all(click("bob", 3).as_bytes()).unwrap();
    f.write_all(click("bob", 3).as_bytes()).unwrap();
    drop(f);
    let second = run_in(dir.path(), &["run", "p.yaml"]);
    let err = text(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        err.contains("new epoch") && err.contains("--ignore-state"),
        "{err}"
    );
    let out = lines(&dir.path().join("out.jsonl"));
    assert_eq!(out.len(), 11, "{out:?}");
    assert!(
        out[10].contains("\"bob\"") && out[10].contains("\"n\":2"),
        "{out:?}"
    );
    assert!(lines(&dir.path().join("dead.jsonl")).is_empty());
}

#[test]
fn parallelism_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "source: { type: generator, count: 10, fields: { id: id } }\nsink: { type: discard }\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["run", "p.yaml", "--parallelism", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--parallelism"));
}

#[test]
fn keyed_steps_run_at_the_requested_parallelism_behind_a_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..1000)
        .map(|i| format!("{{\"k\":\"k{}\"}}\n", i % 50))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nsource: { type: file, path: in.jsonl }\nsteps:\n  - key_by: k\n  - aggregate: { n: count() }\nsink: { type: file, path: out.jsonl }\n",
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        &["run", "p.yaml", "--parallelism", "2", "--summary-json"],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    let aggregate = summary["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "steps[1].aggregate")
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(aggregate["parallelism"], 2, "{summary}");
    assert_eq!(lines(&dir.path().join("out.jsonl")).len(), 50);

    // A CSV file is read by one instance: without a step that repartitions, the setting
    // cannot apply, and a warning names it. (A JSON-lines file is split by byte ranges: see
    // tests/files.rs.)
    let csv: String = std::iter::once("k\n".to_string())
        .chain((0..1000).map(|i| format!("k{}\n", i % 50)))
        .collect();
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("q.yaml"),
        "name: q\nsettings: { parallelism: 2 }\nsource: { type: file, path: in.csv }\nsteps:\n  - filter: \"k != 'k1'\"\nsink: { type: file, path: out.jsonl }\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["run", "q.yaml"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("settings.parallelism"),
        "{err}"
    );
}
