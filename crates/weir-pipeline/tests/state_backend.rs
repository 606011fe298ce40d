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
    let yaml = format!(
        "name: sessions
settings:
  parallelism: 2
  batch_size: 500
  checkpoint: {{ interval: 10ms, dir: checkpoints }}
{state}
source:
  type: generator
  count: 120000
  fields: {{ id: id, user: \"'user-' + string(id % 20000)\", ts: \"(id / 20000) * 1000 + (id % 7) * 100\", v: \"id % 10\" }}
steps:
  - key_by: user
  - window:
      type: session
      gap: 1500ms
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
