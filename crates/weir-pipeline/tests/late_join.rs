//! A late join event reaches the dead-letter output (issue 12): a `lookup_join` whose two
//! inputs are one file source split by a field, so that both sides see the same watermarks in
//! the same order. With `batch_size: 1` the source emits a watermark after every record; at
//! parallelism 1 the source, its event time, both filters and the join's input run in one
//! thread, so the join receives the price, the watermark 100000, the order at 100500, the
//! watermark 100500 and then the order at 1000 in that order, whatever the scheduling: the
//! last order is behind the watermark by construction.

use std::path::Path;
use weir_core::Environment;
use weir_pipeline::Pipeline;

const EVENTS: &str = r#"{"kind":"price","k":"a","ts":100000,"price":5,"id":1}
{"kind":"order","k":"a","ts":100500,"amount":2,"id":2}
{"kind":"order","k":"a","ts":1000,"amount":3,"id":3}
"#;

const PIPELINE: &str = r#"
name: late_join
settings: { batch_size: 1, parallelism: 1 }
sources:
  events:
    type: file
    path: events.jsonl
    event_time: { field: ts }
steps:
  - name: prices
    input: events
    filter: "kind == 'price'"
  - name: orders
    input: events
    filter: "kind == 'order'"
  - name: priced
    lookup_join:
      left: orders
      right: prices
      left_key: k
      right_prefix: "p_"
      late: LATE
sink:
  type: file
  path: output.jsonl
dead_letter:
  type: file
  path: dead_letter.jsonl
"#;

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the pipeline with `late` (the join's `late:` policy) in a fresh directory: (output,
/// dead letters).
fn run(late: &str) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), EVENTS).unwrap();
    let file = dir.path().join("pipeline.yaml");
    let text = PIPELINE.replace("LATE", late);
    std::fs::write(&file, &text).unwrap();
    let pipeline = Pipeline::parse(&text, &file.display().to_string()).unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    env.execute().unwrap();
    (
        json_lines(&dir.path().join("output.jsonl")),
        json_lines(&dir.path().join("dead_letter.jsonl")),
    )
}

#[test]
fn a_join_event_behind_the_watermark_goes_to_the_dead_letter_output() {
    // More than once: the outcome must not depend on thread scheduling.
    for attempt in 0..5 {
        let (output, dead) = run("dead_letter");
        // The on-time order meets the price of its key.
        assert_eq!(output.len(), 1, "attempt {attempt}: {output:?}");
        assert_eq!(output[0]["id"], 2, "{output:?}");
        assert_eq!(output[0]["p_price"], 5, "{output:?}");
        // The order at 1000 arrived after the watermark 100500: a dead letter with the reason,
        // the step and the record.
        assert_eq!(dead.len(), 1, "attempt {attempt}: {dead:?}");
        let letter = &dead[0];
        assert_eq!(letter["stage"], "steps[2].lookup_join", "{letter}");
        let error = letter["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("late left event") && error.contains("watermark had passed"),
            "{letter}"
        );
        assert_eq!(letter["record"]["id"], 3, "{letter}");
        assert_eq!(letter["record"]["ts"], 1000, "{letter}");
    }
}

#[test]
fn with_late_drop_the_late_join_event_is_discarded() {
    let (output, dead) = run("drop");
    assert_eq!(output.len(), 1, "{output:?}");
    assert!(dead.is_empty(), "{dead:?}");
}
