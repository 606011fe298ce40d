//! Crash safety, tested by crashing: `weir run` is killed with SIGKILL at random moments
//! (checkpoints are taken every few milliseconds, so many kills land during one) and restarted
//! until it finishes; the committed output must equal an uninterrupted run's, line for line.
//!
//! `WEIR_CRASH_TRIALS` sets the number of kills (default 20); `WEIR_CRASH_SEED` replays a run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RECORDS: u64 = 60_000;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A small deterministic generator of kill delays (no dependency needed for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn write_input(dir: &Path) {
    let mut text = String::new();
    for i in 0..RECORDS {
        text.push_str(&format!(
            "{{\"user\":\"u{}\",\"item\":{},\"ts\":{},\"value\":{}}}\n",
            i % 37,
            (i * 7919) % 5000,
            1_700_000_000_000u64 + i * 10,
            (i * 7) % 100
        ));
    }
    std::fs::write(dir.join("events.jsonl"), text).unwrap();
}

/// The pipelines under test: running counts per key (with state in memory, and on disk,
/// where checkpoints link the store's tables), and counts per key and 100 ms event-time window.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Running,
    RunningOnDisk,
    Windowed,
}

fn write_pipeline(dir: &Path, name: &str, kind: Kind) {
    let key = if kind == Kind::RunningOnDisk {
        "item"
    } else {
        "user"
    };
    let steps = match kind {
        Kind::Running | Kind::RunningOnDisk => format!(
            "  - map: {{ big: \"value >= 50\" }}
  - key_by: {key}
  - rolling_aggregate:
      events: count()
      total: sum(value)
      big: \"sum(big ? 1 : 0)\""
        ),
        Kind::Windowed => "  - key_by: user
  - window:
      type: tumbling
      size: 100ms
      time_field: ts
      watermark_delay: 20ms
      aggregate: { events: count(), total: sum(value) }"
            .to_string(),
    };
    let state = match kind {
        // A budget far below the state: entries are evicted to the tree and read back.
        Kind::RunningOnDisk => {
            format!("\n  state: {{ backend: disk, path: state-{name}, memory_budget: 64 KiB }}")
        }
        Kind::Running | Kind::Windowed => String::new(),
    };
    let yaml = format!(
        "name: {name}
settings:
  batch_size: 200{state}
  checkpoint:
    interval: 20ms
    dir: checkpoints-{name}
    keep: 2
source:
  type: file
  path: events.jsonl
steps:
{steps}
sink:
  type: file
  path: out-{name}.jsonl
dead_letter:
  type: file
  path: dead-{name}.jsonl
"
    );
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
}

fn run_to_completion(dir: &Path, name: &str) {
    let out = weir()
        .args(["run", &format!("{name}.yaml"), "--progress", "never"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn running_counts_survive_random_kills() {
    crash_test(Kind::Running);
}

#[test]
fn running_counts_on_disk_survive_random_kills() {
    crash_test(Kind::RunningOnDisk);
}

#[test]
fn windowed_counts_survive_random_kills() {
    crash_test(Kind::Windowed);
}

fn crash_test(kind: Kind) {
    let trials: u32 = std::env::var("WEIR_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("WEIR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash test: {trials} kills, WEIR_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    write_pipeline(dir.path(), "reference", kind);
    write_pipeline(dir.path(), "crashed", kind);
    run_to_completion(dir.path(), "reference");
    let expected = std::fs::read_to_string(dir.path().join("out-reference.jsonl")).unwrap();
    let expected = match kind {
        Kind::Running | Kind::RunningOnDisk => {
            assert_eq!(expected.lines().count() as u64, RECORDS);
            expected
        }
        // Windows that fire together come out in key-hash order, which differs between
        // processes: compare them as sorted lines.
        Kind::Windowed => {
            let dead = std::fs::read_to_string(dir.path().join("dead-reference.jsonl")).unwrap();
            assert_eq!(dead, "", "no late events in ordered input");
            sorted(&expected)
        }
    };

    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut finished_early = 0;
    let mut resumed = 0;
    let started = Instant::now();
    while kills < trials {
        let mut child = weir()
            .args(["run", "crashed.yaml", "--progress", "never"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Between 30 and 330 ms: start-up, reading, and checkpoints every 20 ms.
        let delay = Duration::from_millis(30 + rng.next() % 300);
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                // It finished before the kill: start over from scratch to keep killing.
                let out = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "run failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                finished_early += 1;
                compare(dir.path(), &expected, kind);
                std::fs::remove_dir_all(dir.path().join("checkpoints-crashed")).unwrap();
                std::fs::remove_file(dir.path().join("out-crashed.jsonl")).unwrap();
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                let out = child.wait_with_output().unwrap();
                if String::from_utf8_lossy(&out.stderr).contains("resuming from checkpoint") {
                    resumed += 1;
                }
                kills += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the crash test takes too long"
        );
    }
    run_to_completion(dir.path(), "crashed");
    compare(dir.path(), &expected, kind);
    eprintln!(
        "crash test: {kills} kills, {resumed} killed runs had resumed from a checkpoint, \
         {finished_early} runs finished before their kill"
    );
    assert!(resumed > 0, "no killed run ever resumed from a checkpoint");
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

fn compare(dir: &Path, expected: &str, kind: Kind) {
    let got = std::fs::read_to_string(dir.join("out-crashed.jsonl")).unwrap();
    let got = if kind == Kind::Windowed {
        sorted(&got)
    } else {
        got
    };
    if got != expected {
        let (g, e): (Vec<_>, Vec<_>) = (got.lines().collect(), expected.lines().collect());
        let first = g.iter().zip(&e).position(|(a, b)| a != b);
        panic!(
            "output differs: {} lines vs {} expected; first difference at line {:?}: {:?} vs {:?}",
            g.len(),
            e.len(),
            first.map(|i| i + 1),
            first.map(|i| g[i]),
            first.map(|i| e[i]),
        );
    }
}

/// Issue 11, item 1: a run that was told to abandon earlier checkpoints (`--ignore-state`, or
/// `--from-checkpoint` an earlier one) and is killed before its own first checkpoint; a plain
/// restart must not go back to the abandoned checkpoints (which said "the whole input is
/// done" and expected the output at its full length) but produce the uninterrupted output.
#[test]
fn a_run_abandoning_checkpoints_killed_before_its_first_one_restarts_cleanly() {
    for flag in ["--ignore-state", "--from-checkpoint"] {
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path());
        write_pipeline(dir.path(), "reference", Kind::Running);
        run_to_completion(dir.path(), "reference");
        let expected = std::fs::read_to_string(dir.path().join("out-reference.jsonl")).unwrap();

        write_pipeline(dir.path(), "crashed", Kind::Running);
        run_to_completion(dir.path(), "crashed");
        compare(dir.path(), &expected, Kind::Running);
        // The earliest checkpoint kept: not the one that covers the whole input.
        let listing = weir()
            .args(["checkpoints", "list", "crashed.yaml", "--json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
        let earliest = listing[0]["id"].as_u64().unwrap().to_string();

        // Checkpoints an hour apart: the run is killed long before its first.
        let yaml = dir.path().join("crashed.yaml");
        let text = std::fs::read_to_string(&yaml).unwrap();
        std::fs::write(&yaml, text.replace("interval: 20ms", "interval: 1h")).unwrap();
        let mut args = vec!["run", "crashed.yaml", "--progress", "never", flag];
        if flag == "--from-checkpoint" {
            args.push(&earliest);
        }
        let mut child = weir()
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it has replaced the output (the sink opened), then kill it.
        let pending = dir.path().join("out-crashed.jsonl.weir-pending");
        let started = Instant::now();
        while !pending.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the run never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        child.kill().unwrap();
        child.wait().unwrap();

        std::fs::write(&yaml, text).unwrap();
        run_to_completion(dir.path(), "crashed");
        let got = std::fs::read(dir.path().join("out-crashed.jsonl")).unwrap();
        assert!(!got.contains(&0), "{flag}: NUL bytes in the output");
        compare(dir.path(), &expected, Kind::Running);
    }
}
