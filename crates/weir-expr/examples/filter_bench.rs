//! Measures compiled expressions over 1M records and prints nanoseconds per record.
//!
//! `cargo run --release -p weir-expr --example filter_bench [records]`
//!
//! A measurement, not a test: nothing here asserts timings.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use weir_expr::{Expr, FieldTypes, Projection};
use weir_types::{Record, Shape, Value, ValueKind};

fn records(n: usize) -> Vec<Record> {
    // One shared shape, as a stream decoded by one RecordDecoder has.
    let shape = Arc::new(Shape::new(["key", "value", "url"]));
    (0..n)
        .map(|i| {
            let values = vec![
                Value::Int((i % 10_000) as i64),
                Value::Int((i * 7) as i64),
                Value::from(if i % 3 == 0 { "/x/page" } else { "/y/page" }),
            ];
            Record::with_shape(shape.clone(), values).expect("three values for three fields")
        })
        .collect()
}

fn per_record(label: &str, n: usize, mut run: impl FnMut() -> usize) {
    // One warm-up pass, then the best of three.
    let kept = run();
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            black_box(run());
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    println!(
        "{label:<58} {:>7.1} ns/record  ({kept} of {n} kept)",
        best.as_nanos() as f64 / n as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 1_000_000,
    };
    let data = records(n);
    let source = "value % 2 == 0 && key < 5000";
    let typed = FieldTypes::default()
        .with("key", ValueKind::Int)
        .with("value", ValueKind::Int)
        .with("url", ValueKind::Str);

    per_record("hand-written Rust closure", n, || {
        data.iter()
            .filter(|r| match (r.get_index(1), r.get_index(0)) {
                (Some(Value::Int(v)), Some(Value::Int(k))) => v % 2 == 0 && *k < 5000,
                _ => false,
            })
            .count()
    });

    for (label, fields) in [
        ("typed fields", &typed),
        ("dynamic fields", &FieldTypes::dynamic()),
    ] {
        let filter = Expr::compile_filter(source, fields)?;
        per_record(&format!("`{source}`, {label}"), n, || {
            data.iter()
                .filter(|r| filter.eval_bool(black_box(r)).unwrap_or(false))
                .count()
        });
    }

    let filter = Expr::compile_filter("url.startsWith('/x') && key in [1, 2, 3, 4000]", &typed)?;
    per_record("`url.startsWith('/x') && key in [...]`, typed", n, || {
        data.iter()
            .filter(|r| filter.eval_bool(r).unwrap_or(false))
            .count()
    });

    let map = Projection::compile(
        &[
            ("doubled", "value * 2 + 1"),
            ("page", "url.startsWith('/x') ? 'x' : 'other'"),
        ],
        &typed,
    )?;
    per_record("projection {doubled, page}, typed", n, || {
        data.iter().filter(|r| map.apply(r).is_ok()).count()
    });

    let mut ctx = cel::Context::default();
    let program = cel::Program::compile(source)?;
    let sample = n.min(100_000);
    per_record(
        "cel interpreter, reused Context (for comparison)",
        sample,
        || {
            data[..sample]
                .iter()
                .filter(|r| {
                    for (name, value) in r.iter() {
                        if let Value::Int(i) = value {
                            ctx.add_variable_from_value(name, *i);
                        }
                    }
                    matches!(program.execute(&ctx), Ok(cel::Value::Bool(true)))
                })
                .count()
        },
    );
    Ok(())
}
