//! Operators and functions on dynamic [`Value`]s: what the compiled closures fall back to when
//! a type is only known at run time, and what constant folding uses at compile time.

use crate::error::{EvalErrorKind, Fault, fault};
use std::cmp::Ordering;
use std::sync::Arc;
use weir_types::{Value, ValueKind, format_datetime, parse_datetime};

pub(crate) type R<T> = Result<T, Fault>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }

    #[inline]
    pub(crate) fn int(self, a: i64, b: i64) -> R<i64> {
        let result = match self {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div | ArithOp::Rem if b == 0 => {
                return Err(fault(EvalErrorKind::DivisionByZero));
            }
            ArithOp::Div => a.checked_div(b),
            ArithOp::Rem => a.checked_rem(b),
        };
        result.ok_or_else(|| fault(EvalErrorKind::Overflow { op: self.symbol() }))
    }

    #[inline]
    pub(crate) fn float(self, a: f64, b: f64) -> R<f64> {
        Ok(match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div | ArithOp::Rem if b == 0.0 => {
                return Err(fault(EvalErrorKind::DivisionByZero));
            }
            ArithOp::Div => a / b,
            ArithOp::Rem => a % b,
        })
    }
}

/// `a op b` for values known only at run time.
#[inline]
pub(crate) fn arith(op: ArithOp, a: &Value, b: &Value) -> R<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => op.int(*x, *y).map(Value::Int),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (x, y) = (num(a), num(b));
            op.float(x, y).map(Value::Float)
        }
        (Value::Str(x), Value::Str(y)) if op == ArithOp::Add => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Value::Str(Arc::from(s)))
        }
        (Value::Null, _) | (_, Value::Null) => {
            Err(fault(EvalErrorKind::NullOperand { op: op.symbol() }))
        }
        _ => Err(fault(EvalErrorKind::Incompatible {
            op: op.symbol(),
            left: a.kind(),
            right: b.kind(),
        })),
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub(crate) fn is_equality(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Ne)
    }

    /// Whether the ordering satisfies the operator; `None` (NaN involved) satisfies only `!=`.
    #[inline]
    pub(crate) fn holds(self, ord: Option<Ordering>) -> bool {
        match ord {
            None => self == CmpOp::Ne,
            Some(o) => match self {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            },
        }
    }
}

/// Equality across kinds: numbers compare by value (`1 == 1.0`), values of different kinds
/// are unequal, JSON documents compare structurally, NaN equals nothing.
#[inline]
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => num(a) == num(b),
        _ => a == b,
    }
}

/// `a op b` for values known only at run time.
#[inline]
pub(crate) fn compare(op: CmpOp, a: &Value, b: &Value) -> R<bool> {
    match op {
        CmpOp::Eq => return Ok(equal(a, b)),
        CmpOp::Ne => return Ok(!equal(a, b)),
        _ => {}
    }
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => {
            Err(fault(EvalErrorKind::NullOperand { op: op.symbol() }))
        }
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_))
        | (Value::Str(_), Value::Str(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Timestamp(_), Value::Timestamp(_)) => Ok(op.holds(a.compare(b))),
        _ => Err(fault(EvalErrorKind::Incompatible {
            op: op.symbol(),
            left: a.kind(),
            right: b.kind(),
        })),
    }
}

/// Whether a value equals a JSON element (for `in` over JSON arrays), without converting it.
pub(crate) fn equals_json(v: &Value, j: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (v, j) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Int(a), J::Number(n)) => match n.as_i64() {
            Some(b) => *a == b,
            None => n.as_f64() == Some(*a as f64),
        },
        (Value::Float(a), J::Number(n)) => n.as_f64() == Some(*a),
        (Value::Str(a), J::String(b)) => **a == **b,
        (Value::Json(a), b) => **a == *b,
        _ => false,
    }
}

pub(crate) fn type_mismatch(op: &'static str, expected: &'static str, found: &Value) -> Fault {
    if found.is_null() {
        fault(EvalErrorKind::NullOperand { op })
    } else {
        fault(EvalErrorKind::TypeMismatch {
            op,
            expected,
            found: found.kind(),
        })
    }
}

#[inline]
pub(crate) fn expect_bool(op: &'static str, v: &Value) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(type_mismatch(op, "bool", other)),
    }
}

#[inline]
pub(crate) fn expect_int(op: &'static str, v: &Value) -> R<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(type_mismatch(op, "int", other)),
    }
}

#[inline]
pub(crate) fn expect_num(op: &'static str, v: &Value) -> R<f64> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        other => Err(type_mismatch(op, "a number", other)),
    }
}

#[inline]
pub(crate) fn expect_str<'v>(op: &'static str, v: &'v Value) -> R<&'v str> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(type_mismatch(op, "string", other)),
    }
}

fn conversion(to: &'static str, value: &Value) -> Fault {
    fault(EvalErrorKind::Conversion {
        to,
        value: format!("{value:?}"),
    })
}

/// `int(v)`: floats truncate toward zero, strings parse as decimal integers, timestamps give
/// seconds since the Unix epoch (as in CEL).
pub(crate) fn to_int(v: &Value) -> R<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) => float_to_int(*f).ok_or_else(|| conversion("int", v)),
        Value::Str(s) => s.parse::<i64>().map_err(|_| conversion("int", v)),
        Value::Timestamp(ms) => Ok(ms.div_euclid(1000)),
        other => Err(type_mismatch(
            "int()",
            "a number, string or timestamp",
            other,
        )),
    }
}

pub(crate) fn float_to_int(f: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    let t = f.trunc();
    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
        .contains(&t)
        .then_some(t as i64)
}

/// `double(v)`: integers widen, strings parse.
pub(crate) fn to_double(v: &Value) -> R<f64> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::Str(s) => s.trim().parse::<f64>().map_err(|_| conversion("double", v)),
        other => Err(type_mismatch("double()", "a number or string", other)),
    }
}

/// `string(v)`: timestamps in RFC 3339, JSON documents as compact JSON text.
pub(crate) fn to_string(v: &Value) -> R<Value> {
    match v {
        Value::Str(_) => Ok(v.clone()),
        Value::Null => Err(fault(EvalErrorKind::NullOperand { op: "string()" })),
        Value::Timestamp(ms) => Ok(Value::from(format_datetime(*ms))),
        other => Ok(Value::from(other.to_string())),
    }
}

/// `bool(v)`: the string forms CEL accepts (`true`, `TRUE`, `True`, `t`, `1` and the false ones).
pub(crate) fn to_bool(v: &Value) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) => match &**s {
            "1" | "t" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(conversion("bool", v)),
        },
        other => Err(type_mismatch("bool()", "a bool or string", other)),
    }
}

/// `timestamp(v)`: strings through [`parse_datetime`], integers as seconds since the epoch.
pub(crate) fn to_timestamp(v: &Value) -> R<i64> {
    match v {
        Value::Timestamp(ms) => Ok(*ms),
        Value::Str(s) => parse_datetime(s).ok_or_else(|| conversion("timestamp", v)),
        Value::Int(secs) => secs
            .checked_mul(1000)
            .ok_or_else(|| fault(EvalErrorKind::Overflow { op: "timestamp()" })),
        other => Err(type_mismatch(
            "timestamp()",
            "a string, int or timestamp",
            other,
        )),
    }
}

/// `size(v)`: characters of a string, elements of a JSON array, keys of a JSON object.
pub(crate) fn size(v: &Value) -> R<i64> {
    let n = match v {
        Value::Str(s) => s.chars().count(),
        Value::Json(j) => match &**j {
            serde_json::Value::Array(a) => a.len(),
            serde_json::Value::Object(o) => o.len(),
            _ => 1,
        },
        other => {
            return Err(type_mismatch(
                "size()",
                "a string or JSON array/object",
                other,
            ));
        }
    };
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) fn abs(v: &Value) -> R<Value> {
    match v {
        Value::Int(i) => i
            .checked_abs()
            .map(Value::Int)
            .ok_or_else(|| fault(EvalErrorKind::Overflow { op: "abs()" })),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        other => Err(type_mismatch("abs()", "a number", other)),
    }
}

/// `min`/`max` over values of one comparable kind; mixing ints and floats gives a float.
pub(crate) fn extreme(op: &'static str, want: Ordering, values: &[Value]) -> R<Value> {
    let mut best: Option<&Value> = None;
    let mut mixed = false;
    for v in values {
        if v.is_null() {
            return Err(fault(EvalErrorKind::NullOperand { op }));
        }
        best = Some(match best {
            None => v,
            Some(b) => {
                if !matches!(
                    (b.kind(), v.kind()),
                    (ValueKind::Int, ValueKind::Int)
                        | (ValueKind::Float, ValueKind::Float)
                        | (ValueKind::Str, ValueKind::Str)
                        | (ValueKind::Timestamp, ValueKind::Timestamp)
                ) {
                    if matches!(
                        (b.kind(), v.kind()),
                        (ValueKind::Int, ValueKind::Float) | (ValueKind::Float, ValueKind::Int)
                    ) {
                        mixed = true;
                    } else {
                        return Err(fault(EvalErrorKind::Incompatible {
                            op,
                            left: b.kind(),
                            right: v.kind(),
                        }));
                    }
                }
                if v.compare(b) == Some(want) { v } else { b }
            }
        });
    }
    match best {
        Some(Value::Int(i)) if mixed => Ok(Value::Float(*i as f64)),
        Some(v) => Ok(v.clone()),
        None => Err(fault(EvalErrorKind::TypeMismatch {
            op,
            expected: "at least one argument",
            found: ValueKind::Null,
        })),
    }
}

/// Why a JSON path step found nothing.
pub(crate) enum Miss {
    Key(String),
    Index { index: i64, len: usize },
    Fault(Fault),
}

impl From<Miss> for Fault {
    fn from(miss: Miss) -> Fault {
        match miss {
            Miss::Key(key) => fault(EvalErrorKind::NoSuchKey { key }),
            Miss::Index { index, len } => fault(EvalErrorKind::IndexOutOfBounds { index, len }),
            Miss::Fault(f) => f,
        }
    }
}

/// One step into a JSON document: a key of an object or an index of an array (negative
/// indexes are out of bounds, as in CEL).
#[inline]
pub(crate) fn json_step<'j>(
    j: &'j serde_json::Value,
    key: KeyRef<'_>,
) -> Result<&'j serde_json::Value, Miss> {
    use serde_json::Value as J;
    match (j, key) {
        (J::Object(map), KeyRef::Key(k)) => map.get(k).ok_or_else(|| Miss::Key(k.to_string())),
        (J::Array(items), KeyRef::Index(i)) => usize::try_from(i)
            .ok()
            .and_then(|u| items.get(u))
            .ok_or(Miss::Index {
                index: i,
                len: items.len(),
            }),
        (J::Object(_), KeyRef::Index(_)) => Err(Miss::Fault(fault(EvalErrorKind::TypeMismatch {
            op: "[]",
            expected: "a string key for a JSON object",
            found: ValueKind::Int,
        }))),
        (J::Array(_), KeyRef::Key(_)) => Err(Miss::Fault(fault(EvalErrorKind::TypeMismatch {
            op: "[]",
            expected: "an int index for a JSON array",
            found: ValueKind::Str,
        }))),
        (scalar, _) => Err(Miss::Fault(type_mismatch(
            "[]",
            "a JSON object or array",
            &Value::from_json(scalar.clone()),
        ))),
    }
}

#[derive(Clone, Copy)]
pub(crate) enum KeyRef<'k> {
    Key(&'k str),
    Index(i64),
}

impl<'k> KeyRef<'k> {
    pub(crate) fn of(v: &'k Value) -> R<KeyRef<'k>> {
        match v {
            Value::Str(s) => Ok(KeyRef::Key(s)),
            Value::Int(i) => Ok(KeyRef::Index(*i)),
            other => Err(type_mismatch("[]", "a string key or int index", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: R<Value>) -> EvalErrorKind {
        *r.expect_err("an error")
    }

    #[test]
    fn int_arithmetic_is_checked() {
        assert_eq!(ArithOp::Add.int(2, 3).ok(), Some(5));
        assert_eq!(
            *ArithOp::Add.int(i64::MAX, 1).unwrap_err(),
            EvalErrorKind::Overflow { op: "+" }
        );
        assert_eq!(
            *ArithOp::Div.int(i64::MIN, -1).unwrap_err(),
            EvalErrorKind::Overflow { op: "/" }
        );
        assert_eq!(
            *ArithOp::Rem.int(1, 0).unwrap_err(),
            EvalErrorKind::DivisionByZero
        );
        assert_eq!(
            ArithOp::Rem.int(-7, 2).ok(),
            Some(-1),
            "truncated remainder"
        );
    }

    #[test]
    fn mixed_numbers_promote_and_strings_concatenate() {
        assert_eq!(
            arith(ArithOp::Mul, &Value::Int(2), &Value::Float(1.5)).ok(),
            Some(Value::Float(3.0))
        );
        assert_eq!(
            arith(ArithOp::Add, &Value::from("a"), &Value::from("b")).ok(),
            Some(Value::from("ab"))
        );
        assert_eq!(
            kind(arith(ArithOp::Add, &Value::Null, &Value::Int(1))),
            EvalErrorKind::NullOperand { op: "+" }
        );
        assert_eq!(
            kind(arith(ArithOp::Mul, &Value::from("a"), &Value::Int(2))),
            EvalErrorKind::Incompatible {
                op: "*",
                left: ValueKind::Str,
                right: ValueKind::Int
            }
        );
    }

    #[test]
    fn equality_and_ordering() {
        assert!(equal(&Value::Int(1), &Value::Float(1.0)));
        assert!(!equal(&Value::Int(1), &Value::from("1")));
        assert!(!equal(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        assert!(equal(&Value::Null, &Value::Null));
        assert_eq!(
            compare(CmpOp::Lt, &Value::from("a"), &Value::from("b")).ok(),
            Some(true)
        );
        assert!(compare(CmpOp::Lt, &Value::Null, &Value::Int(1)).is_err());
        assert_eq!(
            compare(CmpOp::Ne, &Value::Null, &Value::Int(1)).ok(),
            Some(true)
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(to_int(&Value::Float(-2.9)).ok(), Some(-2));
        assert!(to_int(&Value::Float(1e19)).is_err());
        assert_eq!(to_int(&Value::from("42")).ok(), Some(42));
        assert_eq!(to_int(&Value::Timestamp(1_500)).ok(), Some(1));
        assert_eq!(to_bool(&Value::from("True")).ok(), Some(true));
        assert_eq!(
            to_string(&Value::Timestamp(0)).ok(),
            Some(Value::from("1970-01-01T00:00:00.000Z"))
        );
        assert_eq!(to_timestamp(&Value::Int(2)).ok(), Some(2000));
    }

    #[test]
    fn min_max_mix_ints_and_floats() {
        let vs = [Value::Int(3), Value::Float(1.5), Value::Int(7)];
        assert_eq!(
            extreme("max()", Ordering::Greater, &vs).ok(),
            Some(Value::Float(7.0))
        );
        assert_eq!(
            extreme("min()", Ordering::Less, &vs).ok(),
            Some(Value::Float(1.5))
        );
        assert!(extreme("min()", Ordering::Less, &[Value::Int(1), Value::from("a")]).is_err());
    }
}
