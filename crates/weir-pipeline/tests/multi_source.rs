//! Multi-source YAML pipelines against the Rust API: the golden cases `interval_join`,
//! `window_join` and `union` run from their YAML at parallelism 1 and 2, and the same joins are
//! built with `weir-time`'s operators over the same files; the sorted outputs must be equal
//! (and equal to the checked-in `expected.jsonl`).

use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_connectors::Format;
use weir_connectors::SourceExt;
use weir_core::{Config, Environment, Stream};
use weir_pipeline::Pipeline;
use weir_time::prelude::*;
use weir_types::{Record, Value};

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn env(parallelism: usize) -> Environment {
    Environment::with_config(Config {
        parallelism,
        ..Config::default()
    })
}

/// Canonical JSON lines (keys sorted), sorted.
fn canonical(records: impl IntoIterator<Item = Record>) -> Vec<String> {
    let mut lines: Vec<String> = records
        .into_iter()
        .map(|r| r.to_json().to_string())
        .collect();
    lines.sort();
    lines
}

fn canonical_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap()
                .to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// Runs a case's pipeline.yaml at `parallelism` (in a copy of the case directory).
fn run_yaml(name: &str, parallelism: usize) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(case(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let file = tmp.path().join("pipeline.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let pipeline = Pipeline::parse(&text, &file.display().to_string()).unwrap();
    let mut config = pipeline.config();
    config.parallelism = parallelism;
    let env = Environment::with_config(config);
    pipeline.build(&env).unwrap();
    env.execute().unwrap();
    assert!(
        canonical_file(&tmp.path().join("dead_letter.jsonl")).is_empty(),
        "{name} at parallelism {parallelism}: dead letters"
    );
    canonical_file(&tmp.path().join("output.jsonl"))
}

/// A file of JSON lines, timestamped by its int `ts` with `delay` of out-of-orderness.
fn timed(env: &Environment, path: PathBuf, delay: Duration) -> Stream<Timestamped<Record>> {
    env.read_file(path, Format::JsonLines)
        .try_map(|r| r.map_err(|e| e.error))
        .assign_timestamps(
            |r: &Record| match r.get("ts") {
                Some(Value::Int(t)) => *t,
                _ => panic!("no ts"),
            },
            Watermarks::bounded(delay),
        )
}

/// Left fields, then right fields, each with its prefix (written independently of the
/// planner's shape cache).
fn merged(left: &Record, right: &Record, lp: &str, rp: &str) -> Record {
    Record::from_pairs(
        left.iter()
            .map(|(n, v)| (format!("{lp}{n}"), v.clone()))
            .chain(right.iter().map(|(n, v)| (format!("{rp}{n}"), v.clone()))),
    )
}

fn field(r: &Timestamped<Record>, name: &str) -> Vec<Value> {
    vec![r.item.get(name).cloned().unwrap_or(Value::Null)]
}

fn rust_interval_join(parallelism: usize) -> Vec<String> {
    let env = env(parallelism);
    let dir = case("interval_join");
    let delay = Duration::from_secs(5);
    let orders = timed(&env, dir.join("orders.jsonl"), delay).key_by(|r| field(r, "id"));
    let payments = timed(&env, dir.join("payments.jsonl"), delay).key_by(|r| field(r, "order_id"));
    let out = orders.interval_join(
        &payments,
        Duration::from_secs(1),
        Duration::from_secs(2),
        |l: &Record, r: &Record| merged(l, r, "", "p_"),
    );
    let joined = out.joined.collect();
    out.late.for_each(|_| panic!("late"));
    env.execute().unwrap();
    canonical(joined.take())
}

fn rust_window_join(parallelism: usize) -> Vec<String> {
    let env = env(parallelism);
    let dir = case("window_join");
    let delay = Duration::from_secs(1);
    let clicks = timed(&env, dir.join("clicks.jsonl"), delay).key_by(|r| field(r, "user"));
    let views = timed(&env, dir.join("views.jsonl"), delay).key_by(|r| field(r, "user"));
    let out = clicks.window_join(
        &views,
        Tumbling::of(Duration::from_secs(1)),
        |l: &Record, r: &Record| merged(l, r, "click_", "view_"),
    );
    let joined = out.joined.collect();
    out.late.for_each(|_| panic!("late"));
    env.execute().unwrap();
    canonical(joined.take())
}

fn rust_union(parallelism: usize) -> Vec<String> {
    let env = env(parallelism);
    let dir = case("union");
    let read = |file: &str| {
        env.read_file(dir.join(file), Format::JsonLines)
            .try_map(|r| r.map_err(|e| e.error))
    };
    let all = read("eu.jsonl").union(&[read("us.jsonl")]).rebalance();
    let big = all
        .filter(|r: &Record| matches!(r.get("amount"), Some(Value::Float(a)) if *a > 5.0))
        .collect();
    env.execute().unwrap();
    canonical(big.take())
}

fn check(name: &str, rust: fn(usize) -> Vec<String>) {
    let expected = canonical_file(&case(name).join("expected.jsonl"));
    assert!(!expected.is_empty(), "{name}: no expected rows");
    for parallelism in [1, 2] {
        let from_rust = rust(parallelism);
        let from_yaml = run_yaml(name, parallelism);
        assert_eq!(
            from_yaml, from_rust,
            "{name} at parallelism {parallelism}: YAML and Rust API differ"
        );
        assert_eq!(from_yaml, expected, "{name} at parallelism {parallelism}");
    }
}

#[test]
fn an_interval_join_in_yaml_equals_the_rust_api_at_parallelism_1_and_2() {
    check("interval_join", rust_interval_join);
}

#[test]
fn a_window_join_in_yaml_equals_the_rust_api_at_parallelism_1_and_2() {
    check("window_join", rust_window_join);
}

#[test]
fn a_union_in_yaml_equals_the_rust_api_at_parallelism_1_and_2() {
    check("union", rust_union);
}
