//! Input decoding end to end: whatever the bytes of a JSON-lines or CSV input, `weir run`
//! either passes each line on unchanged, sends it to the dead-letter output with its line and
//! raw bytes, or refuses the input with exit code 2.

use std::path::Path;
use std::process::Output;

fn run_in(dir: &Path, yaml: &str) -> Output {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir)
        .output()
        .expect("the weir binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const WITH_DEAD_LETTER: &str =
    "sink: {type: file, path: out.jsonl}\ndead_letter: {type: file, path: dead.jsonl}\n";

#[test]
fn a_json_line_that_is_not_utf8_goes_to_the_dead_letter_output_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        b"\xEF\xBB\xBF{\"a\":1}\n{\"a\":\"\xC3\x28\"}\n{\"a\":3}\n",
    )
    .unwrap();
    let yaml = format!("source: {{type: file, path: in.jsonl}}\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = lines(&dir.path().join("out.jsonl"));
    assert_eq!(
        good,
        vec![serde_json::json!({"a":1}), serde_json::json!({"a":3})]
    );
    let dead = lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["raw"], "{\"a\":\"\\xc3(\"}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid UTF-8 at column 7"),
        "{}",
        dead[0]
    );

    // Without a dead-letter output the run fails naming the file and line.
    let out = run_in(
        dir.path(),
        "source: {type: file, path: in.jsonl}\nsink: {type: file, path: out.jsonl}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in.jsonl:2: invalid UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_json_integer_beyond_64_bits_is_never_rounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"id\":123456789012345678901234567890}\n{\"id\":1}\n",
    )
    .unwrap();
    let yaml = format!("source: {{type: file, path: in.jsonl}}\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&dir.path().join("out.jsonl")),
        vec![serde_json::json!({"id":1})]
    );
    let dead = lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead[0]["line"], 1);
    assert_eq!(dead[0]["raw"], "{\"id\":123456789012345678901234567890}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("integer 123456789012345678901234567890 is outside the 64-bit range"),
        "{}",
        dead[0]
    );
}

#[test]
fn a_csv_cell_that_is_not_utf8_goes_to_the_dead_letter_output_with_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        b"id,name\n1,ann\n2,b\xffob\n3,cy\n",
    )
    .unwrap();
    let yaml = format!("source: {{type: file, path: in.csv, format: csv}}\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&dir.path().join("out.jsonl")).len(), 2);
    let dead = lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead[0]["line"], 3);
    assert_eq!(dead[0]["raw"], "2,b\\xffob");
}

#[test]
fn a_csv_path_is_read_as_csv_without_a_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.CSV"), "id,name\n1,ann\n").unwrap();
    let yaml = format!("source: {{type: file, path: in.CSV}}\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&dir.path().join("out.jsonl")),
        vec![serde_json::json!({"id":1,"name":"ann"})]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap(),
        ""
    );
}

#[test]
fn declared_field_types_win_over_csv_type_guessing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "zip,n,code\n007,5,0012\n").unwrap();
    let yaml = format!(
        "fields: {{zip: string, n: float}}\nsource: {{type: file, path: in.csv}}\n{WITH_DEAD_LETTER}"
    );
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"zip\":\"007\",\"n\":5.0,\"code\":12}\n"
    );
    let yaml = format!(
        "fields: {{n: int}}\nsource: {{type: file, path: in.csv, infer_types: false}}\n{WITH_DEAD_LETTER}"
    );
    let out = run_in(dir.path(), &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"zip\":\"007\",\"n\":5,\"code\":\"0012\"}\n"
    );
}

#[test]
fn a_csv_header_naming_a_column_twice_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "id,name,id\n1,a,2\n").unwrap();
    let yaml = format!("source:\n  type: file\n  path: in.csv\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("p.yaml:3: source.path:"), "{err}");
    assert!(
        err.contains("in.csv:1: the CSV header names `id` twice (columns 1 and 3)"),
        "{err}"
    );
}

#[test]
fn csv_options_that_cannot_apply_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "zip,n\n1,2\n").unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{}\n").unwrap();
    // A declared type for a column the file does not have (a typo would otherwise be ignored).
    let yaml = format!(
        "fields:\n  zipcode: string\nsource: {{type: file, path: in.csv}}\n{WITH_DEAD_LETTER}"
    );
    let out = run_in(dir.path(), &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("p.yaml:2: fields.zipcode:"), "{err}");
    assert!(err.contains("(its columns: zip, n)"), "{err}");
    // infer_types on JSON lines.
    let yaml =
        format!("source: {{type: file, path: in.jsonl, infer_types: false}}\n{WITH_DEAD_LETTER}");
    let out = run_in(dir.path(), &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("applies to CSV input only"),
        "{}",
        stderr(&out)
    );
}
