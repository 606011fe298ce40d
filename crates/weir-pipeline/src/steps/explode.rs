//! `explode`: turns one record into one record per element of an array field (as SQL's
//! `UNNEST`), or per piece of a string field split on a separator.
//!
//! ```yaml
//! - explode: tags                                   # an array field; each element replaces it
//! - explode: { field: line, split: " ", as: word }  # a string split on " ", into `word`
//! ```
//!
//! Each output record is the input record with the field replaced by one element (or, with
//! `as`, the element in the field `as` — replacing a field of that name — and the exploded
//! field gone). An empty array gives no record. A record whose field is missing, null or not
//! an array (not a string, with `split`) fails the step: a dead letter, or the job's error.

use crate::steps::{Routed, reject};
use crate::{Pipeline, PipelineError};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::sync::{Arc, OnceLock};
use weir_core::{Operator, OperatorContext, OperatorError};
use weir_expr::FieldTypes;
use weir_types::{Record, Shape, Value, ValueKind};

/// The YAML of an `explode` step: `explode: tags` or `explode: { field, split, as }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplodeSpec {
    /// The field to explode.
    pub field: String,
    /// Split a string field on this separator instead of exploding an array.
    pub split: Option<String>,
    /// Put each element into this field (the exploded field is dropped).
    pub into: Option<String>,
}

impl<'de> Deserialize<'de> for ExplodeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExplodeVisitor)
    }
}

struct ExplodeVisitor;

impl<'de> Visitor<'de> for ExplodeVisitor {
    type Value = ExplodeSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "the name of an array field (`explode: tags`) or `{ field: line, split: \" \", as: word }`",
        )
    }

    fn visit_str<E: de::Error>(self, field: &str) -> Result<ExplodeSpec, E> {
        Ok(ExplodeSpec {
            field: field.to_string(),
            split: None,
            into: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExplodeSpec, A::Error> {
        let (mut field, mut split, mut into) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "field" => &mut field,
                "split" => &mut split,
                "as" => &mut into,
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown option `{other}` of explode; its options are `field`, `split` and `as`"
                    )));
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format_args!(
                    "{}{key}` (a key may appear once)",
                    weir_connectors::unique::DUPLICATE_KEY
                )));
            }
            *slot = Some(map.next_value::<String>()?);
        }
        Ok(ExplodeSpec {
            field: field.ok_or_else(|| de::Error::missing_field("field"))?,
            split,
            into,
        })
    }
}

impl ExplodeSpec {
    /// Checks the step against the fields known at `stage` and returns its operator's plan
    /// and the fields after it.
    pub(crate) fn plan(
        &self,
        p: &Pipeline,
        stage: &str,
        fields: &FieldTypes,
    ) -> Result<(Explode, FieldTypes), PipelineError> {
        if self.field.is_empty() {
            return Err(p.error_at(&format!("{stage}.field"), "must name a field"));
        }
        if self.split.as_deref() == Some("") {
            return Err(p.error_at(
                &format!("{stage}.split"),
                "must not be empty: give the separator, e.g. `split: \" \"`",
            ));
        }
        if self.into.as_deref() == Some("") {
            return Err(p.error_at(&format!("{stage}.as"), "must name a field"));
        }
        crate::build::check_known(p, stage, fields, std::iter::once(&self.field))?;
        let kind = fields.get(&self.field).flatten();
        match (&self.split, kind) {
            (Some(_), Some(k)) if k != ValueKind::Str => {
                return Err(p.error_at(
                    stage,
                    format!(
                        "`split` needs a string field; `{}` is {}",
                        self.field,
                        k.name()
                    ),
                ));
            }
            (None, Some(k)) if k != ValueKind::Json => {
                return Err(p.error_at(
                    stage,
                    format!(
                        "`{}` is {}, not an array: explode takes an array field, or a string field with `split`",
                        self.field,
                        k.name()
                    ),
                ));
            }
            _ => {}
        }
        let into = self.into.clone().unwrap_or_else(|| self.field.clone());
        let element = self.split.as_ref().map(|_| ValueKind::Str);
        let mut after = FieldTypes::default();
        if !fields.is_dynamic() {
            for name in fields.names() {
                if name == self.field {
                    after.insert(&into, element);
                } else if name == into {
                    // `as` replaces a field of that name: it takes the element's place.
                } else {
                    after.insert(name, fields.get(name).flatten());
                }
            }
        }
        let op = Explode {
            field: self.field.as_str().into(),
            into: into.as_str().into(),
            split: self.split.as_deref().map(Arc::from),
            plans: Default::default(),
        };
        Ok((op, after))
    }
}

/// How many input shapes an explode remembers; records of further shapes take a slower path.
const SLOTS: usize = 8;

/// For one input shape: the output shape, the field's position in the input, and where each
/// output value comes from (`None`: the element).
struct ShapePlan {
    input: Arc<Shape>,
    output: Arc<Shape>,
    field: Option<usize>,
    sources: Box<[Option<usize>]>,
}

/// The operator of an `explode` step (shared, read-only, by its instances).
pub(crate) struct Explode {
    field: Arc<str>,
    into: Arc<str>,
    split: Option<Arc<str>>,
    plans: [OnceLock<ShapePlan>; SLOTS],
}

impl Explode {
    fn make_plan(&self, input: &Arc<Shape>) -> ShapePlan {
        let field = input.index_of(&self.field);
        let mut names: Vec<Arc<str>> = Vec::with_capacity(input.len() + 1);
        let mut sources: Vec<Option<usize>> = Vec::with_capacity(input.len() + 1);
        for (i, name) in input.names().iter().enumerate() {
            if Some(i) == field {
                names.push(self.into.clone());
                sources.push(None);
            } else if *name != self.into {
                names.push(name.clone());
                sources.push(Some(i));
            }
        }
        ShapePlan {
            input: input.clone(),
            output: Arc::new(Shape::new(names)),
            field,
            sources: sources.into(),
        }
    }

    fn plan(&self, input: &Arc<Shape>) -> Option<&ShapePlan> {
        for slot in &self.plans {
            let plan = match slot.get() {
                Some(plan) => plan,
                None => slot.get_or_init(|| self.make_plan(input)),
            };
            if Arc::ptr_eq(&plan.input, input) {
                return Some(plan);
            }
        }
        None
    }

    /// Appends one record per element of `record`'s field to `out`, or says why it cannot.
    fn explode(&self, record: Record, out: &mut Vec<Routed>) -> Result<(), (String, Record)> {
        let uncached;
        let plan = match self.plan(record.shape()) {
            Some(plan) => plan,
            None => {
                uncached = self.make_plan(record.shape());
                &uncached
            }
        };
        let value = match plan.field.map(|i| &record.values()[i]) {
            None => {
                let error = format!("the field `{}` is missing", self.field);
                return Err((error, record));
            }
            Some(Value::Null) => {
                let error = format!("the field `{}` is null", self.field);
                return Err((error, record));
            }
            Some(value) => value,
        };
        let emit = |element: Value, out: &mut Vec<Routed>| {
            let values = plan
                .sources
                .iter()
                .map(|s| match s {
                    Some(i) => record.values()[*i].clone(),
                    None => element.clone(),
                })
                .collect();
            // The plan has one source per output name.
            if let Ok(r) = Record::with_shape(plan.output.clone(), values) {
                out.push(Ok(r));
            }
        };
        match (&self.split, value) {
            (Some(sep), Value::Str(text)) => {
                for piece in text.split(&**sep) {
                    emit(Value::Str(Arc::from(piece)), out);
                }
            }
            (None, Value::Json(json)) if json.is_array() => {
                for element in json.as_array().into_iter().flatten() {
                    emit(Value::from_json(element.clone()), out);
                }
            }
            (Some(_), other) => {
                let error = format!(
                    "`split` needs a string, the field `{}` holds {}",
                    self.field,
                    describe(other)
                );
                return Err((error, record));
            }
            (None, other) => {
                let error = format!(
                    "the field `{}` holds {}, not an array{}",
                    self.field,
                    describe(other),
                    if matches!(other, Value::Str(_)) {
                        " (give `split` to split a string)"
                    } else {
                        ""
                    }
                );
                return Err((error, record));
            }
        }
        Ok(())
    }
}

/// What a value is, for errors.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Json(json) if json.is_object() => "an object",
        Value::Json(json) if json.is_array() => "an array",
        other => match other.kind() {
            ValueKind::Null => "null",
            ValueKind::Bool => "a bool",
            ValueKind::Int => "an int",
            ValueKind::Float => "a float",
            ValueKind::Str => "a string",
            ValueKind::Timestamp => "a datetime",
            ValueKind::Json => "JSON",
        },
    }
}

/// An `explode` step's operator instance.
pub(crate) struct ExplodeOp {
    pub(crate) explode: Arc<Explode>,
    pub(crate) stage: Arc<str>,
    pub(crate) route_errors: bool,
}

impl Operator<Record, Routed> for ExplodeOp {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Routed>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for (i, record) in input.drain(..).enumerate() {
            if let Err((error, record)) = self.explode.explode(record, out) {
                let position = ctx.position() + i as u64;
                reject(
                    self.route_errors,
                    &self.stage,
                    error,
                    &record,
                    position,
                    ctx,
                    out,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explode(field: &str, split: Option<&str>, into: Option<&str>) -> Explode {
        Explode {
            field: field.into(),
            into: into.unwrap_or(field).into(),
            split: split.map(Arc::from),
            plans: Default::default(),
        }
    }

    fn run(e: &Explode, record: Record) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        e.explode(record, &mut out).map_err(|(m, _)| m)?;
        Ok(out.into_iter().map(|r| r.unwrap()).collect())
    }

    #[test]
    fn splits_a_string_into_a_new_field_in_the_old_ones_place() {
        let r = Record::from_pairs([
            ("id", Value::Int(1)),
            ("line", Value::from("a b")),
            ("n", Value::Int(2)),
        ]);
        let out = run(&explode("line", Some(" "), Some("word")), r).unwrap();
        assert_eq!(out.len(), 2);
        let names: Vec<&str> = out[0].iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["id", "word", "n"]);
        assert_eq!(out[1].get("word"), Some(&Value::from("b")));
        assert_eq!(out[1].get("n"), Some(&Value::Int(2)));
    }

    #[test]
    fn explodes_an_array_and_refuses_other_values() {
        let json: serde_json::Value = serde_json::json!(["x", 2]);
        let r = Record::from_pairs([("tags", Value::Json(Arc::new(json)))]);
        let out = run(&explode("tags", None, None), r).unwrap();
        assert_eq!(out[0].get("tags"), Some(&Value::from("x")));
        assert_eq!(out[1].get("tags"), Some(&Value::Int(2)));
        let empty = Record::from_pairs([("tags", Value::Json(Arc::new(serde_json::json!([]))))]);
        assert!(run(&explode("tags", None, None), empty).unwrap().is_empty());
        let text = Record::from_pairs([("tags", Value::from("a"))]);
        let err = run(&explode("tags", None, None), text).unwrap_err();
        assert!(err.contains("holds a string, not an array"), "{err}");
        let missing = Record::from_pairs([("other", Value::Int(1))]);
        let err = run(&explode("tags", None, None), missing).unwrap_err();
        assert_eq!(err, "the field `tags` is missing");
    }

    #[test]
    fn as_replaces_a_field_of_that_name() {
        let r = Record::from_pairs([("w", Value::Int(0)), ("line", Value::from("a"))]);
        let out = run(&explode("line", Some(" "), Some("w")), r).unwrap();
        let names: Vec<&str> = out[0].iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["w"]);
        assert_eq!(out[0].get("w"), Some(&Value::from("a")));
    }
}
