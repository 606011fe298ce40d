//! Validation messages for every field type, coercions, defaults and unknown fields.

use std::sync::Arc;
use weir_schema::{Error, ErrorClass, FieldType, Problem, Schema, Validator};
use weir_types::{Record, RecordDecoder, Value, ValueKind};

const ALL_TYPES: &str = "name: test.types
version: 3
fields:
  - { name: s, type: string, required: true }
  - { name: i, type: int, required: true }
  - { name: f, type: float, required: true }
  - { name: b, type: bool, required: true }
  - { name: t, type: datetime, required: true }
  - { name: j, type: json, required: true }
";

const MAY_2024_NOON_MS: i64 = 1_714_564_800_000;

fn types_schema() -> Schema {
    Schema::from_yaml(ALL_TYPES, "types.yaml").unwrap()
}

fn json(text: &str) -> Record {
    Record::from_json_str(text).unwrap()
}

fn good() -> Record {
    json(r#"{"s":"x","i":1,"f":1.5,"b":true,"t":"2024-05-01T12:00:00Z","j":{"k":[1]}}"#)
}

fn error_of(schema: &Schema, record: Record) -> String {
    schema.validate(record).unwrap_err().to_string()
}

#[test]
fn a_valid_record_passes_with_its_datetime_parsed() {
    let out = types_schema().validate(good()).unwrap();
    assert_eq!(out.get("t"), Some(&Value::Timestamp(MAY_2024_NOON_MS)));
    assert_eq!(out.get("s"), Some(&Value::from("x")));
    assert_eq!(out.get("j").unwrap().kind(), ValueKind::Json);
}

#[test]
fn wrong_types_name_the_schema_version_field_expected_and_found() {
    let schema = types_schema();
    let cases = [
        ("s", "5", "field `s`: expected string, found int 5"),
        ("i", "\"7\"", "field `i`: expected int, found string \"7\""),
        ("i", "7.5", "field `i`: expected int, found float 7.5"),
        (
            "f",
            "\"1.5\"",
            "field `f`: expected float, found string \"1.5\"",
        ),
        (
            "b",
            "\"yes\"",
            "field `b`: expected bool, found string \"yes\"",
        ),
        ("b", "2", "field `b`: expected bool, found int 2"),
        ("t", "true", "field `t`: expected datetime, found bool true"),
        ("t", "[1]", "field `t`: expected datetime, found json [1]"),
    ];
    for (field, value, expected) in cases {
        let mut record = good();
        record.set(
            field,
            Record::from_json_str(&format!("{{\"v\":{value}}}"))
                .unwrap()
                .get("v")
                .unwrap()
                .clone(),
        );
        let text = error_of(&schema, record);
        assert_eq!(
            text,
            format!("record does not match schema test.types v3: {expected}"),
            "{field} = {value}"
        );
    }
}

#[test]
fn missing_and_null_required_fields() {
    let schema = types_schema();
    let mut record = good();
    record.remove("s");
    record.set("i", Value::Null);
    let err = schema.validate(record).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record does not match schema test.types v3: field `s`: required field is missing; field `i`: required field is null"
    );
    assert_eq!(err.problems()[0].problem, Problem::Missing { null: false });
    assert_eq!(err.problems()[1].problem, Problem::Missing { null: true });
    assert_eq!(err.schema(), "test.types");
    assert_eq!(err.version(), Some(3));
}

#[test]
fn a_bad_datetime_string_says_which_formats_work() {
    let mut record = good();
    record.set("t", Value::from("next tuesday"));
    let text = error_of(&types_schema(), record);
    assert!(
        text.ends_with("field `t`: expected datetime, found string \"next tuesday\", which is not one (use RFC 3339, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD` or epoch seconds/milliseconds)"),
        "{text}"
    );
}

#[test]
fn all_problems_of_a_record_are_reported_together_and_the_record_is_kept() {
    let bad = json(r#"{"s":1,"i":"x","f":true,"b":"no","t":"soon","j":null}"#);
    let err = types_schema().validate(bad.clone()).unwrap_err();
    let fields: Vec<&str> = err.problems().iter().map(|p| &*p.field).collect();
    assert_eq!(fields, ["s", "i", "f", "b", "t", "j"]);
    assert_eq!(
        err.problems()[2].problem,
        Problem::WrongType {
            expected: FieldType::Float,
            found: ValueKind::Bool,
            preview: "true".into()
        }
    );
    assert_eq!(err.record(), &bad);
    let error: Error = err.into();
    assert_eq!(error.class(), ErrorClass::Validation);
    let Error::Validation(err) = error else {
        unreachable!()
    };
    assert_eq!(err.into_record(), bad);
}

#[test]
fn lossless_coercions_are_applied() {
    let schema = types_schema();
    let record = json(r#"{"s":"x","i":7.0,"f":2,"b":1,"t":"2024-05-01 12:00:00","j":"text"}"#);
    let out = schema.validate(record).unwrap();
    assert_eq!(out.get("i"), Some(&Value::Int(7)));
    assert_eq!(out.get("f"), Some(&Value::Float(2.0)));
    assert_eq!(out.get("b"), Some(&Value::Bool(true)));
    assert_eq!(out.get("t"), Some(&Value::Timestamp(MAY_2024_NOON_MS)));
    assert_eq!(
        out.get("j"),
        Some(&Value::from("text")),
        "json keeps scalars as they are"
    );

    for (t, ms) in [
        ("1714564800", MAY_2024_NOON_MS),
        ("1714564800250", MAY_2024_NOON_MS + 250),
        ("1714564800.5", MAY_2024_NOON_MS + 500),
        ("\"2024-05-01T14:00:00+02:00\"", MAY_2024_NOON_MS),
        ("\"2024-05-01\"", MAY_2024_NOON_MS - 12 * 3_600_000),
    ] {
        let mut record = good();
        record.set(
            "t",
            json(&format!("{{\"v\":{t}}}")).get("v").unwrap().clone(),
        );
        let out = schema.validate(record).unwrap();
        assert_eq!(out.get("t"), Some(&Value::Timestamp(ms)), "{t}");
    }
}

const WITH_DEFAULTS: &str = "name: test.defaults
fields:
  - { name: id, type: string, required: true }
  - { name: attempts, type: int, default: 1 }
  - { name: ratio, type: float, default: 0.5 }
  - { name: active, type: bool, default: true }
  - { name: since, type: datetime, default: \"2024-05-01 12:00:00\" }
  - { name: tags, type: json, default: [] }
  - { name: note, type: string }
";

#[test]
fn defaults_fill_missing_and_null_fields_but_not_plain_optional_ones() {
    let schema = Schema::from_yaml(WITH_DEFAULTS, "d.yaml").unwrap();
    let out = schema
        .validate(json(r#"{"id":"a","ratio":null,"active":false}"#))
        .unwrap();
    assert_eq!(out.get("attempts"), Some(&Value::Int(1)));
    assert_eq!(out.get("ratio"), Some(&Value::Float(0.5)));
    assert_eq!(
        out.get("active"),
        Some(&Value::Bool(false)),
        "present values win"
    );
    assert_eq!(out.get("since"), Some(&Value::Timestamp(MAY_2024_NOON_MS)));
    assert_eq!(
        out.get("tags"),
        Some(&Value::Json(Arc::new(serde_json::json!([]))))
    );
    assert_eq!(out.get("note"), None, "no default: stays absent");
    assert_eq!(
        out.shape().names().iter().map(|n| &**n).collect::<Vec<_>>(),
        ["id", "ratio", "active", "attempts", "since", "tags"]
    );
}

#[test]
fn unknown_fields_are_kept_dropped_or_rejected() {
    let base = "name: test.unknown\nfields:\n  - { name: id, type: string, required: true }\n  - { name: n, type: int, default: 0 }\n";
    let record = || json(r#"{"id":"a","extra":1,"more":"x"}"#);

    let keep = Schema::from_yaml(base, "k.yaml").unwrap();
    let out = keep.validate(record()).unwrap();
    assert_eq!(out.get("extra"), Some(&Value::Int(1)));

    let drop = Schema::from_yaml(&format!("{base}unknown_fields: drop\n"), "d.yaml").unwrap();
    let out = drop.validate(record()).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out.get("extra"), None);
    assert_eq!(out.get("n"), Some(&Value::Int(0)));

    let reject = Schema::from_yaml(&format!("{base}unknown_fields: reject\n"), "r.yaml").unwrap();
    assert_eq!(
        error_of(&reject, record()),
        "record does not match schema test.unknown: field `extra`: not in the schema (found int; unknown_fields is reject); field `more`: not in the schema (found string; unknown_fields is reject)"
    );
    assert!(reject.validate(json(r#"{"id":"a"}"#)).is_ok());
}

#[test]
fn the_validator_gives_the_same_results_as_the_schema() {
    let schema = Arc::new(Schema::from_yaml(WITH_DEFAULTS, "d.yaml").unwrap());
    let mut validator = Validator::new(schema.clone());
    let mut decoder = RecordDecoder::default();
    let lines = [
        r#"{"id":"a","attempts":2}"#,
        r#"{"id":"b","attempts":3}"#,
        r#"{"id":"c","attempts":"x"}"#,
        r#"{"attempts":4,"id":"d"}"#,
        r#"{"id":"e","attempts":5,"ratio":1,"active":true,"since":0,"tags":{},"note":"n"}"#,
        r#"{"attempts":6}"#,
        r#"{"id":"g","attempts":7.0}"#,
    ];
    for line in lines {
        let from_validator = validator.validate(decoder.decode(line).unwrap());
        let from_schema = schema.validate(Record::from_json_str(line).unwrap());
        match (from_validator, from_schema) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{line}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{line}"),
            (a, b) => panic!("{line}: validator {a:?} vs schema {b:?}"),
        }
    }
}
