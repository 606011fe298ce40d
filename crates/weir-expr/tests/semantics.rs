//! Semantics of every operator and function, each checked twice: with the record's field types
//! known at compile time (specialised closures) and with no type information (run-time typing).

use weir_expr::{EvalErrorKind, Expr, FieldTypes};
use weir_types::{Record, Value, ValueKind, parse_datetime};

fn record() -> Record {
    let mut r = Record::from_json_str(
        r#"{"value": 7, "key": 4000, "price": 2.5, "name": "Ann", "url": "/x/1",
            "ok": true, "none": null, "neg": -3, "big": 9223372036854775807,
            "payload": {"user": {"id": 42, "tags": ["a", "b"]}, "k": "v", "items": [10, 20],
                        "nil": null}}"#,
    )
    .expect("valid JSON");
    r.set(
        "ts",
        Value::Timestamp(parse_datetime("2024-05-01T12:00:00Z").expect("valid")),
    );
    r
}

fn typed() -> FieldTypes {
    FieldTypes::of_record(&record())
}

/// Evaluates `src` in both modes and checks they agree.
fn eval(src: &str) -> Result<Value, EvalErrorKind> {
    let r = record();
    let dynamic = Expr::compile(src, &FieldTypes::dynamic())
        .unwrap_or_else(|e| panic!("{src} (dynamic): {e}"))
        .eval(&r)
        .map_err(|e| e.kind);
    let typed = Expr::compile(src, &typed())
        .unwrap_or_else(|e| panic!("{src} (typed): {e}"))
        .eval(&r)
        .map_err(|e| e.kind);
    assert_eq!(dynamic, typed, "{src}: dynamic vs typed");
    dynamic
}

fn check(src: &str, expected: impl Into<Value>) {
    assert_eq!(eval(src), Ok(expected.into()), "{src}");
}

fn fails(src: &str, expected: EvalErrorKind) {
    assert_eq!(eval(src), Err(expected), "{src}");
}

#[test]
fn arithmetic_on_ints() {
    check("value + 1", 8);
    check("value - 10", -3);
    check("value * key", 28000);
    check("value / 2", 3);
    check("value % 2", 1);
    check("neg % 2", -1);
    check("neg / 2", -1);
    check("-value", -7);
    check("1 + 2 * 3 - 4 / 2", 5);
    check("(1 + 2) * 3", 9);
}

#[test]
fn arithmetic_promotes_ints_to_floats() {
    check("price * 2", 5.0);
    check("value + price", 9.5);
    check("value / 2.0", 3.5);
    check("price % 2", 0.5);
    check("-price", -2.5);
}

#[test]
fn arithmetic_failures() {
    fails("value / 0", EvalErrorKind::DivisionByZero);
    fails("value % (key - 4000)", EvalErrorKind::DivisionByZero);
    fails("price / 0", EvalErrorKind::DivisionByZero);
    fails("big + 1", EvalErrorKind::Overflow { op: "+" });
    fails("big * 2", EvalErrorKind::Overflow { op: "*" });
    fails("-(-big - 1)", EvalErrorKind::Overflow { op: "-" });
}

#[test]
fn string_concatenation() {
    check("name + '!'", "Ann!");
    check("'<' + name + '>'", "<Ann>");
}

#[test]
fn comparisons() {
    check("value == 7", true);
    check("value != 7", false);
    check("value < key", true);
    check("value <= 7", true);
    check("value > 7", false);
    check("value >= 7", true);
    check("value == 7.0", true);
    check("price > value", false);
    check("name == 'Ann'", true);
    check("name < 'Bob'", true);
    check("ok == true", true);
    check("ts > timestamp('2024-01-01')", true);
    check("ts == timestamp('2024-05-01 12:00:00')", true);
}

#[test]
fn null_semantics() {
    check("none == null", true);
    check("none != null", false);
    check("value == null", false);
    check("has(none)", false);
    check("has(value)", true);
    check("has(none) ? none + 1 : 0", 0);
    check("none", Value::Null);
    fails("none < 1", EvalErrorKind::NullOperand { op: "<" });
    fails("none + 1", EvalErrorKind::NullOperand { op: "+" });
}

#[test]
fn missing_fields_fail_unless_guarded() {
    let r = Record::from_pairs([("a", Value::Int(1))]);
    let e = Expr::compile("b + 1", &FieldTypes::dynamic()).expect("compiles");
    assert_eq!(
        e.eval(&r).map_err(|e| e.kind),
        Err(EvalErrorKind::MissingField {
            name: "b".to_string()
        })
    );
    let guarded = Expr::compile("has(b) && b > 0", &FieldTypes::dynamic()).expect("compiles");
    assert_eq!(guarded.eval_bool(&r), Ok(false));
}

#[test]
fn logic_short_circuits() {
    check("ok && value > 5", true);
    check("!ok || value > 5", true);
    check("!ok", false);
    // The right side would fail, but is not evaluated.
    check("value > 100 && value / 0 == 1", false);
    check("value < 100 || value / 0 == 1", true);
    fails(
        "value < 100 && value / 0 == 1",
        EvalErrorKind::DivisionByZero,
    );
    check("false && value / 0 == 1", false);
}

#[test]
fn ternary() {
    check("value > 5 ? 'big' : 'small'", "big");
    check("url.startsWith('/x') ? 'x' : 'other'", "x");
    check("ok ? value : key", 7);
    check("ok ? price : 1.0", 2.5);
    check("!ok ? 1 : 'one'", "one");
}

#[test]
fn in_list_literals() {
    check("value in [1, 7, 9]", true);
    check("value in [1, 2]", false);
    check("name in ['Ann', 'Bob']", true);
    check("value in [key, 7]", true);
    check("price in [2.5]", true);
    check("value in [7.0]", true);
}

#[test]
fn in_json_documents() {
    check("'k' in payload", true);
    check("'zz' in payload", false);
    check("20 in payload.items", true);
    check("'a' in payload.user.tags", true);
}

#[test]
fn nested_json_access() {
    check("payload.user.id", 42);
    check("payload.user.id + 1", 43);
    check("payload['k']", "v");
    check("payload.items[1]", 20);
    check("payload['user']['tags'][0]", "a");
    check("record.payload.k", "v");
    check("has(payload.user.id)", true);
    check("has(payload.user.name)", false);
    check("has(payload.nil)", false);
    check("has(payload.items[5])", false);
    check("has(record.value)", true);
    fails(
        "payload.user.name",
        EvalErrorKind::NoSuchKey {
            key: "name".to_string(),
        },
    );
    fails(
        "payload.items[2]",
        EvalErrorKind::IndexOutOfBounds { index: 2, len: 2 },
    );
}

#[test]
fn record_alias() {
    check("record.value * 2", 14);
    check("record['name']", "Ann");
}

#[test]
fn string_functions() {
    check("size(name)", 3);
    check("name.size()", 3);
    check("size('héllo')", 5);
    check("size(payload.items)", 2);
    check("name.contains('nn')", true);
    check("url.startsWith('/x')", true);
    check("url.endsWith('/2')", false);
    check("name.matches('^A.n$')", true);
    check("matches(name, 'b')", false);
    check("name.matches('n' + 'n')", true);
    check("name.lower()", "ann");
    check("upper(name)", "ANN");
    check("'Ärger'.lowerAscii()", "Ärger");
    check("'Ärger'.lower()", "ärger");
}

#[test]
fn conversions() {
    check("int('42') + 1", 43);
    check("int(price)", 2);
    check("int(-2.9)", -2);
    check("int(ts)", 1_714_564_800);
    check("double(value) / 2", 3.5);
    check("double('1.5')", 1.5);
    check("string(value)", "7");
    check("string(ok)", "true");
    check("string(ts)", "2024-05-01T12:00:00.000Z");
    check("string(value) + name", "7Ann");
    check("bool('true')", true);
    check("bool('f')", false);
    check(
        "timestamp('2024-05-01T14:00:00+02:00')",
        Value::Timestamp(1_714_564_800_000),
    );
    check("timestamp(0)", Value::Timestamp(0));
    fails(
        "int(name)",
        EvalErrorKind::Conversion {
            to: "int",
            value: "\"Ann\"".to_string(),
        },
    );
}

#[test]
fn timestamps_from_fields() {
    let r = Record::from_pairs([("when", Value::from("2024-05-01 12:00:00"))]);
    let fields = FieldTypes::default().with("when", ValueKind::Str);
    let e = Expr::compile("timestamp(when) < timestamp('2024-06-01')", &fields).expect("ok");
    assert_eq!(e.eval(&r), Ok(Value::Bool(true)));
    let bad = Record::from_pairs([("when", Value::from("yesterday"))]);
    assert_eq!(
        e.eval(&bad).map_err(|e| e.kind),
        Err(EvalErrorKind::Conversion {
            to: "timestamp",
            value: "\"yesterday\"".to_string()
        })
    );
}

#[test]
fn math_functions() {
    check("abs(neg)", 3);
    check("abs(-price)", 2.5);
    check("min(value, key)", 7);
    check("max(value, key, 10)", 4000);
    check("max(value, price)", 7.0);
    check("min(name, 'Aaron')", "Aaron");
    fails("abs(-big - 1)", EvalErrorKind::Overflow { op: "abs()" });
}

#[test]
fn filters_must_give_bools() {
    let e = Expr::compile("payload.k", &FieldTypes::dynamic()).expect("compiles");
    let err = e.eval_bool(&record()).expect_err("not a bool");
    assert_eq!(
        err.kind,
        EvalErrorKind::NotBool {
            found: ValueKind::Str
        }
    );
    assert_eq!(
        err.to_string(),
        "evaluating `payload.k`: a filter must give a bool, found string"
    );
    let f = Expr::compile_filter("value % 2 == 1", &typed()).expect("compiles");
    assert_eq!(f.eval_bool(&record()), Ok(true));
}

#[test]
fn typed_fields_report_wrong_runtime_types() {
    let fields = FieldTypes::default().with("n", ValueKind::Int);
    let e = Expr::compile("n + 1", &fields).expect("compiles");
    let r = Record::from_pairs([("n", Value::from("seven"))]);
    assert_eq!(
        e.eval(&r).map_err(|e| e.kind),
        Err(EvalErrorKind::FieldType {
            name: "n".to_string(),
            expected: "int",
            found: ValueKind::Str
        })
    );
    let r = Record::from_pairs([("n", Value::Null)]);
    assert_eq!(
        e.eval(&r).map_err(|e| e.kind),
        Err(EvalErrorKind::NullField {
            name: "n".to_string()
        })
    );
    // A bare field passes its null through; `== null` sees it too.
    assert_eq!(
        Expr::compile("n", &fields).expect("ok").eval(&r),
        Ok(Value::Null)
    );
    assert_eq!(
        Expr::compile("n == null", &fields).expect("ok").eval(&r),
        Ok(Value::Bool(true))
    );
}

#[test]
fn records_of_other_shapes_are_read_by_name() {
    let e = Expr::compile("a * 10 + b", &FieldTypes::dynamic()).expect("compiles");
    for i in 0..40 {
        // Every iteration builds a new shape; past the cached ones, lookups go by name.
        let r = if i % 2 == 0 {
            Record::from_pairs([("a", Value::Int(i)), ("b", Value::Int(1))])
        } else {
            Record::from_pairs([
                ("b", Value::Int(1)),
                ("x", Value::Null),
                ("a", Value::Int(i)),
            ])
        };
        assert_eq!(e.eval(&r), Ok(Value::Int(i * 10 + 1)), "record {i}");
    }
}

#[test]
fn compiled_expressions_are_shareable_across_threads() {
    let e = std::sync::Arc::new(Expr::compile("a + 1", &FieldTypes::dynamic()).expect("ok"));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let r = Record::from_pairs([("a", Value::Int(t * 1000 + i))]);
                        e.eval(&r).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let values = h.join().expect("no panic").expect("no error");
        assert_eq!(values[99], Value::Int(t as i64 * 1000 + 100));
    }
}

#[test]
fn literal_forms() {
    check("0x1F + 1", 32);
    check("'''multi\nline'''", "multi\nline");
    check("1u + 1", 2);
    check("\"double\" + 'single'", "doublesingle");
    check("-(-3)", 3);
}

#[test]
fn json_values_convert_and_compare() {
    check("string(payload.user.tags)", r#"["a","b"]"#);
    check("size(payload.user)", 2);
    check("payload.user.id == 42.0", true);
    fails(
        "1 in payload",
        EvalErrorKind::TypeMismatch {
            op: "in",
            expected: "a string key",
            found: ValueKind::Int,
        },
    );
    fails(
        "payload.k.x",
        EvalErrorKind::TypeMismatch {
            op: "[]",
            expected: "a JSON object or array",
            found: ValueKind::Str,
        },
    );
}

#[test]
fn a_field_named_record_shadows_the_alias() {
    let r = Record::from_pairs([
        (
            "record",
            Value::Json(std::sync::Arc::new(serde_json::json!({"value": 1}))),
        ),
        ("value", Value::Int(2)),
    ]);
    let fields = FieldTypes::of_record(&r);
    let e = Expr::compile("record.value", &fields).expect("compiles");
    assert_eq!(e.eval(&r), Ok(Value::Int(1)));
    let e = Expr::compile("record.value", &FieldTypes::dynamic()).expect("compiles");
    assert_eq!(
        e.eval(&r),
        Ok(Value::Int(2)),
        "without known fields, the alias wins"
    );
}

#[test]
fn float_fields_accept_int_values() {
    let fields = FieldTypes::default().with("x", ValueKind::Float);
    let e = Expr::compile("x / 2", &fields).expect("compiles");
    let r = Record::from_pairs([("x", Value::Int(3))]);
    assert_eq!(e.eval(&r), Ok(Value::Float(1.5)));
}

#[test]
fn long_expressions_compile_and_run() {
    let src = vec!["value"; 150].join(" + ");
    check(&src, 7 * 150);
}

#[test]
fn overlong_expressions_are_refused_before_parsing() {
    let src = vec!["1"; 20_000].join("+");
    let e = Expr::compile(&src, &FieldTypes::dynamic()).expect_err("too long");
    assert!(e.to_string().contains("limited to 4096 characters"), "{e}");
}

#[test]
fn too_deep_expressions_are_refused_not_overflowing() {
    let src = vec!["a"; 1500].join("+");
    let e = Expr::compile(&src, &FieldTypes::dynamic()).expect_err("too deep");
    assert!(
        e.to_string().contains("nests deeper than 200 levels"),
        "{}",
        &e.to_string()[e.to_string().len() - 80..]
    );
}

#[test]
fn datetime_fields_holding_text_are_parsed_on_read() {
    let fields = FieldTypes::default().with("at", ValueKind::Timestamp);
    let e = Expr::compile("at >= timestamp('2024-05-01')", &fields).expect("compiles");
    let text = Record::from_pairs([("at", Value::from("2024-05-01 08:00:00"))]);
    assert_eq!(e.eval(&text), Ok(Value::Bool(true)));
    let native = Record::from_pairs([("at", Value::Timestamp(0))]);
    assert_eq!(e.eval(&native), Ok(Value::Bool(false)));
    let bad = Record::from_pairs([("at", Value::from("soon"))]);
    assert_eq!(
        e.eval(&bad).map_err(|e| e.kind),
        Err(EvalErrorKind::Conversion {
            to: "timestamp",
            value: "\"soon\" (field `at`)".to_string()
        })
    );
}
