//! A pipeline of several sources with checkpoints, killed with SIGKILL at random moments and
//! restarted until it finishes: every source's offsets and the join's buffers come back from
//! the checkpoint, and the committed output equals an uninterrupted run's (as sorted lines: a
//! join emits pairs in the order its inputs interleave).
//!
//! `WEIR_CRASH_TRIALS` sets the number of kills (default 8); `WEIR_CRASH_SEED` replays a run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORDERS: u64 = 60_000;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// Orders split over two files (even and odd ids), and a payment for every order 0 to 3 s
/// after it; all in event-time order.
fn write_input(dir: &Path) {
    let (mut even, mut odd, mut payments) = (String::new(), String::new(), String::new());
    for i in 0..ORDERS {
        let line = format!(
            "{{\"id\":{i},\"user\":\"u{}\",\"ts\":{}}}\n",
            i % 37,
            1_700_000_000_000u64 + i * 10
        );
        if i % 2 == 0 {
            even.push_str(&line);
        } else {
            odd.push_str(&line);
        }
        payments.push_str(&format!(
            "{{\"order_id\":{i},\"amount\":{},\"ts\":{}}}\n",
            (i * 7) % 100,
            1_700_000_000_000u64 + i * 10 + 3_000
        ));
    }
    std::fs::write(dir.join("even.jsonl"), even).unwrap();
    std::fs::write(dir.join("odd.jsonl"), odd).unwrap();
    std::fs::write(dir.join("payments.jsonl"), payments).unwrap();
}

fn write_pipeline(dir: &Path, name: &str) {
    let yaml = format!(
        "name: {name}
settings:
  batch_size: 200
  checkpoint:
    interval: 20ms
    dir: checkpoints-{name}
    keep: 2
sources:
  even:
    type: file
    path: even.jsonl
    event_time: {{ field: ts, watermark_delay: 1s }}
  odd:
    type: file
    path: odd.jsonl
    event_time: {{ field: ts, watermark_delay: 1s }}
  payments:
    type: file
    path: payments.jsonl
    event_time: {{ field: ts, watermark_delay: 1s }}
steps:
  - name: orders
    union: [even, odd]
  - interval_join:
      left: orders
      right: payments
      left_key: id
      right_key: order_id
      lower: 0s
      upper: 5s
      right_prefix: p_
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

fn sorted(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn a_multi_source_join_survives_random_kills() {
    let trials: u32 = std::env::var("WEIR_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("WEIR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("multi-source crash test: {trials} kills, WEIR_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    write_pipeline(dir.path(), "reference");
    write_pipeline(dir.path(), "crashed");
    run_to_completion(dir.path(), "reference");
    let expected = sorted(dir.path(), "out-reference.jsonl");
    assert_eq!(expected.len() as u64, ORDERS, "one payment per order");
    assert!(sorted(dir.path(), "dead-reference.jsonl").is_empty());

    let mut state = seed | 1;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let (mut kills, mut resumed) = (0, 0);
    let started = Instant::now();
    while kills < trials {
        let mut child = weir()
            .args(["run", "crashed.yaml", "--progress", "never"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Between 200 ms and 2 s: start-up, reading, and checkpoints every 20 ms.
        std::thread::sleep(Duration::from_millis(200 + next() % 1800));
        match child.try_wait().unwrap() {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "run failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(sorted(dir.path(), "out-crashed.jsonl"), expected);
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
    let got = sorted(dir.path(), "out-crashed.jsonl");
    assert_eq!(got.len(), expected.len(), "lines after {kills} kills");
    assert_eq!(got, expected);
    assert!(sorted(dir.path(), "dead-crashed.jsonl").is_empty());
    eprintln!("multi-source crash test: {kills} kills, {resumed} killed runs had resumed");
    assert!(resumed > 0, "no killed run ever resumed from a checkpoint");
}
