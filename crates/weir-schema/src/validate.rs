//! Record validation: type checks, lossless coercions, defaults and unknown fields.
//!
//! The fast path (a record that is already valid) only compares value kinds at precomputed
//! positions and hands the record back untouched: no allocation, no lock, no dynamic dispatch.
//! Records that need a default, a coercion or a dropped field take a slower path that rebuilds
//! what is needed; invalid records collect every problem into one [`ValidationError`].

use crate::def::{FieldType, UnknownFields};
use crate::schema::{Field, Schema};
use std::fmt;
use std::sync::Arc;
use weir_types::{Record, Shape, Value, ValueKind, parse_datetime};

/// A record that does not match its schema: every problem found, and the record itself so that a
/// caller can send it to a dead-letter output.
///
/// Its `Display` names the schema and version, each field, the expected type and what was found
/// (kind and a short preview; previews of sensitive fields are hidden). `Debug` shows the field
/// names of the record but not its values.
#[derive(thiserror::Error)]
pub struct ValidationError {
    schema: Arc<str>,
    version: Option<u32>,
    problems: Vec<FieldProblem>,
    record: Record,
}

/// What is wrong with one field of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: Arc<str>,
    pub problem: Problem,
}

/// The kinds of field problems.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A required field is absent (`null: false`) or `null` (`null: true`).
    Missing { null: bool },
    /// The value has a kind that the field's type does not accept, even after coercion.
    WrongType {
        expected: FieldType,
        found: ValueKind,
        /// A short rendering of the value (`<hidden>` for sensitive fields).
        preview: String,
    },
    /// A string in a `datetime` field that is not a datetime.
    BadDatetime { preview: String },
    /// A field the schema does not declare, under `unknown_fields: reject`.
    Unknown { found: ValueKind },
}

impl ValidationError {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema's version, when it came from a registry.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Every problem of the record, in schema field order, then unknown fields.
    pub fn problems(&self) -> &[FieldProblem] {
        &self.problems
    }

    /// The record as it was given to `validate`.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Gives back the rejected record, e.g. for a dead-letter output.
    pub fn into_record(self) -> Record {
        self.record
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record does not match schema {}", self.schema)?;
        if let Some(v) = self.version {
            write!(f, " v{v}")?;
        }
        f.write_str(":")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values may be personal data: show the record's field names only.
        f.debug_struct("ValidationError")
            .field("schema", &self.schema)
            .field("version", &self.version)
            .field("problems", &self.problems)
            .field("record_fields", self.record.shape())
            .finish()
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: ", self.field)?;
        match &self.problem {
            Problem::Missing { null: false } => f.write_str("required field is missing"),
            Problem::Missing { null: true } => f.write_str("required field is null"),
            Problem::WrongType {
                expected,
                found,
                preview,
            } => write!(f, "expected {expected}, found {found} {preview}"),
            Problem::BadDatetime { preview } => write!(
                f,
                "expected datetime, found string {preview}, which is not one (use RFC 3339, \
                 `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD` or epoch seconds/milliseconds)"
            ),
            Problem::Unknown { found } => {
                write!(
                    f,
                    "not in the schema (found {found}; unknown_fields is reject)"
                )
            }
        }
    }
}

/// Where each schema field sits in records of one shape, and what the output shape is.
#[derive(Debug)]
pub(crate) struct Plan {
    shape: Arc<Shape>,
    /// Per schema field, its position in the input record.
    positions: Vec<Option<usize>>,
    /// Input positions of fields the schema does not declare.
    unknown: Vec<usize>,
    /// The output shape when it differs from the input's: unknown fields dropped, missing
    /// defaulted fields appended.
    out_shape: Option<Arc<Shape>>,
}

impl Plan {
    fn new(schema: &Schema, shape: &Arc<Shape>) -> Plan {
        let positions: Vec<Option<usize>> = schema
            .fields
            .iter()
            .map(|f| shape.index_of(&f.name))
            .collect();
        let unknown: Vec<usize> = (0..shape.len())
            .filter(|p| !positions.contains(&Some(*p)))
            .collect();
        let drop_unknown = schema.def.unknown_fields == UnknownFields::Drop && !unknown.is_empty();
        let mut appended = schema
            .fields
            .iter()
            .zip(&positions)
            .filter(|(f, pos)| pos.is_none() && f.default.is_some())
            .map(|(f, _)| f.name.clone())
            .peekable();
        let out_shape = if drop_unknown || appended.peek().is_some() {
            let kept = shape
                .names()
                .iter()
                .enumerate()
                .filter(|(p, _)| !(drop_unknown && unknown.contains(p)))
                .map(|(_, n)| n.clone());
            Some(Arc::new(Shape::new(kept.chain(appended))))
        } else {
            None
        };
        Plan {
            shape: shape.clone(),
            positions,
            unknown,
            out_shape,
        }
    }
}

/// Validates a stream of records against one schema, remembering where the fields are for the
/// last four record shapes seen. Records decoded by one `RecordDecoder` share their shape, so
/// the positions are computed once per stream (a shape equal by names but newly allocated is
/// recognised too), and records that need defaults all get one shared output shape. One
/// validator per task: `validate` takes `&mut self`, so there is no lock.
///
/// ```
/// use std::sync::Arc;
/// use weir_schema::{Schema, Validator};
/// use weir_types::{Record, RecordDecoder, Value};
///
/// let schema = Schema::from_yaml(
///     "name: shop.order\nfields:\n  - { name: id, type: string, required: true }\n  - { name: qty, type: int, default: 1 }\n",
///     "order.yaml",
/// )?;
/// let mut validator = Validator::new(Arc::new(schema));
/// let mut decoder = RecordDecoder::default();
/// let ok = validator.validate(decoder.decode(r#"{"id":"a1"}"#).unwrap())?;
/// assert_eq!(ok.get("qty"), Some(&Value::Int(1)));
/// let err = validator.validate(decoder.decode(r#"{"qty":2}"#).unwrap()).unwrap_err();
/// assert_eq!(err.to_string(), "record does not match schema shop.order: field `id`: required field is missing");
/// # Ok::<(), weir_schema::Error>(())
/// ```
#[derive(Debug)]
pub struct Validator {
    schema: Arc<Schema>,
    /// Plans for the last few shapes seen, most recently built last.
    plans: Vec<Plan>,
}

/// How many record shapes a [`Validator`] remembers (streams mixing a few producers' field
/// orders stay on the fast path).
const CACHED_SHAPES: usize = 4;

impl Validator {
    pub fn new(schema: Arc<Schema>) -> Validator {
        Validator {
            schema,
            plans: Vec::with_capacity(CACHED_SHAPES),
        }
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Same result as [`Schema::validate`], faster for a stream of records.
    pub fn validate(&mut self, record: Record) -> Result<Record, ValidationError> {
        let index = self.plan_index(record.shape());
        let plan = &self.plans[index];
        if self
            .schema
            .is_valid_as_is(&record, |i, _| plan.positions[i])
        {
            return Ok(record);
        }
        self.schema.fix(record, plan)
    }

    fn plan_index(&mut self, shape: &Arc<Shape>) -> usize {
        if let Some(i) = self.plans.iter().position(|p| Arc::ptr_eq(&p.shape, shape)) {
            return i;
        }
        if let Some(i) = self.plans.iter().position(|p| *p.shape == **shape) {
            // Same names, another allocation: keep this one so the next record hits by pointer.
            self.plans[i].shape = shape.clone();
            return i;
        }
        if self.plans.len() == CACHED_SHAPES {
            self.plans.remove(0);
        }
        self.plans.push(Plan::new(&self.schema, shape));
        self.plans.len() - 1
    }
}

impl Schema {
    /// Checks a record against this schema and returns it, completed: defaults filled in for
    /// missing or `null` optional fields, lossless coercions applied, unknown fields kept,
    /// dropped or refused as `unknown_fields` says. A record that is already valid comes back
    /// untouched, without allocating.
    ///
    /// Coercions (anything else is a type error):
    /// - `float` accepts integers (widened; exact up to 2^53).
    /// - `int` accepts floats with no fractional part that fit in 64 bits.
    /// - `bool` accepts the integers 0 and 1.
    /// - `datetime` accepts RFC 3339 strings, `YYYY-MM-DD HH:MM:SS[.fff]` and `YYYY-MM-DD` (UTC),
    ///   and epoch numbers: integers below 10^11 in absolute value are seconds (that reaches the
    ///   year 5138), larger ones milliseconds; floats are seconds with a fraction.
    /// - `json` accepts any non-null value as it is.
    /// - `string` accepts only strings: numbers are not stringified.
    ///
    /// `null` counts as absent. For a stream, [`Validator`] remembers field positions between
    /// records and is faster.
    ///
    /// ```
    /// use weir_schema::Schema;
    /// use weir_types::{Record, Value};
    /// let schema = Schema::from_yaml(
    ///     "name: iot.reading\nfields:\n  - { name: ts, type: datetime, required: true }\n  - { name: temp, type: float, required: true }\n",
    ///     "reading.yaml",
    /// )?;
    /// let record = Record::from_pairs([("ts", Value::from("2024-05-01 12:00:00")), ("temp", Value::Int(21))]);
    /// let valid = schema.validate(record)?;
    /// assert_eq!(valid.get("ts"), Some(&Value::Timestamp(1_714_564_800_000)));
    /// assert_eq!(valid.get("temp"), Some(&Value::Float(21.0)));
    ///
    /// let bad = Record::from_pairs([("ts", Value::from("soon")), ("temp", Value::from("hot"))]);
    /// let err = schema.validate(bad).unwrap_err();
    /// assert_eq!(err.problems().len(), 2);
    /// assert!(err.to_string().contains("field `temp`: expected float, found string \"hot\""));
    /// # Ok::<(), weir_schema::Error>(())
    /// ```
    pub fn validate(&self, record: Record) -> Result<Record, ValidationError> {
        let shape = record.shape();
        if self.is_valid_as_is(&record, |_, f| shape.index_of(&f.name)) {
            return Ok(record);
        }
        let plan = Plan::new(self, record.shape());
        self.fix(record, &plan)
    }

    /// The fast check: true when the record needs no change at all.
    #[inline]
    fn is_valid_as_is(
        &self,
        record: &Record,
        position: impl Fn(usize, &Field) -> Option<usize>,
    ) -> bool {
        let values = record.values();
        let mut found = 0;
        for (i, field) in self.fields.iter().enumerate() {
            match position(i, field).and_then(|p| values.get(p)) {
                Some(value) if !value.is_null() => {
                    found += 1;
                    if !kind_matches(field.ty, value) {
                        return false;
                    }
                }
                Some(_) => {
                    found += 1;
                    if field.required || field.default.is_some() {
                        return false;
                    }
                }
                None => {
                    if field.required || field.default.is_some() {
                        return false;
                    }
                }
            }
        }
        found == values.len() || self.def.unknown_fields == UnknownFields::Keep
    }

    /// The slow path: collects problems, or applies coercions, defaults and dropped fields.
    fn fix(&self, mut record: Record, plan: &Plan) -> Result<Record, ValidationError> {
        let mut problems = Vec::new();
        let mut replacements: Vec<(usize, Value)> = Vec::new();
        let values = record.values();
        for (field, position) in self.fields.iter().zip(&plan.positions) {
            let Some(p) = *position else {
                if field.required {
                    problems.push(FieldProblem {
                        field: field.name.clone(),
                        problem: Problem::Missing { null: false },
                    });
                }
                continue;
            };
            let value = &values[p];
            if value.is_null() {
                if field.required {
                    problems.push(FieldProblem {
                        field: field.name.clone(),
                        problem: Problem::Missing { null: true },
                    });
                } else if let Some(default) = &field.default {
                    replacements.push((p, default.clone()));
                }
                continue;
            }
            match coerce(field, value) {
                Ok(None) => {}
                Ok(Some(coerced)) => replacements.push((p, coerced)),
                Err(problem) => problems.push(FieldProblem {
                    field: field.name.clone(),
                    problem,
                }),
            }
        }
        if self.def.unknown_fields == UnknownFields::Reject {
            let names = record.shape().names();
            for &p in &plan.unknown {
                problems.push(FieldProblem {
                    field: names[p].clone(),
                    problem: Problem::Unknown {
                        found: values[p].kind(),
                    },
                });
            }
        }
        if !problems.is_empty() {
            return Err(ValidationError {
                schema: self.name.clone(),
                version: self.version(),
                problems,
                record,
            });
        }

        let Some(out_shape) = &plan.out_shape else {
            for (p, value) in replacements {
                let name = record.shape().names()[p].clone();
                if let Some(slot) = record.get_mut(&name) {
                    *slot = value;
                }
            }
            return Ok(record);
        };
        let drop_unknown = self.def.unknown_fields == UnknownFields::Drop;
        let mut out = Vec::with_capacity(out_shape.len());
        for (p, value) in values.iter().enumerate() {
            if drop_unknown && plan.unknown.contains(&p) {
                continue;
            }
            match replacements.iter().position(|(q, _)| *q == p) {
                Some(r) => out.push(std::mem::take(&mut replacements[r].1)),
                None => out.push(value.clone()),
            }
        }
        for (field, position) in self.fields.iter().zip(&plan.positions) {
            if let (None, Some(default)) = (position, &field.default) {
                out.push(default.clone());
            }
        }
        // The plan built `out_shape` from the same positions and fields, so the lengths agree.
        Ok(Record::with_shape(out_shape.clone(), out)
            .expect("the plan's output shape has one name per output value"))
    }
}

/// Whether a non-null value already has the field's type.
#[inline]
fn kind_matches(ty: FieldType, value: &Value) -> bool {
    matches!(
        (ty, value),
        (FieldType::String, Value::Str(_))
            | (FieldType::Int, Value::Int(_))
            | (FieldType::Float, Value::Float(_))
            | (FieldType::Bool, Value::Bool(_))
            | (FieldType::Datetime, Value::Timestamp(_))
            | (FieldType::Json, _)
    )
}

/// `Ok(None)`: valid as is; `Ok(Some(v))`: valid once replaced by `v`.
fn coerce(field: &Field, value: &Value) -> Result<Option<Value>, Problem> {
    if kind_matches(field.ty, value) {
        return Ok(None);
    }
    let coerced = match (field.ty, value) {
        (FieldType::Float, Value::Int(i)) => Some(Value::Float(*i as f64)),
        (FieldType::Int, Value::Float(f)) => float_to_int(*f).map(Value::Int),
        (FieldType::Bool, Value::Int(0)) => Some(Value::Bool(false)),
        (FieldType::Bool, Value::Int(1)) => Some(Value::Bool(true)),
        (FieldType::Datetime, Value::Str(_)) => {
            return coerce_datetime(value)
                .map(Some)
                .ok_or_else(|| Problem::BadDatetime {
                    preview: preview(field, value),
                });
        }
        (FieldType::Datetime, _) => coerce_datetime(value),
        _ => None,
    };
    coerced.map(Some).ok_or_else(|| Problem::WrongType {
        expected: field.ty,
        found: value.kind(),
        preview: preview(field, value),
    })
}

fn float_to_int(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every float in [-2^63, 2^63) fits an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Epoch integers with an absolute value below this are seconds, others milliseconds.
const SECONDS_LIMIT: i64 = 100_000_000_000;

/// A datetime from a timestamp, a datetime string or an epoch number; `None` if it is none.
pub(crate) fn coerce_datetime(value: &Value) -> Option<Value> {
    let ms = match value {
        Value::Timestamp(ms) => Some(*ms),
        Value::Str(s) => parse_datetime(s),
        Value::Int(n) if n.abs() < SECONDS_LIMIT => n.checked_mul(1000),
        Value::Int(n) => Some(*n),
        Value::Float(f) if f.is_finite() && f.abs() < SECONDS_LIMIT as f64 => {
            Some((f * 1000.0).round() as i64)
        }
        _ => None,
    };
    ms.map(Value::Timestamp)
}

const PREVIEW_CHARS: usize = 40;

/// A short rendering of a value for error messages; sensitive fields are never shown.
fn preview(field: &Field, value: &Value) -> String {
    if field.sensitive.is_some() {
        return "<hidden: sensitive field>".to_string();
    }
    match value {
        Value::Str(s) => {
            let shown = truncate(s);
            let mut text = format!("{shown:?}");
            if shown.len() < s.len() {
                text.push('…');
            }
            text
        }
        other => {
            let full = other.to_string();
            let shown = truncate(&full);
            if shown.len() < full.len() {
                format!("{shown}…")
            } else {
                full
            }
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::LOGIN_V2;

    fn login() -> Schema {
        Schema::from_yaml(LOGIN_V2, "login.yaml").unwrap()
    }

    fn valid_login() -> Record {
        Record::from_pairs([
            ("user_id", Value::from("u1")),
            ("ts", Value::Timestamp(1_714_564_800_000)),
            ("ip", Value::from("10.0.0.1")),
            ("email", Value::from("a@b.c")),
            ("attempts", Value::Int(3)),
            ("score", Value::Float(0.5)),
            ("ok", Value::Bool(true)),
            (
                "meta",
                Value::Json(Arc::new(serde_json::json!({"ua": "x"}))),
            ),
        ])
    }

    #[test]
    fn a_valid_record_comes_back_untouched() {
        let record = valid_login();
        let shape = record.shape().clone();
        let out = login().validate(record).unwrap();
        assert!(Arc::ptr_eq(out.shape(), &shape));
        assert_eq!(out, valid_login());
    }

    #[test]
    fn validator_caches_the_plan_per_shape() {
        let mut v = Validator::new(Arc::new(login()));
        let a = v.validate(valid_login()).unwrap();
        let b = v.validate(valid_login()).unwrap();
        assert_eq!(a, b);
        assert_eq!(v.plans.len(), 1, "equal shapes share one plan");
        assert!(
            Arc::ptr_eq(&v.plans[0].shape, b.shape()),
            "an equal shape replaces the cached one"
        );
        let mut partial = valid_login();
        partial.remove("attempts");
        let x = v.validate(partial.clone()).unwrap();
        let y = v.validate(partial).unwrap();
        assert_eq!(x.get("attempts"), Some(&Value::Int(1)));
        // Completed records share one output shape instead of allocating one each.
        assert!(Arc::ptr_eq(x.shape(), y.shape()));
        assert_eq!(v.plans.len(), 2);
        for extra in 0..CACHED_SHAPES + 2 {
            let mut r = valid_login();
            r.set(&format!("extra{extra}"), Value::Int(1));
            v.validate(r).unwrap();
        }
        assert_eq!(v.plans.len(), CACHED_SHAPES, "the cache is bounded");
    }

    #[test]
    fn previews_are_short_and_hide_sensitive_fields() {
        let mut record = valid_login();
        record.set("ip", Value::Int(7));
        record.set("user_id", Value::from("x".repeat(100)));
        record.set("score", Value::from("y".repeat(100)));
        let err = login().validate(record).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("field `ip`: expected string, found int <hidden: sensitive field>"),
            "{text}"
        );
        assert!(
            text.contains(&format!("found string \"{}\"…", "y".repeat(40))),
            "{text}"
        );
        assert!(
            !text.contains("`user_id`"),
            "a long but valid string is fine: {text}"
        );
        assert!(!format!("{err:?}").contains("10.0.0.1"));
    }

    #[test]
    fn epoch_numbers_and_float_ints() {
        assert_eq!(
            coerce_datetime(&Value::Int(1_714_564_800)),
            Some(Value::Timestamp(1_714_564_800_000))
        );
        assert_eq!(
            coerce_datetime(&Value::Int(1_714_564_800_123)),
            Some(Value::Timestamp(1_714_564_800_123))
        );
        assert_eq!(
            coerce_datetime(&Value::Float(1.5)),
            Some(Value::Timestamp(1500))
        );
        assert_eq!(coerce_datetime(&Value::Bool(true)), None);
        assert_eq!(float_to_int(3.0), Some(3));
        assert_eq!(float_to_int(3.5), None);
        assert_eq!(float_to_int(1e19), None);
        assert_eq!(float_to_int(f64::NAN), None);
    }
}
