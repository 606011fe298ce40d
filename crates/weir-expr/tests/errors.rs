//! Compile-time and run-time error values and their messages.

use weir_expr::{EvalErrorKind, Expr, ExprError, FieldTypes, Pos};
use weir_types::{Record, Value, ValueKind};

fn fields() -> FieldTypes {
    FieldTypes::default()
        .with("value", ValueKind::Int)
        .with("key", ValueKind::Int)
        .with("user_id", ValueKind::Str)
        .with("user_ids", ValueKind::Json)
        .with("url", ValueKind::Str)
        .with_untyped("payload")
}

fn compile_err(src: &str) -> ExprError {
    Expr::compile(src, &fields()).expect_err(src)
}

fn at(column: usize) -> Option<Pos> {
    Some(Pos { line: 1, column })
}

#[test]
fn syntax_errors_give_the_column() {
    let e = compile_err("value % 2 == 0 &&");
    assert!(matches!(e, ExprError::Syntax { .. }), "{e:?}");
    assert_eq!(e.pos(), at(18));
    assert!(
        e.to_string().starts_with(
            "syntax error in `value % 2 == 0 &&` at column 18: mismatched input '<EOF>'"
        ),
        "{e}"
    );
    let e = compile_err("(value + 1");
    assert_eq!(e.pos(), at(11));
    assert!(e.to_string().contains("missing ')'"), "{e}");
    let e = compile_err("value = 2");
    assert_eq!(e.pos(), at(7));
}

#[test]
fn syntax_errors_on_later_lines_give_line_and_column() {
    let e = compile_err("value > 1 &&\n  key <");
    assert_eq!(e.pos(), Some(Pos { line: 2, column: 8 }));
    assert!(e.to_string().contains("at line 2, column 8"), "{e}");
}

#[test]
fn unknown_fields_suggest_close_names() {
    let e = compile_err("usr_id == 'a'");
    assert_eq!(
        e,
        ExprError::UnknownField {
            expr: "usr_id == 'a'".to_string(),
            pos: Pos { line: 1, column: 1 },
            name: "usr_id".to_string(),
            suggestions: vec!["user_id".to_string(), "user_ids".to_string()],
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown field `usr_id` in `usr_id == 'a'` at column 1 (did you mean one of `user_id`, `user_ids`?)"
    );
    let e = compile_err("value > 1 && vaule < 3");
    assert_eq!(
        e.to_string(),
        "unknown field `vaule` in `value > 1 && vaule < 3` at column 14 (did you mean `value`?)"
    );
    let e = compile_err("has(zzz)");
    assert!(
        matches!(&e, ExprError::UnknownField { name, suggestions, .. }
        if name == "zzz" && suggestions.is_empty()),
        "{e:?}"
    );
}

#[test]
fn dynamic_field_sets_accept_any_name() {
    assert!(Expr::compile("usr_id == 'a'", &FieldTypes::dynamic()).is_ok());
}

#[test]
fn type_mismatches_are_compile_errors() {
    let e = Expr::compile("\"abc\" * 2", &FieldTypes::dynamic()).expect_err("type error");
    assert_eq!(
        e.to_string(),
        "type mismatch in `\"abc\" * 2` at column 7: cannot apply `*` to string and int"
    );
    for (src, message) in [
        ("value + url", "cannot apply `+` to int and string"),
        ("value > 'a'", "cannot compare int with string using `>`"),
        ("url == 3", "cannot compare string with int using `==`"),
        ("value && key > 1", "`&&` expects bool, found int"),
        ("!url", "`!` expects bool, found string"),
        ("value.x == 1", "cannot take `.x` of int"),
        (
            "url.startsWith(1)",
            "`startsWith` expects a string argument, found int",
        ),
        (
            "size(value)",
            "`size` expects a string or JSON array/object, found int",
        ),
        (
            "int(value > 1)",
            "`int` expects a number, string or timestamp, found bool",
        ),
        (
            "value in url",
            "`in` needs a list literal or a JSON array/object on its right",
        ),
        (
            "value in ['a']",
            "cannot compare int with string using `==`",
        ),
        ("null + 1", "null in arithmetic `+`"),
        ("-url", "cannot negate a string value"),
        ("url.int()", "`int` is not a method"),
        ("url.contains()", "`contains` takes 2 operand(s)"),
        ("min(value, url)", "`min` needs operands of one kind"),
    ] {
        let e = compile_err(src);
        assert!(matches!(e, ExprError::Type { .. }), "{src}: {e:?}");
        assert!(e.to_string().contains(message), "{src}: {e}");
    }
}

#[test]
fn filters_are_checked_for_bool_results() {
    let e = Expr::compile_filter("value + 1", &fields()).expect_err("not a filter");
    assert!(
        e.to_string()
            .contains("a filter must give a bool, this expression gives int"),
        "{e}"
    );
    assert!(
        Expr::compile_filter("payload", &fields()).is_ok(),
        "dynamic may be a bool"
    );
}

#[test]
fn unknown_functions_are_named_with_suggestions() {
    let e = compile_err("url.startWith('/x')");
    assert!(
        matches!(&e, ExprError::UnknownFunction { name, suggestions, .. }
            if name == "startWith" && suggestions == &["startsWith".to_string()]),
        "{e:?}"
    );
    assert_eq!(e.pos(), at(5));
    assert!(e.to_string().contains("did you mean `startsWith`?"), "{e}");
    let e = compile_err("foo(value)");
    assert_eq!(e.pos(), at(1));
    assert!(e.to_string().contains("known functions: abs, bool"), "{e}");
    let e = compile_err("url.exists(x, x > 1)");
    assert!(matches!(e, ExprError::UnknownFunction { .. }), "{e:?}");
}

#[test]
fn constant_errors_surface_at_compile_time() {
    let e = compile_err("url.matches('[')");
    assert!(matches!(e, ExprError::InvalidConstant { .. }), "{e:?}");
    assert!(e.to_string().contains("invalid regular expression"), "{e}");
    let e = compile_err("timestamp('yesterday') < timestamp('2024-01-01')");
    assert!(
        e.to_string()
            .contains("cannot convert \"yesterday\" to timestamp"),
        "{e}"
    );
    let e = compile_err("value > 1 || 1 / 0 == 1");
    assert_eq!(e.pos(), at(16));
    assert!(e.to_string().ends_with("division by zero"), "{e}");
    let e = compile_err("18446744073709551615u > 1");
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn unsupported_constructs_are_explained() {
    for (src, message) in [
        (
            "[1, 2]",
            "list literals are only supported on the right of `in`",
        ),
        ("{'a': 1}", "map and message literals are not supported"),
        ("b'abc'", "bytes literals are not supported"),
    ] {
        let e = Expr::compile(src, &FieldTypes::dynamic()).expect_err(src);
        assert!(matches!(e, ExprError::Unsupported { .. }), "{src}: {e:?}");
        assert!(e.to_string().contains(message), "{src}: {e}");
    }
}

#[test]
fn runtime_errors_carry_the_expression() {
    let e = Expr::compile("value / (key - 4)", &fields()).expect("compiles");
    let r = Record::from_pairs([("value", Value::Int(1)), ("key", Value::Int(4))]);
    let err = e.eval(&r).expect_err("division by zero");
    assert_eq!(&*err.expr, "value / (key - 4)");
    assert_eq!(err.kind, EvalErrorKind::DivisionByZero);
    assert_eq!(
        err.to_string(),
        "evaluating `value / (key - 4)`: division by zero"
    );

    let missing = Record::from_pairs([("value", Value::Int(1))]);
    let err = e.eval(&missing).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "evaluating `value / (key - 4)`: the record has no field `key` (guard with `has(key)`)"
    );

    let over = Record::from_pairs([("value", Value::Int(i64::MAX)), ("key", Value::Int(5))]);
    let e = Expr::compile("value * (key - 4) + 1", &fields()).expect("compiles");
    assert_eq!(
        e.eval(&over).expect_err("overflow").to_string(),
        "evaluating `value * (key - 4) + 1`: integer overflow in `+`"
    );

    let e = Expr::compile("a + 1", &FieldTypes::dynamic()).expect("compiles");
    let null = Record::from_pairs([("a", Value::Null)]);
    assert_eq!(
        e.eval(&null).expect_err("null").to_string(),
        "evaluating `a + 1`: null operand in `+`"
    );
    let text = Record::from_pairs([("a", Value::from("x"))]);
    assert_eq!(
        e.eval(&text).expect_err("string").to_string(),
        "evaluating `a + 1`: `+` cannot combine string and int"
    );
}

/// The documented bracket limit (100 levels) is the one applied (cel's parser alone stops at
/// 96), deeper input is refused in words, not a debug dump, and never overflows the stack of a
/// 2 MiB test thread, even unbalanced (the parser's error recovery recurses too).
#[test]
fn nesting_up_to_the_documented_limit_compiles_and_deeper_is_refused_plainly() {
    let fields = weir_expr::FieldTypes::dynamic();
    let parens = |d: usize| format!("{}1{}", "(".repeat(d), ")".repeat(d));
    weir_expr::Expr::compile(&parens(100), &fields).expect("100 levels are within the limit");
    for deep in [
        parens(101),
        parens(800),
        format!("id < {}5", "{a: ".repeat(800)),
        format!("{}1", "[".repeat(1000)),
    ] {
        let e = weir_expr::Expr::compile(&deep, &fields).expect_err("too deep");
        let text = e.to_string();
        assert!(
            text.contains("nests brackets deeper than 100 levels"),
            "{text}"
        );
        assert!(
            !text.contains("OtherError") && !text.contains("ParseError"),
            "{text}"
        );
    }
}
