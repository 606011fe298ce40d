//! JSON-lines decoding: any bytes, read by the real source from a real file. Every non-blank
//! line must give a record equal to what the line says, or a bad record with its line number.
//! A panic or a job failure is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::{Config, Environment};
use weir_connectors::{Format, SourceExt};

fuzz_target!(|input: &[u8]| {
    // The decoder alone, line by line: must never panic, and agree with serde_json.
    let mut decoder = weir_types::RecordDecoder::default();
    for line in input.split(|b| *b == b'\n') {
        if let Ok(text) = std::str::from_utf8(line)
            && let Ok(record) = decoder.decode(text)
        {
            let said: serde_json::Value = serde_json::from_str(text).expect("decoded from JSON");
            assert_eq!(record.to_json(), said);
        }
    }

    // The whole source, on the runtime.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, input).expect("the input is written");
    let env = Environment::with_config(Config {
        parallelism: 1,
        ..Config::default()
    });
    let out = env.read_file(&path, Format::JsonLines).collect();
    env.execute().expect("a JSON-lines input never fails the job");
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let lines = body
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| std::str::from_utf8(l).map_or(true, |t| !t.trim().is_empty()))
        .count();
    assert_eq!(out.take().len(), lines, "one result per non-blank line");
});
