use crate::{Record, Shape, Value};
use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;

/// Why a JSON line could not become a record. `column` is 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSON at column {column}: {message}")]
pub struct JsonDecodeError {
    pub column: usize,
    pub message: String,
}

/// Decodes JSON objects into [`Record`]s, reusing the field-name list of the previous record
/// when the next one has the same fields in the same order (the common case for a stream).
#[derive(Default)]
pub struct RecordDecoder {
    last_shape: Arc<Shape>,
    names: Vec<Arc<str>>,
    values: Vec<Value>,
}

impl RecordDecoder {
    pub fn decode(&mut self, text: &str) -> Result<Record, JsonDecodeError> {
        self.names.clear();
        self.values.clear();
        let mut de = serde_json::Deserializer::from_str(text);
        let result = de
            .deserialize_map(ObjectVisitor {
                known: &self.last_shape,
                names: &mut self.names,
                values: &mut self.values,
            })
            .and_then(|same_shape| de.end().map(|_| same_shape));
        let same_shape = result.map_err(|e| JsonDecodeError {
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        if !same_shape {
            self.last_shape = Arc::new(Shape {
                names: std::mem::take(&mut self.names),
            });
        }
        Ok(Record {
            shape: self.last_shape.clone(),
            values: std::mem::take(&mut self.values),
        })
    }
}

/// serde_json appends " at line 1 column 7"; we report the column ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

struct ObjectVisitor<'a> {
    known: &'a Shape,
    names: &'a mut Vec<Arc<str>>,
    values: &'a mut Vec<Value>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    /// Whether the object's field names equal `known`'s, in order.
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut same = true;
        let mut i = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = map.next_value_seed(ValueSeed)?;
            if same && self.known.names.get(i).is_some_and(|n| **n == *key) {
                // Still matching the previous shape: no need to keep the name.
            } else {
                if same {
                    // First divergence: materialise the names seen so far.
                    self.names.extend(self.known.names[..i].iter().cloned());
                    same = false;
                }
                if let Some(pos) = self.names.iter().position(|n| **n == *key) {
                    // A repeated key keeps the last value, as JSON parsers usually do.
                    self.values[pos] = value;
                    i += 1;
                    continue;
                }
                self.names.push(Arc::from(&*key));
            }
            self.values.push(value);
            i += 1;
        }
        if same && i != self.known.names.len() {
            self.names.extend(self.known.names[..i].iter().cloned());
            same = false;
        }
        Ok(same)
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] straight from the parser, without an intermediate `serde_json::Value`.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Arc::from(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let json = serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Value::Json(Arc::new(json)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let json = serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Value::Json(Arc::new(json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_the_same_kind_share_their_shape() {
        let mut d = RecordDecoder::default();
        let a = d.decode(r#"{"k":1,"v":"x"}"#).unwrap();
        let b = d.decode(r#"{"k":2,"v":"y"}"#).unwrap();
        assert!(Arc::ptr_eq(a.shape(), b.shape()));
        let c = d.decode(r#"{"k":3}"#).unwrap();
        assert_eq!(c.shape().names().len(), 1);
        let e = d.decode(r#"{"v":"z","k":4}"#).unwrap();
        assert_eq!(e.get("k"), Some(&Value::Int(4)));
        assert_eq!(e.get("v"), Some(&Value::from("z")));
        let f = d.decode(r#"{"k":5,"v":"w","extra":[1]}"#).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("extra").unwrap().kind(), crate::ValueKind::Json);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let mut d = RecordDecoder::default();
        let r = d.decode(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("a"), Some(&Value::Int(3)));
    }

    #[test]
    fn errors_name_the_column() {
        let mut d = RecordDecoder::default();
        let e = d.decode(r#"{"a":1,"b":}"#).unwrap_err();
        assert_eq!(e.column, 12);
        assert!(e.message.contains("expected value"), "{e}");
        let e = d.decode("[1,2]").unwrap_err();
        assert!(e.message.contains("a JSON object"), "{e}");
        let e = d.decode(r#"{"a":1} trailing"#).unwrap_err();
        assert!(e.message.contains("trailing"), "{e}");
    }
}
