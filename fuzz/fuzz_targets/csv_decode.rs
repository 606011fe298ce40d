//! CSV decoding: any bytes, read by the real source from a real file. Either the header is
//! refused (a job error naming the CSV header) or every row is one result: a record with one
//! value per column, or a bad record. A panic or any other failure is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::{Config, Environment};
use weir_connectors::{Format, SourceExt};

fuzz_target!(|input: &[u8]| {
    for guessed in input.split(|b| matches!(b, b',' | b'\n')) {
        if let Ok(text) = std::str::from_utf8(guessed) {
            // Guessing never makes a value JSON cannot carry.
            if let weir_types::Value::Float(f) = weir_connectors::infer_value(text) {
                assert!(f.is_finite(), "{text:?} guessed as {f}");
            }
        }
    }

    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("in.csv");
    std::fs::write(&path, input).expect("the input is written");
    let env = Environment::with_config(Config {
        parallelism: 1,
        ..Config::default()
    });
    let out = env.read_file(&path, Format::Csv).collect();
    match env.execute() {
        Ok(_) => {
            let mut grammar = csv::ReaderBuilder::new().flexible(true).from_reader(input);
            let columns = grammar.byte_headers().map_or(0, |h| h.len());
            let rows = grammar.byte_records().count();
            let results = out.take();
            assert_eq!(results.len(), rows, "one result per row");
            for record in results.iter().flatten() {
                assert_eq!(record.len(), columns);
            }
        }
        Err(e) => assert!(e.to_string().contains("CSV header"), "{e}"),
    }
});
