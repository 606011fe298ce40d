//! Aggregate functions of `aggregate` steps: `count()`, `sum(x)`, `min(x)`, `max(x)`,
//! `avg(x)`, `first(x)`, `last(x)`, where `x` is any expression over the record.

use std::sync::Arc;
use weir_expr::{CompiledExpr, EvalError, Expr, FieldTypes};
use weir_types::{Value, ValueKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
}

impl AggFn {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count" => AggFn::Count,
            "sum" => AggFn::Sum,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "avg" => AggFn::Avg,
            "first" => AggFn::First,
            "last" => AggFn::Last,
            _ => return None,
        })
    }
}

/// One output field of an aggregate step.
pub(crate) struct Aggregation {
    pub(crate) name: Arc<str>,
    pub(crate) func: AggFn,
    /// `None` only for `count()`.
    pub(crate) arg: Option<CompiledExpr>,
}

impl Aggregation {
    /// Parses `sum(amount * 2)`: a function name and one expression argument.
    pub(crate) fn parse(name: &str, source: &str, fields: &FieldTypes) -> Result<Self, String> {
        let source = source.trim();
        let (func, rest) = source.split_once('(').ok_or_else(|| {
            format!("expected `function(expression)` such as `sum(amount)`, found `{source}`")
        })?;
        let arg = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("`{source}` is missing its closing parenthesis"))?
            .trim();
        let func_name = func.trim();
        let func = AggFn::parse(func_name).ok_or_else(|| {
            format!(
                "unknown aggregate function `{func_name}`: expected count, sum, min, max, avg, first or last"
            )
        })?;
        let arg = match (func, arg.is_empty()) {
            (AggFn::Count, true) => None,
            (_, true) => {
                return Err(format!(
                    "`{func_name}` needs an argument, e.g. `{func_name}(amount)`"
                ));
            }
            (_, false) => Some(Expr::compile(arg, fields).map_err(|e| e.to_string())?),
        };
        Ok(Aggregation {
            name: name.into(),
            func,
            arg,
        })
    }

    pub(crate) fn init(&self) -> Acc {
        match self.func {
            AggFn::Count => Acc::Count(0),
            AggFn::Sum => Acc::SumInt(0),
            AggFn::Min => Acc::Min(Value::Null),
            AggFn::Max => Acc::Max(Value::Null),
            AggFn::Avg => Acc::Avg(0.0, 0),
            AggFn::First => Acc::First(None),
            AggFn::Last => Acc::Last(Value::Null),
        }
    }
}

/// The running state of one aggregation for one key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Acc {
    Count(i64),
    SumInt(i64),
    SumFloat(f64),
    Min(Value),
    Max(Value),
    Avg(f64, u64),
    First(Option<Value>),
    Last(Value),
}

impl Acc {
    /// Adds one record's argument value. Nulls are skipped, as in SQL (`count()` counts
    /// records, `count(x)` counts non-null `x`).
    /// What [`add`](Self::add) would refuse, checked without changing anything: lets a record
    /// update several accumulators all or nothing.
    pub(crate) fn check(&self, value: Option<&Value>) -> Result<(), String> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let numbers = |what: &str| match v.as_f64() {
            Some(_) => Ok(()),
            None => Err(format!("{what} needs numbers, found {}", v.kind())),
        };
        match self {
            Acc::SumInt(_) | Acc::SumFloat(_) => numbers("sum"),
            Acc::Avg(..) => numbers("avg"),
            Acc::Min(m) | Acc::Max(m) if !m.is_null() && v.compare(m).is_none() => {
                Err(format!("cannot compare {} with {}", v.kind(), m.kind()))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn add(&mut self, value: Option<Value>) -> Result<(), String> {
        self.check(value.as_ref())?;
        let Some(v) = value else {
            if let Acc::Count(n) = self {
                *n += 1;
            }
            return Ok(());
        };
        if v.is_null() {
            return Ok(());
        }
        match self {
            Acc::Count(n) => *n += 1,
            Acc::SumInt(s) => match v {
                Value::Int(i) => match s.checked_add(i) {
                    Some(next) => *s = next,
                    None => *self = Acc::SumFloat(*s as f64 + i as f64),
                },
                Value::Float(f) => *self = Acc::SumFloat(*s as f64 + f),
                other => return Err(format!("sum needs numbers, found {}", other.kind())),
            },
            Acc::SumFloat(s) => {
                *s += v
                    .as_f64()
                    .ok_or_else(|| format!("sum needs numbers, found {}", v.kind()))?
            }
            Acc::Avg(s, n) => {
                *s += v
                    .as_f64()
                    .ok_or_else(|| format!("avg needs numbers, found {}", v.kind()))?;
                *n += 1;
            }
            Acc::Min(m) => keep_extreme(m, v, std::cmp::Ordering::Less)?,
            Acc::Max(m) => keep_extreme(m, v, std::cmp::Ordering::Greater)?,
            Acc::First(f) => {
                if f.is_none() {
                    *f = Some(v);
                }
            }
            Acc::Last(l) => *l = v,
        }
        Ok(())
    }

    /// Adds another accumulator of the same aggregation (a partial result over other records)
    /// into this one: what windows need to combine panes and merge sessions. `first` keeps
    /// this one's value if it has one, `last` takes the other's.
    pub(crate) fn merge(&mut self, other: &Acc) -> Result<(), String> {
        match (&mut *self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a), Acc::SumInt(b)) => match a.checked_add(*b) {
                Some(sum) => *a = sum,
                None => {
                    let sum = *a as f64 + *b as f64;
                    *self = Acc::SumFloat(sum);
                }
            },
            (Acc::SumInt(a), Acc::SumFloat(b)) => {
                let sum = *a as f64 + b;
                *self = Acc::SumFloat(sum);
            }
            (Acc::SumFloat(a), Acc::SumInt(b)) => *a += *b as f64,
            (Acc::SumFloat(a), Acc::SumFloat(b)) => *a += b,
            (Acc::Min(m), Acc::Min(v)) if !v.is_null() => {
                keep_extreme(m, v.clone(), std::cmp::Ordering::Less)?
            }
            (Acc::Max(m), Acc::Max(v)) if !v.is_null() => {
                keep_extreme(m, v.clone(), std::cmp::Ordering::Greater)?
            }
            (Acc::Min(_), Acc::Min(_)) | (Acc::Max(_), Acc::Max(_)) => {}
            (Acc::Avg(s, n), Acc::Avg(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (Acc::First(f), Acc::First(g)) => {
                if f.is_none() {
                    *f = g.clone();
                }
            }
            (Acc::Last(l), Acc::Last(v)) => {
                if !v.is_null() {
                    *l = v.clone();
                }
            }
            (a, b) => return Err(format!("cannot merge {a:?} with {b:?}")),
        }
        Ok(())
    }

    pub(crate) fn result(&self) -> Value {
        match self {
            Acc::Count(n) | Acc::SumInt(n) => Value::Int(*n),
            Acc::SumFloat(s) => Value::Float(*s),
            Acc::Min(v) | Acc::Max(v) | Acc::Last(v) => v.clone(),
            Acc::Avg(_, 0) => Value::Null,
            Acc::Avg(s, n) => Value::Float(s / *n as f64),
            Acc::First(v) => v.clone().unwrap_or(Value::Null),
        }
    }

    /// The kind of the result, when known before running.
    pub(crate) fn result_kind(func: AggFn, arg: Option<ValueKind>) -> Option<ValueKind> {
        match func {
            AggFn::Count => Some(ValueKind::Int),
            AggFn::Avg => Some(ValueKind::Float),
            AggFn::Sum => match arg {
                Some(ValueKind::Float) => Some(ValueKind::Float),
                _ => None,
            },
            _ => arg,
        }
    }
}

/// Replaces `current` by `candidate` when it compares as `want` (or `current` is unset).
fn keep_extreme(
    current: &mut Value,
    candidate: Value,
    want: std::cmp::Ordering,
) -> Result<(), String> {
    if current.is_null() {
        *current = candidate;
        return Ok(());
    }
    match candidate.compare(current) {
        Some(o) if o == want => *current = candidate,
        Some(_) => {}
        None => {
            return Err(format!(
                "cannot compare {} with {}",
                candidate.kind(),
                current.kind()
            ));
        }
    }
    Ok(())
}

/// Evaluates an aggregation's argument on a record.
pub(crate) fn argument(
    agg: &Aggregation,
    record: &weir_types::Record,
) -> Result<Option<Value>, EvalError> {
    agg.arg.as_ref().map(|e| e.eval(record)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(func: &str, values: &[Value]) -> Value {
        let agg = Aggregation::parse("out", func, &FieldTypes::dynamic()).unwrap();
        let mut acc = agg.init();
        for v in values {
            acc.add(Some(v.clone())).unwrap();
        }
        acc.result()
    }

    #[test]
    fn functions_follow_sql_null_rules() {
        let vals = [Value::Int(3), Value::Null, Value::Int(1), Value::Int(5)];
        assert_eq!(run("count(x)", &vals), Value::Int(3));
        assert_eq!(run("sum(x)", &vals), Value::Int(9));
        assert_eq!(run("min(x)", &vals), Value::Int(1));
        assert_eq!(run("max(x)", &vals), Value::Int(5));
        assert_eq!(run("avg(x)", &vals), Value::Float(3.0));
        assert_eq!(run("first(x)", &vals), Value::Int(3));
        assert_eq!(run("last(x)", &vals), Value::Int(5));
        assert_eq!(run("avg(x)", &[]), Value::Null);
        assert_eq!(
            run("sum(x)", &[Value::Int(1), Value::Float(0.5)]),
            Value::Float(1.5)
        );
    }

    #[test]
    fn merging_partial_accumulators_equals_adding_everything() {
        let f = FieldTypes::dynamic();
        let vals = [Value::Int(3), Value::Null, Value::Float(1.5), Value::Int(5)];
        for func in [
            "count()", "count(x)", "sum(x)", "min(x)", "max(x)", "avg(x)", "first(x)", "last(x)",
        ] {
            let agg = Aggregation::parse("o", func, &f).unwrap();
            let arg = |v: &Value| {
                if agg.arg.is_some() {
                    Some(v.clone())
                } else {
                    None
                }
            };
            let mut whole = agg.init();
            for v in &vals {
                whole.add(arg(v)).unwrap();
            }
            for split in 0..=vals.len() {
                let (mut left, mut right) = (agg.init(), agg.init());
                vals[..split].iter().for_each(|v| left.add(arg(v)).unwrap());
                vals[split..]
                    .iter()
                    .for_each(|v| right.add(arg(v)).unwrap());
                left.merge(&right).unwrap();
                assert_eq!(left.result(), whole.result(), "{func} split at {split}");
            }
        }
        let mut big = Acc::SumInt(i64::MAX);
        big.merge(&Acc::SumInt(1)).unwrap();
        assert_eq!(big.result(), Value::Float(i64::MAX as f64 + 1.0));
        let mut min = Acc::Min(Value::Int(1));
        assert!(min.merge(&Acc::Min(Value::from("a"))).is_err());
    }

    #[test]
    fn check_refuses_exactly_what_add_refuses() {
        let values = [
            Value::Int(3),
            Value::Float(1.5),
            Value::from("a"),
            Value::Bool(true),
            Value::Null,
            Value::Timestamp(5),
        ];
        for func in [
            "count()", "count(x)", "sum(x)", "min(x)", "max(x)", "avg(x)", "first(x)", "last(x)",
        ] {
            let agg = Aggregation::parse("o", func, &FieldTypes::dynamic()).unwrap();
            for start in &values {
                let mut acc = agg.init();
                let _ = acc.add(Some(start.clone()));
                for v in &values {
                    let mut after = acc.clone();
                    let added = after.add(Some(v.clone()));
                    assert_eq!(
                        acc.check(Some(v)).is_err(),
                        added.is_err(),
                        "{func} after {start:?} with {v:?}"
                    );
                    if added.is_err() {
                        assert_eq!(after, acc, "a refused value changes nothing");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_aggregations_are_explained() {
        let f = FieldTypes::dynamic();
        let e = Aggregation::parse("o", "median(x)", &f).err().unwrap();
        assert!(e.contains("unknown aggregate function `median`"), "{e}");
        let e = Aggregation::parse("o", "sum()", &f).err().unwrap();
        assert!(e.contains("needs an argument"), "{e}");
        let e = Aggregation::parse("o", "total", &f).err().unwrap();
        assert!(e.contains("function(expression)"), "{e}");
        let mut acc = Aggregation::parse("o", "sum(x)", &f).unwrap().init();
        assert!(acc.add(Some(Value::from("a"))).is_err());
    }
}
