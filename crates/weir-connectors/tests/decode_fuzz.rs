//! Fuzz-style properties of the JSON-lines and CSV sources, bounded to a few seconds as a
//! normal test (the `fuzz/` directory at the repository root has `cargo fuzz` targets for
//! longer runs). Random bytes and mutations of valid inputs go through the real sources on the
//! real runtime. Whatever the input: no panic, no hang, and every line is accounted for: a
//! record equal to what the line says, or a bad record whose `raw` gives back the line's bytes.

use proptest::prelude::*;
use std::sync::mpsc;
use std::time::Duration;
use weir_connectors::{BadRecord, Format, ReadResult, SourceExt};
use weir_core::{Config, Environment};

/// Longer than any honest decode of a few hundred bytes, even on a loaded CI machine.
const HANG: Duration = Duration::from_secs(30);

/// Reads `bytes` as a file of `format` on a thread of its own, failing if that takes
/// longer than [`HANG`]. `Err` holds the job's error (a refused input).
fn read(bytes: &[u8], format: Format) -> Result<Vec<ReadResult>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(match format {
        Format::Csv => "in.csv",
        Format::JsonLines => "in.jsonl",
    });
    std::fs::write(&path, bytes).unwrap();
    let (tx, rx) = mpsc::channel();
    let reading = path.clone();
    std::thread::spawn(move || {
        let env = Environment::with_config(Config {
            parallelism: 1,
            batch_size: 4,
            ..Config::default()
        });
        let out = env.read_file(&reading, format).collect();
        let result = env.execute().map(|_| out.take()).map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    let result = rx
        .recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("reading {} bytes as {format:?} hung", bytes.len()));
    drop(dir);
    result
}

/// The bytes a bad record's `raw` stands for: escaped when the input was not UTF-8.
fn raw_bytes(bad: &BadRecord) -> Vec<u8> {
    if !bad.error.contains("invalid UTF-8") {
        return bad.raw.as_bytes().to_vec();
    }
    let text = bad.raw.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match (text[i], text.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&text[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn trim_line(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// JSON lines: one result per non-blank line, in order, each telling the truth about it.
fn check_json_lines(input: &[u8]) -> Result<(), TestCaseError> {
    let results = read(input, Format::JsonLines).map_err(TestCaseError::fail)?;
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let numbered: Vec<(u64, &[u8])> = body
        .split_inclusive(|b| *b == b'\n')
        .map(trim_line)
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .filter(|(_, l)| std::str::from_utf8(l).map_or(true, |t| !t.trim().is_empty()))
        .collect();
    prop_assert_eq!(
        results.len(),
        numbered.len(),
        "one result per non-blank line"
    );
    for (result, (number, line)) in results.iter().zip(&numbered) {
        match result {
            Ok(record) => {
                let text = std::str::from_utf8(line).expect("a record comes from UTF-8");
                let said: serde_json::Value =
                    serde_json::from_str(text).expect("a record comes from valid JSON");
                prop_assert_eq!(record.to_json(), said, "the record is what the line says");
            }
            Err(bad) => {
                prop_assert_eq!(bad.line, *number);
                prop_assert_eq!(raw_bytes(bad), line.to_vec(), "raw gives back the line");
            }
        }
    }
    Ok(())
}

/// CSV: either the header is refused, or every row the CSV grammar sees is one result: a
/// record with a value per column, or a bad record whose raw bytes are a part of the input.
fn check_csv(input: &[u8]) -> Result<(), TestCaseError> {
    let results = match read(input, Format::Csv) {
        Ok(results) => results,
        Err(refused) => {
            prop_assert!(refused.contains("CSV header"), "{refused}");
            return Ok(());
        }
    };
    let mut grammar = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let columns = grammar.byte_headers().map(|h| h.len()).unwrap_or(0);
    let rows = grammar.byte_records().count();
    prop_assert_eq!(results.len(), rows, "one result per row");
    let mut last_line = 0;
    for result in &results {
        match result {
            Ok(record) => prop_assert_eq!(record.len(), columns),
            Err(bad) => {
                // Lines are counted by `\n`, as the CSV parser does (a lone `\r` ends a row
                // but not a line).
                prop_assert!(bad.line >= last_line && bad.line >= 1, "{bad}");
                last_line = bad.line;
                let raw = raw_bytes(bad);
                prop_assert!(
                    input.windows(raw.len().max(1)).any(|w| w == raw.as_slice()) || raw.is_empty(),
                    "raw {:?} is not in the input",
                    bad.raw
                );
            }
        }
    }
    Ok(())
}

const JSON_LINES: &[u8] = b"{\"id\":1,\"name\":\"ann\",\"tags\":[1,2.5,{\"k\":null}]}\n{\"id\":-9223372036854775808,\"v\":1e19,\"s\":\"a\\\"b\\\\c\\u00e9\"}\n\n{\"id\":18446744073709551615}\r\n{\"big\":123456789012345678901234567890,\"x\":true}\n{\"a\":1,\"a\":2}\n";

const CSV: &[u8] = b"id,name,score,ok\n1,ann,1.5,true\n2,\"b,ob\",,false\n3,\"multi\nline \"\"quoted\"\"\",007,inf\n4,x\n12345678901234567890,y,NaN,true\r\n";

/// Small edits that tend to break parsers: flipped bits, inserted or removed bytes, quotes,
/// newlines, invalid UTF-8 and byte-order marks in odd places.
fn mutate(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        0usize..8,
        any::<prop::sample::Index>(),
        any::<u8>(),
        1usize..8,
    );
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut bytes = base.to_vec();
        for (kind, at, byte, len) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] ^= 1 << (byte % 8),
                1 => bytes.insert(i, byte),
                2 if i < bytes.len() => {
                    let end = (i + len).min(bytes.len());
                    bytes.drain(i..end);
                }
                3 => bytes.insert(i, b'"'),
                4 => bytes.insert(i, b'\n'),
                5 => bytes.splice(i..i, [0xff, 0xc3]).for_each(drop),
                6 => bytes.splice(i..i, *b"\xEF\xBB\xBF").for_each(drop),
                _ => {
                    let end = (i + len).min(bytes.len());
                    let copy = bytes[i..end].to_vec();
                    bytes.splice(i..i, copy).for_each(drop);
                }
            }
        }
        bytes
    })
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // Mostly the characters the formats care about, so lines and rows form.
        prop::collection::vec(
            prop::sample::select(b"{}[]\":,\n\r\\ 01-9e.atrufsnl\xff\xef".to_vec()),
            0..256
        ),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_lines_from_random_bytes(input in random_bytes()) {
        check_json_lines(&input)?;
    }

    #[test]
    fn json_lines_from_mutated_input(input in mutate(JSON_LINES)) {
        check_json_lines(&input)?;
    }

    #[test]
    fn csv_from_random_bytes(input in random_bytes()) {
        check_csv(&input)?;
    }

    #[test]
    fn csv_from_mutated_input(input in mutate(CSV)) {
        check_csv(&input)?;
    }
}

#[test]
fn the_valid_inputs_decode_as_expected() {
    let json = read(JSON_LINES, Format::JsonLines).unwrap();
    assert_eq!(json.len(), 5);
    assert!(json[2].is_err() && json[3].is_err(), "{json:?}");
    let csv = read(CSV, Format::Csv).unwrap();
    assert_eq!(csv.len(), 5);
    assert!(csv[3].is_err(), "{csv:?}");
}

/// Found by `csv_from_mutated_input`: a row with too few fields whose bytes are not UTF-8
/// although its unquoted cells are (`\xef"\xbb\xbf` unquotes to a valid U+FEFF). Its `raw` is
/// escaped, so its error must say so.
#[test]
fn a_short_row_whose_bytes_are_not_utf8_says_its_raw_is_escaped() {
    let input =
        b"id,name,score,ok\n3,\"multi\nline \"\"quoted\"\"\xef\"\xbb\xbf\",\",007,inf\n4,x\n";
    check_csv(input).unwrap();
}
