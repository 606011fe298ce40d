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
