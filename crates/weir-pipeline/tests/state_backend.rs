//! Keyed state on the on-disk backend, far beyond its memory budget, gives the same results
//! as in memory.

use weir_core::Environment;
use weir_pipeline::Pipeline;

fn run(dir: &std::path::Path, state: &str) -> Vec<String> {
    let yaml = format!(
        "name: big_state
settings:
  parallelism: 2
{state}
source:
  type: generator
  count: 200000
  fields: {{ id: id, user: \"'user-' + string(id % 40000)\", v: \"id % 10\" }}
steps:
  - key_by: user
  - aggregate: {{ n: count(), total: sum(v), last: max(id) }}
sink: {{ type: file, path: out.jsonl }}
"
    );
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let pipeline = Pipeline::load(&file).unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    env.execute().unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn state_larger_than_the_memory_budget_runs_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let in_memory = run(dir.path(), "");
    assert_eq!(in_memory.len(), 40_000);
    // 40,000 keys of about 100 bytes each (key, three accumulators, overhead): ~4 MB of
    // state per run, through a 64 KiB budget per instance.
    let on_disk = run(
        dir.path(),
        "  state: { backend: disk, path: state, memory_budget: 64 KiB }",
    );
    assert_eq!(on_disk, in_memory);
}

#[test]
fn a_bad_state_setting_names_the_key() {
    let yaml = "settings:\n  state: { backend: disk, memory_budget: lots }\nsource: { type: generator, count: 1, fields: { id: id } }\nsink: { type: discard }\n";
    let pipeline = Pipeline::parse(yaml, "p.yaml").unwrap();
    let err = pipeline.validate().unwrap_err().to_string();
    assert!(
        err.contains("p.yaml:2: settings.state.memory_budget"),
        "{err}"
    );
    let yaml = yaml.replace("backend: disk", "backend: tape");
    let err = Pipeline::parse(&yaml, "p.yaml").err().unwrap().to_string();
    assert!(err.contains("unknown variant `tape`"), "{err}");
}

/// Runs a session-window pipeline over 20,000 keys, with checkpoints; the sorted output.
fn run_sessions(dir: &std::path::Path, state: &str) -> Vec<String> {
    run_window(dir, state, "type: session\n      gap: 1500ms")
}

/// Runs a pipeline with the window `window` (YAML at the window's indentation) over 20,000
/// keys, with checkpoints; the sorted output.
fn run_window(dir: &std::path::Path, state: &str, window: &str) -> Vec<String> {
    let yaml = format!(
        "name: sessions
settings:
  parallelism: 2
  batch_size: 500
  checkpoint: {{ interval: 10ms, dir: checkpoints, keep: 1000 }}
{state}
source:
  type: generator
  count: 120000
  fields: {{ id: id, user: \"'user-' + string(id % 20000)\", ts: \"(id / 20000) * 1000 + (id % 7) * 100\", v: \"id % 10\" }}
steps:
  - key_by: user
  - window:
      {window}
      time_field: ts
      watermark_delay: 2s
      late: drop
      aggregate: {{ n: count(), total: sum(v) }}
sink: {{ type: file, path: out.jsonl }}
"
    );
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let pipeline = Pipeline::load(&file).unwrap();
    let mut config = pipeline.config();
    config.checkpointing = pipeline
        .checkpoint_plan(&weir_pipeline::Resume::default())
        .unwrap()
        .map(|p| p.checkpointing);
    let env = Environment::with_config(config);
    pipeline.build(&env).unwrap();
    env.execute().unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Files under `dir` whose path names `part`.
fn files_naming(dir: &std::path::Path, part: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            n += files_naming(&path, part);
        } else if path.to_string_lossy().contains(part) {
            n += 1;
        }
    }
    n
}

/// Issue 11, item 14: session windows keep their state on the job's backend.
#[test]
fn session_windows_run_on_disk_and_checkpoint_their_state_as_files() {
    let memory_dir = tempfile::tempdir().unwrap();
    let in_memory = run_sessions(memory_dir.path(), "");
    // Each key: events at 0.0-0.6 s, 1.0-1.6 s, ... 5.0-5.6 s: one session of 6 events.
    assert_eq!(in_memory.len(), 20_000);
    assert!(in_memory[0].contains("\"n\":6"), "{}", in_memory[0]);
    let disk_dir = tempfile::tempdir().unwrap();
    let on_disk = run_sessions(
        disk_dir.path(),
        "  state: { backend: disk, path: state, memory_budget: 64 KiB }",
    );
    assert_eq!(on_disk, in_memory);
    // The window's sessions are in the checkpoint as the store's files, not a snapshot blob.
    let checkpoints = disk_dir.path().join("checkpoints");
    assert!(
        files_naming(&checkpoints, "window-0-sessions.files/") > 0
            && files_naming(&checkpoints, "window-1-sessions.files/") > 0,
        "no state files named `sessions` under {}",
        checkpoints.display()
    );
}

/// Issue 11, item 14: tumbling and sliding windows keep their panes on the job's backend, one
/// store per pane.
#[test]
fn tumbling_and_sliding_panes_run_on_disk_and_checkpoint_as_files() {
    for (window, results) in [
        // Events of each key at 0.0-0.6 s, 1.0-1.6 s, ... 5.0-5.6 s.
        ("type: tumbling\n      size: 1s", 6 * 20_000),
        ("type: sliding\n      size: 2s\n      slide: 1s", 7 * 20_000),
    ] {
        let memory_dir = tempfile::tempdir().unwrap();
        let in_memory = run_window(memory_dir.path(), "", window);
        assert_eq!(in_memory.len(), results, "{window}");
        let disk_dir = tempfile::tempdir().unwrap();
        let on_disk = run_window(
            disk_dir.path(),
            "  state: { backend: disk, path: state, memory_budget: 64 KiB }",
            window,
        );
        assert_eq!(on_disk, in_memory, "{window}");
        let checkpoints = disk_dir.path().join("checkpoints");
        assert!(
            files_naming(&checkpoints, "window-0-pane_") > 0
                && files_naming(&checkpoints, "window-1-pane_") > 0,
            "{window}: no pane state files under {}",
            checkpoints.display()
        );
    }
}

/// Typed jobs (weir-time's API: the YAML has no keyed process or stream-join step) on the
/// job's state backend, with checkpoints into a directory so that on-disk state is
/// checkpointed as files.
mod typed {
    use super::files_naming;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;
    use weir_checkpoint::{CheckpointStore, DirCheckpoints};
    use weir_connectors::SourceExt;
    use weir_core::{Checkpointing, Config, Environment, OperatorContext, OperatorError, Stream};
    use weir_state::{StateBackend, StoreFactory};
    use weir_time::prelude::*;
    use weir_time::{JobBackend, ListState, MapState, ValueState};

    /// Keys of every job: with 5 records each, far more state than a 64 KiB budget holds.
    const KEYS: u64 = 20_000;
    const RECORDS: u64 = 5 * KEYS;

    /// Runs the job `build` makes in `dir`, in memory (`disk` false) or on disk with a 64 KiB
    /// budget per store, checkpointing every 10 ms; the sorted output.
    fn run<T: Ord + Clone + Send + 'static>(
        dir: &Path,
        disk: bool,
        build: impl FnOnce(&Environment) -> Stream<T>,
    ) -> Vec<T> {
        let store = CheckpointStore::open(dir.join("checkpoints"), 2).unwrap();
        let state = if disk {
            StateBackend::Disk {
                path: dir.join("state"),
                memory_budget: 64 << 10,
            }
        } else {
            StateBackend::Memory {}
        };
        let env = Environment::with_config(Config {
            batch_size: 200,
            checkpointing: Some(Checkpointing::new(
                Duration::from_millis(10),
                Arc::new(DirCheckpoints::new(store, None)),
            )),
            state: StoreFactory::new(state),
            ..Config::default()
        });
        let out = build(&env).collect();
        env.execute().unwrap();
        let mut got = out.take();
        got.sort_unstable();
        got
    }

    /// Per record of a key: how many records the key had, how many of three buckets it
    /// touched, and its records of the last 30 s of event time (a TTL).
    struct Tally {
        count: ValueState<u64, u64, JobBackend>,
        buckets: MapState<u64, u64, u64, JobBackend>,
        recent: ListState<u64, u64, JobBackend>,
    }

    impl Default for Tally {
        fn default() -> Self {
            Tally {
                count: ValueState::new(),
                buckets: MapState::new(),
                recent: ListState::with_ttl(Ttl::event_time(Duration::from_secs(30))),
            }
        }
    }

    impl KeyedProcessFunction<u64, (u64, i64)> for Tally {
        type Out = (u64, i64, u64, usize, Vec<i64>);
        fn process(
            &mut self,
            record: Timestamped<(u64, i64)>,
            ctx: &mut KeyedContext<'_, u64, Self::Out>,
        ) -> Result<(), OperatorError> {
            let key = *ctx.key();
            let time = record.item.1;
            let count = self.count.get_or_insert_with(&key, ctx, || 0);
            *count += 1;
            let count = *count;
            self.buckets
                .insert(key, (time as u64 / KEYS) % 3, count, ctx);
            self.recent.push(key, time as u64, ctx);
            let buckets = self.buckets.entries(&key, ctx).len();
            let recent = self
                .recent
                .get(&key, ctx)
                .into_iter()
                .map(|t| *t as i64)
                .collect();
            ctx.emit((key, time, count, buckets, recent));
            Ok(())
        }
        fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
            self.count.open(ctx, "count")?;
            self.buckets.open(ctx, "buckets")?;
            self.recent.open(ctx, "recent")
        }
        fn snapshot(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
            self.count.save(ctx, "count")?;
            self.buckets.save(ctx, "buckets")?;
            self.recent.save(ctx, "recent")
        }
        fn restore(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
            self.count.restore(ctx, "count")?;
            self.buckets.restore(ctx, "buckets")?;
            self.recent.restore(ctx, "recent")
        }
    }

    /// (key, event time) with its timestamp.
    type Event = Timestamped<(u64, i64)>;

    /// (key, event time = id × `scale` in ms) for `RECORDS` ids: each key every 20 × `scale`
    /// s of event time.
    fn events(
        env: &Environment,
        scale: i64,
    ) -> weir_core::KeyedStream<u64, Event, impl Fn(&Event) -> u64 + Clone + Send + 'static> {
        env.generate(RECORDS, move |id| (id % KEYS, id as i64 * scale))
            .assign_timestamps(|e| e.1, Watermarks::ascending())
            .key_by(|e| e.0)
    }

    /// Issue 11, item 14: a keyed process function's value, map and list states (with TTL)
    /// live on the job's backend, one store each.
    #[test]
    fn process_function_state_runs_on_disk_and_checkpoints_as_files() {
        let job = |env: &Environment| events(env, 1).process(Tally::default);
        let memory_dir = tempfile::tempdir().unwrap();
        let in_memory = run(memory_dir.path(), false, job);
        assert_eq!(in_memory.len(), RECORDS as usize);
        // The fifth record of key 7 (at 80,007 ms): 5 records, buckets 0, 1 and 2, and the
        // records of the last 30 s (60,007 and 80,007; 40,007 expired).
        assert!(
            in_memory.contains(&(7, 80_007, 5, 3, vec![60_007, 80_007])),
            "{:?}",
            &in_memory[..5]
        );
        let disk_dir = tempfile::tempdir().unwrap();
        let on_disk = run(disk_dir.path(), true, job);
        assert_eq!(on_disk, in_memory);
        let checkpoints = disk_dir.path().join("checkpoints");
        for state in ["count", "buckets", "recent"] {
            assert!(
                files_naming(&checkpoints, &format!("-{state}.files/")) > 0,
                "no state files for `{state}` under {}",
                checkpoints.display()
            );
        }
        assert_eq!(
            files_naming(&memory_dir.path().join("checkpoints"), ".files/"),
            0,
            "in memory, state is checkpointed as snapshots"
        );
    }

    /// Issue 11, item 14: an interval join's buffers live on the job's backend.
    #[test]
    fn interval_join_buffers_run_on_disk_and_checkpoint_as_files() {
        let job = |env: &Environment| {
            let left = events(env, 1);
            let right = events(env, 1);
            left.interval_join(
                &right,
                Duration::from_millis(5),
                Duration::from_millis(5),
                |l: &(u64, i64), r: &(u64, i64)| (l.0, l.1, r.1),
            )
            .joined
        };
        let memory_dir = tempfile::tempdir().unwrap();
        let in_memory = run(memory_dir.path(), false, job);
        // Records of a key are 20 s apart: each left record meets its own right twin.
        assert_eq!(in_memory.len(), RECORDS as usize);
        let disk_dir = tempfile::tempdir().unwrap();
        let on_disk = run(disk_dir.path(), true, job);
        assert_eq!(on_disk, in_memory);
        assert!(
            files_naming(&disk_dir.path().join("checkpoints"), "-interval.files/") > 0,
            "no state files for the join's buffers"
        );
    }

    /// Issue 11, item 14: a latest-value join's versions and waiting records live on the
    /// job's backend.
    #[test]
    fn latest_value_join_runs_on_disk_and_checkpoints_as_files() {
        let job = |env: &Environment| {
            let orders = events(env, 1);
            // Prices change every 40 s per key (at twice the orders' times).
            let prices = events(env, 2);
            orders
                .enrich_latest(
                    &prices,
                    JoinKind::Left,
                    |o: (u64, i64), p: Option<&(u64, i64)>| (o.0, o.1, p.map(|p| p.1)),
                )
                .joined
        };
        let memory_dir = tempfile::tempdir().unwrap();
        let in_memory = run(memory_dir.path(), false, job);
        assert_eq!(in_memory.len(), RECORDS as usize);
        // Key 7's prices are set at 14, 40,014 and 80,014 ms: its order at 80,007 ms sees the
        // one of 40,014.
        assert!(
            in_memory.contains(&(7, 80_007, Some(40_014))),
            "{:?}",
            &in_memory[..5]
        );
        let disk_dir = tempfile::tempdir().unwrap();
        let on_disk = run(disk_dir.path(), true, job);
        assert_eq!(on_disk, in_memory);
        assert!(
            files_naming(&disk_dir.path().join("checkpoints"), "-latest.files/") > 0,
            "no state files for the join's state"
        );
    }
}
