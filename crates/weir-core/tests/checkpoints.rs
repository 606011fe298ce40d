//! Barrier checkpoints on the real runtime: they complete, they cover state and source
//! positions, and a job that fails mid-way resumes from the last one with nothing lost or
//! counted twice in its exactly-once file output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weir_connectors::{SinkExt, SourceExt};
use weir_core::{Checkpointing, Config, Environment, MemoryCheckpoints, RestoredState};

const N: u64 = 200_000;

fn config(cp: Checkpointing, parallelism: usize) -> Config {
    Config {
        parallelism,
        batch_size: 500,
        checkpointing: Some(cp),
        ..Config::default()
    }
}

/// generator → key_by → running count per key → exactly-once JSON-lines file.
/// `fail_after`: the map fails (like a crash) once it has seen that many records in this run.
fn build(env: &Environment, out: &Path, fail_after: Option<u64>, armed: Arc<AtomicBool>) {
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    env.generate_paced(Some(N), 400_000.0, |i| i)
        .map(move |i| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if let Some(limit) = fail_after
                && n >= limit
                && armed.load(Ordering::SeqCst)
            {
                panic!("simulated crash");
            }
            i
        })
        .key_by(|i| i % 7)
        .fold(|| 0u64, |count, _| *count += 1)
        .map(|(k, count)| serde_json::json!({ "key": k, "count": count }))
        .write_json_lines(out);
}

fn final_counts(path: &Path) -> (usize, BTreeMap<u64, u64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut last = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        last.insert(v["key"].as_u64().unwrap(), v["count"].as_u64().unwrap());
        lines += 1;
    }
    (lines, last)
}

fn expected() -> BTreeMap<u64, u64> {
    (0..7)
        .map(|k| (k, (0..N).filter(|i| i % 7 == k).count() as u64))
        .collect()
}

#[test]
fn checkpoints_complete_and_the_last_one_covers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts.jsonl");
    let store = MemoryCheckpoints::new();
    let env = Environment::with_config(config(
        Checkpointing::new(Duration::from_millis(20), Arc::new(store.clone())),
        2,
    ));
    build(&env, &out, None, Arc::new(AtomicBool::new(false)));
    env.execute().unwrap();
    let (lines, counts) = final_counts(&out);
    assert_eq!(lines as u64, N, "one line per input record (rolling count)");
    assert_eq!(counts, expected());
    let completed = store.completed();
    assert!(
        completed.len() >= 3,
        "periodic checkpoints ran: {completed:?}"
    );
    assert!(
        store.latest().unwrap().finished(),
        "the last one covers the whole input"
    );
    // No staging files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".weir-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_failed_run_resumes_from_the_last_checkpoint_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts.jsonl");
    let store = MemoryCheckpoints::new();
    let mut restarts = 0;
    // Crash after 60k, then 50k records of each run, then run to the end.
    for fail_after in [Some(60_000), Some(50_000), None] {
        let mut cp = Checkpointing::new(Duration::from_millis(15), Arc::new(store.clone()));
        if let Some(latest) = store.latest() {
            cp = cp.restore_from(latest as Arc<dyn RestoredState>);
            restarts += 1;
        }
        let env = Environment::with_config(config(cp, 2));
        build(&env, &out, fail_after, Arc::new(AtomicBool::new(true)));
        let result = env.execute();
        match fail_after {
            Some(_) => assert!(result.is_err(), "the simulated crash fails the run"),
            None => {
                result.unwrap();
            }
        }
    }
    assert_eq!(restarts, 2, "both crashes happened after a checkpoint");
    let (lines, counts) = final_counts(&out);
    assert_eq!(counts, expected(), "state neither lost nor double-counted");
    assert_eq!(lines as u64, N, "every rolling update written exactly once");
}

/// A store that refuses to begin checkpoints after the first few.
struct FailingStore {
    inner: Arc<MemoryCheckpoints>,
    allowed: std::sync::atomic::AtomicU64,
}

impl weir_core::SnapshotStore for FailingStore {
    fn begin(
        &self,
        id: u64,
    ) -> Result<Arc<dyn weir_core::SnapshotWriter>, weir_core::SnapshotError> {
        if self.allowed.fetch_sub(1, Ordering::SeqCst) == 0 {
            let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
            return Err(weir_core::SnapshotError::store(full));
        }
        self.inner.begin(id)
    }
}

#[test]
fn a_checkpoint_store_that_fails_fails_the_job_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let store = FailingStore {
        inner: MemoryCheckpoints::new(),
        allowed: std::sync::atomic::AtomicU64::new(2),
    };
    let env = Environment::with_config(config(
        Checkpointing::new(Duration::from_millis(10), Arc::new(store)),
        1,
    ));
    build(
        &env,
        &dir.path().join("out.jsonl"),
        None,
        Arc::new(AtomicBool::new(false)),
    );
    let job = env.start().unwrap();
    let started = std::time::Instant::now();
    while !job.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(30), "the job hangs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let metrics = job.metrics().clone();
    let err = job.wait().unwrap_err().to_string();
    assert!(err.contains("disk full"), "{err}");
    // Metrics tell the same: two checkpoints completed (with their durations and sizes), the
    // third could not start.
    let checkpoints = metrics.checkpoints().expect("checkpointing is on");
    assert_eq!((checkpoints.completed, checkpoints.failed), (2, 1));
    let bucketed: u64 = checkpoints.duration_buckets.iter().map(|(_, n)| n).sum();
    assert_eq!(bucketed, 2, "{checkpoints:?}");
    assert!(checkpoints.duration_sum > 0.0);
    assert!(
        checkpoints.last_size_bytes.is_some_and(|b| b > 0),
        "{checkpoints:?}"
    );
}

#[test]
fn csv_and_iterator_sources_resume_where_the_checkpoint_left_them() {
    let dir = tempfile::tempdir().unwrap();
    let csv: String = std::iter::once("k,v\n".to_string())
        .chain((0..30_000).map(|i| format!("k{},{}\n", i % 5, i)))
        .collect();
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let store = MemoryCheckpoints::new();
    let csv_path = dir.path().join("in.csv");
    let build = |env: &Environment, out: &std::path::Path, fail_after: Option<u64>| {
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let from_file = env
            .read_records(&csv_path, weir_connectors::Format::Csv)
            .map(|r| r.get("v").and_then(|v| v.as_i64()).unwrap_or(-1));
        let from_iter = env.from_iter(30_000..40_000i64);
        from_file
            .union(&[from_iter])
            .map(move |v| {
                std::thread::sleep(std::time::Duration::from_micros(20));
                if fail_after.is_some_and(|l| seen.fetch_add(1, Ordering::SeqCst) >= l) {
                    panic!("simulated crash");
                }
                v
            })
            .key_by(|v| v % 3)
            .fold(|| 0i64, |sum, v| *sum += v)
            .map(|(k, sum)| serde_json::json!({ "key": k, "sum": sum }))
            .write_json_lines(out);
    };
    let run = |fail_after: Option<u64>| {
        let mut cp = Checkpointing::new(Duration::from_millis(15), Arc::new(store.clone()));
        if let Some(latest) = store.latest() {
            cp = cp.restore_from(latest as Arc<dyn RestoredState>);
        }
        // A small channel: barriers do not wait behind 16k queued records.
        let env = Environment::with_config(Config {
            buffer_size: 1_000,
            ..config(cp, 1)
        });
        build(&env, &dir.path().join("out.jsonl"), fail_after);
        env.execute()
    };
    assert!(run(Some(25_000)).is_err());
    assert!(!store.completed().is_empty());
    run(None).unwrap();
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(
        text.lines().count(),
        40_000,
        "one running sum per input, exactly once"
    );
    let mut last = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        last.insert(v["key"].as_i64().unwrap(), v["sum"].as_i64().unwrap());
    }
    let expected: BTreeMap<i64, i64> = (0..3)
        .map(|k| (k, (0..40_000i64).filter(|v| v % 3 == k).sum()))
        .collect();
    assert_eq!(last, expected);
}
