//! Measures validation throughput for a 6-field record and prints records/s (no assertion).
//!
//! `cargo run --release -p weir-schema --example throughput [RECORDS]`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use weir_schema::{Schema, Validator};
use weir_types::{Record, RecordDecoder};

const SCHEMA: &str = "name: bench.event
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true }
  - { name: page, type: string }
  - { name: duration, type: float }
  - { name: clicks, type: int, default: 0 }
  - { name: ok, type: bool, required: true }
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let schema = Arc::new(Schema::from_yaml(SCHEMA, "bench.yaml")?);
    let mut decoder = RecordDecoder::default();

    // Already typed: the fast path (no change, no allocation).
    let typed = Validator::new(schema.clone())
        .validate(decoder.decode(r#"{"user_id":"u1","ts":"2024-05-01T12:00:00Z","page":"/x","duration":1.5,"clicks":3,"ok":true}"#)?)?;
    // Needs work: a datetime string to parse, an int to widen, a default to fill.
    let raw = decoder.decode(
        r#"{"user_id":"u1","ts":"2024-05-01T12:00:00Z","page":"/x","duration":2,"ok":true}"#,
    )?;

    // A valid record comes back as it went in, so one record can go round and round.
    roundtrip("Schema::validate, valid record", n, &typed, |r| {
        schema.validate(r)
    })?;
    let mut validator = Validator::new(schema.clone());
    roundtrip("Validator::validate, valid record", n, &typed, |r| {
        validator.validate(r)
    })?;
    measure("(baseline: cloning the record)", n, || {
        Ok::<_, weir_schema::ValidationError>(typed.clone())
    });
    let mut validator = Validator::new(schema.clone());
    measure("Validator::validate, coerce + default", n, || {
        validator.validate(raw.clone())
    });
    measure("Schema::validate, coerce + default", n, || {
        schema.validate(raw.clone())
    });

    let lines: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"user_id":"u{i}","ts":{},"page":"/p/{i}","duration":{i}.5,"clicks":{i},"ok":true}}"#, 1_714_564_800 + i))
        .collect();
    let mut decoder = RecordDecoder::default();
    let mut i = 0;
    measure("(baseline: decode JSON only)", n, || {
        i = (i + 1) % lines.len();
        decoder.decode(&lines[i]).map_err(|e| e.to_string())
    });
    let mut validator = Validator::new(schema.clone());
    measure("decode JSON + Validator::validate", n, || {
        i = (i + 1) % lines.len();
        let record = decoder.decode(&lines[i]).map_err(|e| e.to_string())?;
        validator.validate(record).map_err(|e| e.to_string())
    });
    Ok(())
}

fn measure<E: std::fmt::Debug>(label: &str, n: usize, mut f: impl FnMut() -> Result<Record, E>) {
    for _ in 0..n / 10 {
        black_box(f().ok());
    }
    let start = Instant::now();
    for _ in 0..n {
        black_box(f().expect("the benchmark records are valid"));
    }
    report(label, n, start);
}

fn roundtrip(
    label: &str,
    n: usize,
    record: &Record,
    mut f: impl FnMut(Record) -> Result<Record, weir_schema::ValidationError>,
) -> Result<(), weir_schema::ValidationError> {
    let mut record = record.clone();
    let mut fields = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        record = f(record)?;
        fields += record.len();
    }
    report(label, n, start);
    black_box(fields);
    Ok(())
}

fn report(label: &str, n: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:40} {:>12.0} records/s  {:>7.1} ns/record",
        n as f64 / secs,
        secs * 1e9 / n as f64
    );
}
