//! Weir's dynamic record model.
//!
//! Pipelines written in YAML (and every connector) carry [`Record`]s: ordered, named fields holding
//! [`Value`]s. A record's field names live in a shared [`Shape`], so a million records decoded from
//! the same kind of JSON line share one list of names instead of allocating it a million times.
//! Typed Rust pipelines do not need this crate; they stream their own structs.

mod json;
mod time;
mod value;

pub use json::{JsonDecodeError, RecordDecoder, parse_json_value};
pub use time::{format_datetime, parse_datetime};
pub use value::{Value, ValueKind};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The ordered field names of a record. Shared between records through an `Arc`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    names: Vec<Arc<str>>,
}

impl Shape {
    /// A shape with the given field names, in order.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        Shape {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Position of a field. Records are narrow, so a linear scan beats hashing.
    #[inline]
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names.iter()).finish()
    }
}

/// A dynamic record: named fields in order, each holding a [`Value`].
#[derive(Clone, Default)]
pub struct Record {
    shape: Arc<Shape>,
    values: Vec<Value>,
}

impl Record {
    pub fn new() -> Self {
        Record::default()
    }

    /// A record over an existing shape. `values` must have one entry per field name.
    pub fn with_shape(shape: Arc<Shape>, values: Vec<Value>) -> Result<Self, RecordError> {
        if shape.len() != values.len() {
            return Err(RecordError::ShapeMismatch {
                fields: shape.len(),
                values: values.len(),
            });
        }
        Ok(Record { shape, values })
    }

    /// Builds a record from `(name, value)` pairs; a repeated name keeps the last value.
    pub fn from_pairs<I, S>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (S, Value)>,
        S: AsRef<str>,
    {
        let mut record = Record::new();
        for (name, value) in pairs {
            record.set(name.as_ref(), value);
        }
        record
    }

    pub fn shape(&self) -> &Arc<Shape> {
        &self.shape
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, mutable in place (the shape does not change).
    pub fn values_mut(&mut self) -> &mut [Value] {
        &mut self.values
    }

    #[inline]
    pub fn get_index_mut(&mut self, index: usize) -> Option<&mut Value> {
        self.values.get_mut(index)
    }

    /// The shape and the values.
    pub fn into_parts(self) -> (Arc<Shape>, Vec<Value>) {
        (self.shape, self.values)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.shape.index_of(name).map(|i| &self.values[i])
    }

    #[inline]
    pub fn get_index(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.shape.index_of(name).map(move |i| &mut self.values[i])
    }

    /// Sets a field, appending it when the record does not have it yet.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.shape.index_of(name) {
            Some(i) => self.values[i] = value,
            None => {
                Arc::make_mut(&mut self.shape).names.push(Arc::from(name));
                self.values.push(value);
            }
        }
    }

    /// Removes a field and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.shape.index_of(name)?;
        Arc::make_mut(&mut self.shape).names.remove(i);
        Some(self.values.remove(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.shape
            .names
            .iter()
            .map(|n| &**n)
            .zip(self.values.iter())
    }

    /// The record as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.len());
        for (name, value) in self.iter() {
            map.insert(name.to_string(), value.to_json());
        }
        serde_json::Value::Object(map)
    }

    /// Appends the record as one line of compact JSON (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec<u8> cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }

    /// Parses one JSON object into a record.
    pub fn from_json_str(text: &str) -> Result<Self, JsonDecodeError> {
        RecordDecoder::default().decode(text)
    }

    /// A record from a JSON value; non-objects are refused.
    pub fn from_json(value: serde_json::Value) -> Result<Self, RecordError> {
        match value {
            serde_json::Value::Object(map) => Ok(Record::from_pairs(
                map.into_iter().map(|(k, v)| (k, Value::from_json(v))),
            )),
            other => Err(RecordError::NotAnObject(json_kind(&other))),
        }
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl PartialEq for Record {
    /// Records are equal when they hold the same fields with equal values, in any order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(name, v)| other.get(name) == Some(v))
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        self.write_json(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = Record;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of field names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Record, A::Error> {
                let mut record = Record::new();
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    record.set(&name, value);
                }
                Ok(record)
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// Errors building records.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("a record needs one value per field: {fields} fields but {values} values")]
    ShapeMismatch { fields: usize, values: usize },
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove_keep_field_order() {
        let mut r = Record::new();
        r.set("a", Value::Int(1));
        r.set("b", Value::from("x"));
        r.set("a", Value::Int(2));
        assert_eq!(r.get("a"), Some(&Value::Int(2)));
        assert_eq!(r.shape().names().len(), 2);
        assert_eq!(r.remove("a"), Some(Value::Int(2)));
        assert_eq!(r.get("a"), None);
        assert_eq!(r.iter().map(|(n, _)| n).collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn setting_a_field_does_not_change_records_sharing_the_shape() {
        let shape = Arc::new(Shape::new(["a"]));
        let r1 = Record::with_shape(shape.clone(), vec![Value::Int(1)]).unwrap();
        let mut r2 = r1.clone();
        r2.set("b", Value::Bool(true));
        assert_eq!(r1.len(), 1);
        assert_eq!(r2.len(), 2);
        assert_eq!(shape.len(), 1);
    }

    #[test]
    fn shape_mismatch_is_refused() {
        let shape = Arc::new(Shape::new(["a", "b"]));
        assert_eq!(
            Record::with_shape(shape, vec![Value::Null]).unwrap_err(),
            RecordError::ShapeMismatch {
                fields: 2,
                values: 1
            }
        );
    }

    #[test]
    fn json_round_trip() {
        let r = Record::from_json_str(
            r#"{"id":7,"name":"ann","score":1.5,"ok":true,"tags":[1,2],"none":null}"#,
        )
        .unwrap();
        assert_eq!(r.get("id"), Some(&Value::Int(7)));
        assert_eq!(r.get("score"), Some(&Value::Float(1.5)));
        assert_eq!(r.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(r.get("none"), Some(&Value::Null));
        let text = r.to_string();
        let back = Record::from_json_str(&text).unwrap();
        assert_eq!(back, r);
        let serde_back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_back, r);
    }

    #[test]
    fn records_compare_by_fields_not_order() {
        let a = Record::from_pairs([("x", Value::Int(1)), ("y", Value::Int(2))]);
        let b = Record::from_pairs([("y", Value::Int(2)), ("x", Value::Int(1))]);
        assert_eq!(a, b);
        assert_ne!(a, Record::from_pairs([("x", Value::Int(1))]));
    }

    #[test]
    fn non_object_json_is_refused() {
        assert_eq!(
            Record::from_json(serde_json::json!([1])).unwrap_err(),
            RecordError::NotAnObject("an array")
        );
    }
}
