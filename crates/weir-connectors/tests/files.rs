//! The JSON-lines and CSV sources on real files and the real runtime: every line is either a
//! record or a bad record naming its line, whatever the bytes.

use std::path::Path;
use weir_connectors::SourceExt;
use weir_connectors::{BadRecord, CsvHeaderError, CsvOptions, Format, ReadResult};
use weir_core::{Config, Environment, JobError};
use weir_types::{Value, ValueKind};

fn env() -> Environment {
    Environment::with_config(Config {
        parallelism: 1,
        batch_size: 3,
        ..Config::default()
    })
}

fn read(path: &Path, format: Format) -> Vec<ReadResult> {
    let env = env();
    let out = env.read_file(path, format).collect();
    env.execute().expect("the job runs");
    out.take()
}

fn read_csv(path: &Path, options: CsvOptions) -> Result<Vec<ReadResult>, JobError> {
    let env = env();
    let out = env.read_csv(path, options).collect();
    env.execute()?;
    Ok(out.take())
}

fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn bad(result: &ReadResult) -> &BadRecord {
    result.as_ref().expect_err("a bad record")
}

fn good(result: &ReadResult) -> &weir_types::Record {
    result.as_ref().expect("a record")
}

#[test]
fn a_json_line_that_is_not_utf8_is_a_bad_record_and_the_lines_after_it_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.jsonl",
        b"{\"a\":1}\n{\"a\":\"x\xff\xfey\\\\\"}\n{\"a\":3}\n",
    );
    let results = read(&path, Format::JsonLines);
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(good(&results[0]).get("a"), Some(&Value::Int(1)));
    let dead = bad(&results[1]);
    assert_eq!(dead.line, 2);
    assert!(dead.error.contains("invalid UTF-8 at column 8"), "{dead}");
    assert_eq!(dead.raw, r#"{"a":"x\xff\xfey\\\\"}"#);
    assert_eq!(good(&results[2]).get("a"), Some(&Value::Int(3)));
}

#[test]
fn a_utf8_byte_order_mark_before_the_first_json_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "in.jsonl", b"\xEF\xBB\xBF{\"a\":1}\r\n{\"a\":2}");
    let results = read(&path, Format::JsonLines);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(good(&results[0]).get("a"), Some(&Value::Int(1)));
    assert_eq!(good(&results[1]).get("a"), Some(&Value::Int(2)));
}

#[test]
fn a_json_integer_beyond_64_bits_is_a_bad_record_not_a_rounded_float() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.jsonl",
        b"{\"id\":123456789012345678901234567890}\n{\"id\":9223372036854775807}\n",
    );
    let results = read(&path, Format::JsonLines);
    let dead = bad(&results[0]);
    assert_eq!(dead.line, 1);
    assert!(
        dead.error.contains("123456789012345678901234567890"),
        "{dead}"
    );
    assert_eq!(dead.raw, "{\"id\":123456789012345678901234567890}");
    assert_eq!(good(&results[1]).get("id"), Some(&Value::Int(i64::MAX)));
}

#[test]
fn a_csv_cell_that_is_not_utf8_is_a_bad_record_with_its_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.csv",
        b"id,name\n1,ann\n2,b\xffob\n3,\"c\nd\"\n4,eve\n",
    );
    let results = read(&path, Format::Csv);
    assert_eq!(results.len(), 4, "{results:?}");
    let dead = bad(&results[1]);
    assert_eq!(dead.line, 3);
    assert!(dead.error.contains("column `name`"), "{dead}");
    assert!(dead.error.contains("invalid UTF-8"), "{dead}");
    assert_eq!(dead.raw, "2,b\\xffob");
    assert_eq!(good(&results[2]).get("name"), Some(&Value::from("c\nd")));
    assert_eq!(good(&results[3]).get("id"), Some(&Value::Int(4)));
}

#[test]
fn a_csv_row_with_the_wrong_number_of_fields_keeps_its_raw_text_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.csv",
        b"a,b\r\n1,2\r\n\r\n\r\n\"x,\"\"y\",2,3\r\n\"multi\nline\"\r\n5,6",
    );
    let results = read(&path, Format::Csv);
    assert_eq!(results.len(), 4, "{results:?}");
    let dead = bad(&results[1]);
    assert_eq!(dead.line, 5);
    assert_eq!(dead.raw, "\"x,\"\"y\",2,3");
    assert!(dead.error.contains("expected 2 fields"), "{dead}");
    let dead = bad(&results[2]);
    assert_eq!(dead.line, 6);
    assert_eq!(dead.raw, "\"multi\nline\"");
    assert_eq!(good(&results[3]).get("b"), Some(&Value::Int(6)));
}

#[test]
fn a_csv_header_with_a_duplicate_name_is_refused_naming_both_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "in.csv", b"id,name,id\n1,a,2\n");
    let error = weir_connectors::check_csv_header(&path, &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(&error, CsvHeaderError::Duplicate { name, first: 1, second: 3, .. } if name == "id"),
        "{error}"
    );
    let message = read_csv(&path, CsvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("in.csv:1: the CSV header names `id` twice (columns 1 and 3)"),
        "{message}"
    );
}

#[test]
fn declared_csv_types_win_over_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.csv",
        b"zip,n,ok,at,x\n007,5,TRUE,2024-05-01,\n,,,,\n08,x,1,2024-05-01,1\n",
    );
    let options = CsvOptions {
        types: vec![
            ("zip".into(), ValueKind::Str),
            ("n".into(), ValueKind::Float),
            ("ok".into(), ValueKind::Bool),
            ("at".into(), ValueKind::Timestamp),
        ],
        infer_types: true,
    };
    let results = read_csv(&path, options).unwrap();
    let first = good(&results[0]);
    assert_eq!(first.get("zip"), Some(&Value::from("007")));
    assert_eq!(first.get("n"), Some(&Value::Float(5.0)));
    assert_eq!(first.get("ok"), Some(&Value::Bool(true)));
    assert_eq!(first.get("at"), Some(&Value::Timestamp(1_714_521_600_000)));
    assert_eq!(first.get("x"), Some(&Value::Null));
    let empty = good(&results[1]);
    assert_eq!(empty.get("zip"), Some(&Value::from("")));
    assert_eq!(empty.get("n"), Some(&Value::Null));
    let dead = bad(&results[2]);
    assert_eq!(dead.line, 4);
    assert!(
        dead.error
            .contains("column `n`: expected a finite number, found `x`"),
        "{dead}"
    );
    assert_eq!(dead.raw, "08,x,1,2024-05-01,1");
}

#[test]
fn without_type_inference_every_csv_cell_is_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "in.csv", b"zip,n,ok,e\n007,5,true,\n");
    let options = CsvOptions {
        types: vec![("n".into(), ValueKind::Int)],
        infer_types: false,
    };
    let results = read_csv(&path, options).unwrap();
    let row = good(&results[0]);
    assert_eq!(row.get("zip"), Some(&Value::from("007")));
    assert_eq!(row.get("n"), Some(&Value::Int(5)));
    assert_eq!(row.get("ok"), Some(&Value::from("true")));
    assert_eq!(row.get("e"), Some(&Value::from("")));
}

#[test]
fn a_declared_type_for_a_column_the_csv_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "in.csv", b"zip,n\n1,2\n");
    let options = CsvOptions {
        types: vec![("zipcode".into(), ValueKind::Str)],
        infer_types: true,
    };
    let error = weir_connectors::check_csv_header(&path, &options).unwrap_err();
    assert_eq!(error.declared_field(), Some("zipcode"));
    assert!(
        error.to_string().contains("(its columns: zip, n)"),
        "{error}"
    );
    assert!(read_csv(&path, options).is_err());
}

#[test]
fn guessed_csv_types_never_round_or_rename_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "in.csv",
        "\u{feff}big,neg,inf,nan,f,huge\n123456789012345678901234567890,-99999999999999999999,inf,NaN,1.5,1e400\n"
            .as_bytes(),
    );
    let results = read(&path, Format::Csv);
    let row = good(&results[0]);
    assert_eq!(
        row.get("big"),
        Some(&Value::from("123456789012345678901234567890"))
    );
    assert_eq!(row.get("neg"), Some(&Value::from("-99999999999999999999")));
    assert_eq!(row.get("inf"), Some(&Value::from("inf")));
    assert_eq!(row.get("nan"), Some(&Value::from("NaN")));
    assert_eq!(row.get("f"), Some(&Value::Float(1.5)));
    assert_eq!(row.get("huge"), Some(&Value::from("1e400")));
}

#[test]
fn a_declared_int_column_refuses_a_value_beyond_64_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "in.csv", b"id\n123456789012345678901234567890\n");
    let options = CsvOptions {
        types: vec![("id".into(), ValueKind::Int)],
        infer_types: true,
    };
    let results = read_csv(&path, options).unwrap();
    let dead = bad(&results[0]);
    assert!(
        dead.error.contains("expected an integer (64-bit)"),
        "{dead}"
    );
}
