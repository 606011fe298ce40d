use crate::time::format_datetime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One field's value. Cloning is cheap: strings and JSON documents are shared.
#[derive(Clone, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    /// A point in time, as milliseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// A nested JSON document (object or array).
    Json(Arc<serde_json::Value>),
}

/// The kind of a [`Value`], used in error messages and type checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Timestamp,
    Json,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Null => "null",
            ValueKind::Bool => "bool",
            ValueKind::Int => "int",
            ValueKind::Float => "float",
            ValueKind::Str => "string",
            ValueKind::Timestamp => "datetime",
            ValueKind::Json => "json",
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Null => ValueKind::Null,
            Value::Bool(_) => ValueKind::Bool,
            Value::Int(_) => ValueKind::Int,
            Value::Float(_) => ValueKind::Float,
            Value::Str(_) => ValueKind::Str,
            Value::Timestamp(_) => ValueKind::Timestamp,
            Value::Json(_) => ValueKind::Json,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as an integer; timestamps give their milliseconds.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Timestamp(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as a float; integers widen.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Maps a JSON value: integers that fit stay integers, objects and arrays stay JSON.
    pub fn from_json(value: serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.into()),
            other => Value::Json(Arc::new(other)),
        }
    }

    /// The value as JSON; timestamps become RFC 3339 strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Timestamp(ms) => serde_json::Value::String(format_datetime(*ms)),
            Value::Json(j) => (**j).clone(),
        }
    }

    /// Compares two values of comparable kinds (numbers with numbers, strings with strings...).
    /// `None` when the kinds cannot be compared.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
            (Value::Float(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            // Bitwise so that equality agrees with hashing (NaN == NaN as a key).
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits() || a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) | Value::Timestamp(i) => i.hash(state),
            // -0.0 and 0.0 are equal, so they must hash alike.
            Value::Float(f) => (if *f == 0.0 { 0.0f64 } else { *f }).to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::Json(j) => j.to_string().hash(state),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Timestamp(ms) => write!(f, "@{}", format_datetime(*ms)),
            other => write!(f, "{other}"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::Timestamp(ms) => f.write_str(&format_datetime(*ms)),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v.into())
    }
}
impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Self {
        Value::Str(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The form of a value in binary formats (checkpoints, on-disk state): the kind is explicit,
/// so a timestamp stays a timestamp and an integer an integer.
#[derive(Serialize, Deserialize)]
enum Binary<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(std::borrow::Cow<'a, str>),
    Timestamp(i64),
    Json(std::borrow::Cow<'a, str>),
}

impl Serialize for Value {
    /// In text formats (JSON, YAML): plain data, what a reader of the output expects. In
    /// binary formats: tagged with its kind, so it reads back exactly.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            let json;
            let binary = match self {
                Value::Null => Binary::Null,
                Value::Bool(b) => Binary::Bool(*b),
                Value::Int(i) => Binary::Int(*i),
                Value::Float(f) => Binary::Float(*f),
                Value::Str(s) => Binary::Str(std::borrow::Cow::Borrowed(s)),
                Value::Timestamp(t) => Binary::Timestamp(*t),
                Value::Json(j) => {
                    json = j.to_string();
                    Binary::Json(std::borrow::Cow::Borrowed(&json))
                }
            };
            return binary.serialize(serializer);
        }
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Timestamp(ms) => serializer.serialize_str(&format_datetime(*ms)),
            Value::Json(j) => j.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            return serde_json::Value::deserialize(deserializer).map(Value::from_json);
        }
        Ok(match Binary::deserialize(deserializer)? {
            Binary::Null => Value::Null,
            Binary::Bool(b) => Value::Bool(b),
            Binary::Int(i) => Value::Int(i),
            Binary::Float(f) => Value::Float(f),
            Binary::Str(s) => Value::Str(Arc::from(&*s)),
            Binary::Timestamp(t) => Value::Timestamp(t),
            Binary::Json(text) => Value::Json(Arc::new(
                serde_json::from_str(&text).map_err(serde::de::Error::custom)?,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn equal_values_hash_alike() {
        let set: HashSet<Value> = [Value::Float(0.0), Value::Float(-0.0), Value::Int(0)]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2, "0.0 and -0.0 are one key, Int(0) another");
    }

    #[test]
    fn compare_across_numeric_kinds() {
        assert_eq!(
            Value::Int(2).compare(&Value::Float(2.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::from("b").compare(&Value::from("a")),
            Some(Ordering::Greater)
        );
        assert_eq!(Value::Int(1).compare(&Value::from("1")), None);
    }

    #[test]
    fn big_unsigned_json_numbers_become_floats() {
        let v = Value::from_json(serde_json::json!(u64::MAX));
        assert_eq!(v.kind(), ValueKind::Float);
    }

    #[test]
    fn timestamps_serialize_as_rfc3339() {
        let v = Value::Timestamp(1_700_000_000_123);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "\"2023-11-14T22:13:20.123Z\""
        );
    }
}

#[cfg(test)]
mod binary_tests {
    use super::*;

    #[test]
    fn binary_formats_keep_the_kind() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-5),
            Value::Float(2.5),
            Value::from("text"),
            Value::Timestamp(1_700_000_000_000),
            Value::Json(Arc::new(serde_json::json!({"a": [1, 2]}))),
        ];
        let bytes = postcard::to_stdvec(&values).unwrap();
        let back: Vec<Value> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, values);
    }
}
