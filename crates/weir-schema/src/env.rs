//! Environment variables in configuration files: `${VAR}` and `${VAR:-default}` in string
//! values, resolved while the file is deserialized.
//!
//! Lives here because both kinds of configuration file (schemas, and pipelines in
//! `weir-pipeline`, which depends on this crate) read it.
//!
//! Only string values are expanded, never keys, and never numbers or booleans: a value is
//! expanded when the type being read asks for a string (`${PORT}` where a number is expected
//! stays an error). Substitution happens on the parsed value, so a variable's text cannot
//! change the structure of the file. Errors name the variable, never its value: values may be
//! secrets.
//!
//! [`Expanding`] wraps any serde `Deserializer`; an unset variable is reported through the
//! wrapped deserializer's own error type, so YAML errors keep their line and key path.

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Looks a variable up: `Ok(None)` when it is not set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, String>;

/// The process environment, as a [`Lookup`].
pub fn process_env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "the environment variable `{name}` is not valid UTF-8"
        )),
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in `text`; `$${` is a literal `${`. The default is
/// used when the variable is unset or empty (as in the shell). Variable names are letters,
/// digits and `_`, not starting with a digit.
pub fn expand<'t>(text: &'t str, lookup: Lookup<'_>) -> Result<Cow<'t, str>, String> {
    if !text.contains("${") {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        // `$${` escapes one `${`.
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let body_start = at + 2;
        let Some(len) = rest[body_start..].find('}') else {
            return Err(format!(
                "`{}` has no closing `}}` (write `$${{` for a literal `${{`)",
                shorten(&rest[at..])
            ));
        };
        let body = &rest[body_start..body_start + len];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_variable_name(name) {
            return Err(format!(
                "`${{{}}}` is not a variable reference: names are letters, digits and `_`, not starting with a digit (write `$${{` for a literal `${{`)",
                shorten(body)
            ));
        }
        match (lookup(name)?, default) {
            (Some(value), None) => out.push_str(&value),
            (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
            (_, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "the environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                ));
            }
        }
        rest = &rest[body_start + len + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Deserializes `T` from `deserializer`, expanding variables in string values.
pub fn deserialize<'de, T, D>(deserializer: D, lookup: Lookup<'_>) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(Expanding {
        inner: deserializer,
        lookup,
    })
}

/// A deserializer (or visitor, map, sequence, enum access, seed) that expands variables in the
/// string values passing through it.
pub struct Expanding<'a, X> {
    pub inner: X,
    pub lookup: Lookup<'a>,
}

impl<X> fmt::Debug for Expanding<'_, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Expanding")
    }
}

impl<'a, X> Expanding<'a, X> {
    fn wrap<Y>(&self, inner: Y) -> Expanding<'a, Y> {
        Expanding {
            inner,
            lookup: self.lookup,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                let visitor = self.wrap(visitor);
                self.inner.$method(visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Expanding<'_, D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Expanding<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match expand(v, self.lookup).map_err(E::custom)? {
            Cow::Borrowed(_) => self.inner.visit_str(v),
            Cow::Owned(expanded) => self.inner.visit_string(expanded),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        match expand(v, self.lookup).map_err(E::custom)? {
            Cow::Borrowed(_) => self.inner.visit_borrowed_str(v),
            Cow::Owned(expanded) => self.inner.visit_string(expanded),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        match expand(&v, self.lookup).map_err(E::custom)? {
            Cow::Borrowed(_) => self.inner.visit_string(v),
            Cow::Owned(expanded) => self.inner.visit_string(expanded),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.inner.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.inner.visit_i64(v)
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        self.inner.visit_i128(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.inner.visit_u64(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        self.inner.visit_u128(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.inner.visit_f64(v)
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Self::Value, E> {
        self.inner.visit_char(v)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        self.inner.visit_bytes(v)
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.inner.visit_borrowed_bytes(v)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        self.inner.visit_byte_buf(v)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Expanding<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.deserialize(d)
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Expanding<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Expanding<'_, A> {
    type Error = A::Error;

    /// Keys are not expanded.
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Expanding<'a, A> {
    type Error = A::Error;
    type Variant = Expanding<'a, A::Variant>;

    /// The variant's name is a key: not expanded.
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let lookup = self.lookup;
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Expanding {
                inner: variant,
                lookup,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Expanding<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn vars(name: &str) -> Result<Option<String>, String> {
        Ok(match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        })
    }

    #[test]
    fn expands_references_defaults_and_escapes() {
        let e = |t: &str| expand(t, &vars).map(|c| c.into_owned());
        assert_eq!(e("plain").unwrap(), "plain");
        assert_eq!(e("http://${HOST}:8123").unwrap(), "http://db.local:8123");
        assert_eq!(e("${MISSING:-x.y}").unwrap(), "x.y");
        assert_eq!(e("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(e("${EMPTY}").unwrap(), "");
        assert_eq!(e("${HOST:-other}").unwrap(), "db.local");
        assert_eq!(e("$${HOST} ${HOST}").unwrap(), "${HOST} db.local");
        assert_eq!(e("a $ b {c}").unwrap(), "a $ b {c}");
    }

    #[test]
    fn refuses_unset_and_malformed_references_naming_the_variable() {
        let e = |t: &str| expand(t, &vars).unwrap_err();
        assert!(e("${MISSING}").contains("`MISSING` is not set"));
        assert!(e("x ${HOST").contains("no closing"));
        assert!(e("${1X}").contains("not a variable reference"));
        assert!(e("${}").contains("not a variable reference"));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        url: String,
        count: u32,
        tags: Vec<String>,
        labels: BTreeMap<String, String>,
        note: Option<String>,
    }

    #[test]
    fn expands_string_values_of_yaml_but_not_keys_and_keeps_the_line() {
        let text = "url: http://${HOST}\ncount: 3\ntags: [\"${HOST}\", b]\nlabels: { \"${HOST}\": \"${MISSING:-d}\" }\nnote: ${HOST}\n";
        let doc: Doc = deserialize(serde_yaml::Deserializer::from_str(text), &vars).unwrap();
        assert_eq!(doc.url, "http://db.local");
        assert_eq!(doc.tags, ["db.local", "b"]);
        assert_eq!(doc.labels.get("${HOST}").map(String::as_str), Some("d"));
        assert_eq!(doc.note.as_deref(), Some("db.local"));

        let text = "url: x\ncount: 3\ntags: []\nlabels: {}\nnote: \"${NOPE}\"\n";
        let err =
            deserialize::<Doc, _>(serde_yaml::Deserializer::from_str(text), &vars).unwrap_err();
        assert_eq!(err.location().map(|l| l.line()), Some(5));
        assert!(
            err.to_string()
                .starts_with("note: the environment variable `NOPE`")
        );
    }
}
