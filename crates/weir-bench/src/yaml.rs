//! `--yaml`: W1, W2 and W3 as YAML pipelines, run through exactly the path `weir run` takes
//! (parsed pipeline, generator source, compiled expressions, the pipeline's operators and a
//! file sink), reporting the same `results` and `checksum` as the typed run and the baseline.
//! The clock runs from the start of the job to the end of the sink's output, as for the typed
//! run; reading the output back to check it is not counted.

use crate::digest::Digest;
use crate::{BenchError, BenchOptions, BenchReport};
use std::path::Path;
use std::time::{Duration, Instant};
use weir_core::Environment;

/// The generator fields of W1, W2 and W4's events (BENCHMARKS.md).
const EVENT_FIELDS: &str =
    r#"{ id: id, key: "id % 10000", value: "(id * 7) % 1000", ts_ms: "id / 1000" }"#;

fn fail(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

/// Runs `yaml` the way `weir run` does (its settings, at `o.parallelism`) and returns the
/// time the job took.
fn run(yaml: &str, o: &BenchOptions) -> Result<Duration, BenchError> {
    let pipeline =
        weir_pipeline::Pipeline::parse(yaml, "bench.yaml").map_err(|e| fail("pipeline", e))?;
    let mut config = pipeline.config();
    config.parallelism = o.parallelism;
    let env = Environment::with_config(config);
    pipeline.build(&env).map_err(|e| fail("pipeline", e))?;
    let started = Instant::now();
    env.execute()?;
    Ok(started.elapsed())
}

/// The records a file sink wrote, as JSON objects.
fn output(path: &Path) -> Result<Vec<serde_json::Value>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|e| fail("reading the output", e))?;
    text.lines()
        .map(|line| serde_json::from_str(line).map_err(|e| fail("an output line", e)))
        .collect()
}

fn int(record: &serde_json::Value, field: &str) -> Result<i64, BenchError> {
    record[field]
        .as_i64()
        .ok_or_else(|| fail("output", format!("`{field}` is not an int in {record}")))
}

/// W1: filter → map → a global count and sum (one result record).
pub fn w1(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let n = o.events.unwrap_or(crate::workloads::W1_EVENTS);
    let dir = tempfile::tempdir().map_err(|e| fail("temp dir", e))?;
    let out = dir.path().join("w1.jsonl");
    let yaml = format!(
        "name: w1
source: {{ type: generator, count: {n}, fields: {EVENT_FIELDS} }}
steps:
  - filter: \"value % 2 == 0\"
  - select: {{ v: \"value * 2 + 1\" }}
  - aggregate: {{ results: count(), checksum: sum(v) }}
sink: {{ type: file, path: {out} }}
",
        out = out.display()
    );
    let elapsed = run(&yaml, o)?;
    let records = output(&out)?;
    let [total] = records.as_slice() else {
        return Err(fail(
            "output",
            format!("expected one total, found {} records", records.len()),
        ));
    };
    // An empty input sums to nothing (null): the typed run's sum is 0.
    let sum = if total["checksum"].is_null() {
        0
    } else {
        int(total, "checksum")?
    };
    Ok(BenchReport::new(
        "w1",
        o,
        n,
        elapsed,
        int(total, "results")? as u64,
        sum.to_string(),
    ))
}

/// W2: key_by key → tumbling 1 s windows over `ts_ms` (watermark: max seen − 100 ms) → count
/// and sum per key and window.
pub fn w2(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let n = o.events.unwrap_or(crate::w2::W2_EVENTS);
    let dir = tempfile::tempdir().map_err(|e| fail("temp dir", e))?;
    let out = dir.path().join("w2.jsonl");
    let yaml = format!(
        "name: w2
source: {{ type: generator, count: {n}, fields: {EVENT_FIELDS} }}
steps:
  - key_by: key
  - window:
      type: tumbling
      size: 1s
      time_field: ts_ms
      watermark_delay: 100ms
      late: drop
      aggregate: {{ count: count(), sum: sum(value) }}
sink: {{ type: file, path: {out} }}
",
        out = out.display()
    );
    let elapsed = run(&yaml, o)?;
    let mut digest = Digest::default();
    let records = output(&out)?;
    for r in &records {
        let start = r["window_start"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| fail("output", format!("no window_start datetime in {r}")))?
            .timestamp_millis();
        crate::w2::add_result(
            &mut digest,
            int(r, "key")? as u64,
            start,
            int(r, "count")? as u64,
            int(r, "sum")?,
        );
    }
    Ok(BenchReport::new(
        "w2",
        o,
        n,
        elapsed,
        records.len() as u64,
        digest.hex(),
    ))
}

/// W3's line `line` as a generator expression over `id`: ten words `"w" + index`, index
/// `(id * 31 + pos * 17) % 10000` (BENCHMARKS.md), joined by spaces.
fn w3_line_expr() -> String {
    (0..10u64)
        .map(|pos| {
            let sep = if pos == 0 { "" } else { " " };
            format!("\"{sep}w\" + string((id * 31 + {}) % 10000)", pos * 17)
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// One output line of W3's pipeline.
#[derive(serde::Deserialize)]
struct WordCount {
    word: String,
    count: u64,
}

/// W3: lines → explode (split on " ") into words → key_by word → a running count per word,
/// every updated count written to the sink (10 per line).
pub fn w3(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let lines = o.events.unwrap_or(crate::workloads::W3_LINES);
    let dir = tempfile::tempdir().map_err(|e| fail("temp dir", e))?;
    let out = dir.path().join("w3.jsonl");
    let yaml = format!(
        "name: w3
source: {{ type: generator, count: {lines}, fields: {{ line: '{line}' }} }}
steps:
  - explode: {{ field: line, split: \" \", as: word }}
  - key_by: word
  - rolling_aggregate: {{ count: count() }}
sink: {{ type: file, path: {out} }}
",
        line = w3_line_expr(),
        out = out.display()
    );
    let elapsed = run(&yaml, o)?;
    let text = std::fs::read_to_string(&out).map_err(|e| fail("reading the output", e))?;
    let mut counts = crate::workloads::RunningCounts::default();
    for line in text.lines() {
        let r: WordCount = serde_json::from_str(line).map_err(|e| fail("an output line", e))?;
        counts.update(&r.word, r.count);
    }
    Ok(BenchReport::new(
        "w3",
        o,
        lines * 10,
        elapsed,
        counts.results,
        counts.digest.hex(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(
        yaml: fn(&BenchOptions) -> Result<BenchReport, BenchError>,
        typed: fn(&BenchOptions) -> Result<BenchReport, BenchError>,
        events: u64,
    ) {
        let options = |parallelism, baseline| BenchOptions {
            events: Some(events),
            parallelism,
            baseline,
            yaml: !baseline,
            ..BenchOptions::default()
        };
        let baseline = typed(&options(1, true)).unwrap();
        assert!(baseline.results > 0);
        for p in [1, 2] {
            let report = yaml(&options(p, false)).unwrap();
            assert_eq!(report.mode, "yaml");
            assert_eq!(report.results, baseline.results, "p={p}");
            assert_eq!(report.checksum, baseline.checksum, "p={p}");
        }
    }

    #[test]
    fn yaml_w1_agrees_with_the_baseline() {
        agree(w1, |o| Ok(crate::workloads::w1(o)?), 100_000);
    }

    #[test]
    fn yaml_w2_agrees_with_the_baseline() {
        agree(w2, |o| Ok(crate::w2::w2(o)?), 200_000);
    }

    #[test]
    fn yaml_w3_agrees_with_the_baseline() {
        agree(w3, |o| Ok(crate::workloads::w3(o)?), 20_000);
    }
}
