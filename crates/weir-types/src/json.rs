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
        let mut wide = false;
        let mut de = serde_json::Deserializer::from_str(text);
        let result = de
            .deserialize_map(ObjectVisitor {
                known: &self.last_shape,
                names: &mut self.names,
                values: &mut self.values,
                wide: &mut wide,
            })
            .and_then(|same_shape| de.end().map(|_| same_shape));
        let same_shape = result.map_err(decode_error)?;
        if wide {
            check_integers(text)?;
        }
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

/// Parses one JSON value (any kind) as [`RecordDecoder`] parses a field: integers beyond the
/// 64-bit range are refused, never rounded.
pub fn parse_json_value(text: &str) -> Result<Value, JsonDecodeError> {
    let mut wide = false;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed { wide: &mut wide }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
        .map_err(decode_error)?;
    if wide {
        check_integers(text)?;
    }
    Ok(value)
}

fn decode_error(e: serde_json::Error) -> JsonDecodeError {
    JsonDecodeError {
        column: e.column(),
        message: strip_position(&e.to_string()),
    }
}

/// The smallest magnitude at which serde_json may have turned an integer literal into a float:
/// it keeps every integer in `i64::MIN..=u64::MAX` exact and parses larger ones as `f64`.
const WIDE: f64 = 9_223_372_036_854_775_808.0; // 2^63

/// Whether a float the parser produced may stand for an integer literal it could not hold.
fn maybe_wide_integer(v: f64) -> bool {
    v.abs() >= WIDE && v.fract() == 0.0
}

/// Refuses the first integer literal in `text` (valid JSON) that is outside `i64::MIN..=u64::MAX`:
/// serde_json would have rounded it to a float. Only run when the parse saw such a float, so
/// the common path never scans twice.
fn check_integers(text: &str) -> Result<(), JsonDecodeError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Err(JsonDecodeError {
                        column: start + 1,
                        message: format!(
                            "integer {literal} is outside the 64-bit range; it is not rounded to a float"
                        ),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
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
    /// Set when a number may be an integer literal too wide for 64 bits (see [`check_integers`]).
    wide: &'a mut bool,
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
            let value = map.next_value_seed(ValueSeed {
                wide: &mut *self.wide,
            })?;
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

struct ValueSeed<'a> {
    wide: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { wide: self.wide })
    }
}

/// Builds a [`Value`] straight from the parser, without an intermediate `serde_json::Value`.
struct ValueVisitor<'a> {
    wide: &'a mut bool,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
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
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        // A field's integer is an i64; as a float it would lose digits.
        i64::try_from(v).map(Value::Int).map_err(|_| {
            E::custom(format_args!(
                "integer {v} is outside the range of a 64-bit signed integer ({}..={}); it is not rounded to a float",
                i64::MIN,
                i64::MAX
            ))
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        if maybe_wide_integer(v) {
            *self.wide = true;
        }
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Arc::from(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let json = JsonVisitor { wide: self.wide }.visit_map(map)?;
        Ok(Value::Json(Arc::new(json)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let json = JsonVisitor { wide: self.wide }.visit_seq(seq)?;
        Ok(Value::Json(Arc::new(json)))
    }
}

/// Builds a nested `serde_json::Value` as serde_json's own visitor does, noting floats that
/// may be rounded integers.
struct JsonVisitor<'a> {
    wide: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for JsonVisitor<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonVisitor<'_> {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<serde_json::Value, E> {
        if maybe_wide_integer(v) {
            *self.wide = true;
        }
        Ok(serde_json::Number::from_f64(v)
            .map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(JsonVisitor {
            wide: &mut *self.wide,
        })? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(JsonVisitor {
                wide: &mut *self.wide,
            })?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
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

    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        let mut d = RecordDecoder::default();
        let e = d
            .decode(r#"{"id":123456789012345678901234567890}"#)
            .unwrap_err();
        assert_eq!(e.column, 7, "{e}");
        assert!(e.message.contains("123456789012345678901234567890"), "{e}");
        assert!(e.message.contains("not rounded"), "{e}");
        // Beyond i64 but within u64: a field is an i64, so refused as well.
        let e = d.decode(r#"{"id":18446744073709551615}"#).unwrap_err();
        assert!(e.message.contains("18446744073709551615"), "{e}");
        let e = d.decode(r#"{"id":-9223372036854775809}"#).unwrap_err();
        assert!(e.message.contains("-9223372036854775809"), "{e}");
        // Nested: serde_json keeps u64 exact, anything wider is refused.
        let e = d
            .decode(r#"{"a":{"b":[1,-123456789012345678901234567890]}}"#)
            .unwrap_err();
        assert!(e.message.contains("-123456789012345678901234567890"), "{e}");
        let r = d
            .decode(r#"{"a":[18446744073709551615],"min":-9223372036854775808}"#)
            .unwrap();
        assert_eq!(r.get("a").unwrap().to_string(), "[18446744073709551615]");
        assert_eq!(r.get("min"), Some(&Value::Int(i64::MIN)));
    }

    #[test]
    fn wide_floats_and_digit_strings_stay_what_they_are() {
        let mut d = RecordDecoder::default();
        let r = d
            .decode(r#"{"s":"a\"99999999999999999999999","f":1e30,"g":12345678901234567890123.0}"#)
            .unwrap();
        assert_eq!(r.get("s"), Some(&Value::from("a\"99999999999999999999999")));
        assert_eq!(r.get("f"), Some(&Value::Float(1e30)));
        assert_eq!(r.get("g"), Some(&Value::Float(12345678901234567890123.0)));
        let r = d.decode(r#"{"n":{"x":[1e19]}}"#).unwrap();
        assert_eq!(r.get("n").unwrap().to_string(), r#"{"x":[1e+19]}"#);
    }

    #[test]
    fn single_values_parse_like_fields() {
        assert_eq!(parse_json_value("7").unwrap(), Value::Int(7));
        assert_eq!(
            parse_json_value(r#"{"a":[1]}"#).unwrap().kind(),
            crate::ValueKind::Json
        );
        assert!(parse_json_value("123456789012345678901234567890").is_err());
        assert!(parse_json_value("[1] x").is_err());
    }
}
