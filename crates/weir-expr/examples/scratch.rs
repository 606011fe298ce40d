use weir_expr::{Expr, FieldTypes};
use weir_types::ValueKind;
fn main() {
    let f = FieldTypes::default().with("value", ValueKind::Int).with("user_id", ValueKind::Str).with("url", ValueKind::Str).with("payload", ValueKind::Json);
    for src in ["value +", "value % 2 == 0 &&", "(value", "value = 2", "usr_id == 'a'", "vaule > 3", "\"abc\" * 2", "value * 'x'", "url.startWith('/x')", "foo(value)", "url.matches('[')", "timestamp('yesterday')", "value / 0 == 1 || 1 / 0 == 1", "value > 'a'", "payload.x > url", "value.x", "[1,2]", "has(value.x)", "a\n  + b == c &&", "value ==\n 'x'", "", "url.exists(x, x > 1)", "int(true)"] {
        match Expr::compile(src, &f) { Ok(e) => println!("OK {src:?}: {e:?}"), Err(e) => println!("{e}") }
    }
    let e = Expr::compile("value / (value - value)", &f).unwrap();
    let r = weir_types::Record::from_pairs([("value", weir_types::Value::Int(3))]);
    println!("{}", e.eval(&r).unwrap_err());
}
