//! Maps whose keys must be unique. YAML itself refuses duplicate keys, but the YAML parser
//! under serde hands every entry through, and a plain map keeps the last: `map: { a: "1",
//! a: "2" }` would silently become one field (or, in records, a JSON object with the key
//! twice). These are refused while parsing; the pipeline loader then names the lines of both (see `weir-pipeline`).

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The start of the message of a duplicate-key error; the pipeline loader adds the
/// lines.
pub const DUPLICATE_KEY: &str = "duplicate key `";

/// `#[serde(deserialize_with = "unique::keys")]`: an ordered map refusing duplicate keys.
pub fn keys<'de, D, V>(deserializer: D) -> Result<IndexMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(UniqueKeys(PhantomData))
}

/// Like [`keys`], for an optional map.
pub fn optional_keys<'de, D, V>(deserializer: D) -> Result<Option<IndexMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    keys(deserializer).map(Some)
}

struct UniqueKeys<V>(PhantomData<fn() -> V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
    type Value = IndexMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{DUPLICATE_KEY}{key}` (a key may appear once)"
                )));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// The lines of the first two occurrences of `key` as a map key at or after line `from`
/// (1-based), in block (`key:`) or flow (`{ key: ...`) style.
pub fn key_lines(text: &str, from: usize, key: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let mut rest = line;
        // Every place a key can start: the line's content, after `{`, `,` or `- `.
        while let Some(at) = rest.find(|c: char| !matches!(c, ' ' | '\t' | '{' | ',' | '-')) {
            let candidate = &rest[at..];
            if starts_with_key(candidate, key) {
                lines.push(i + 1);
                if lines.len() == 2 {
                    return lines;
                }
            }
            match candidate.find([',', '{']) {
                Some(next) => rest = &candidate[next + 1..],
                None => break,
            }
        }
    }
    lines
}

fn starts_with_key(text: &str, key: &str) -> bool {
    let after = ["\"", "'", ""].iter().find_map(|q| {
        text.strip_prefix(q)
            .and_then(|t| t.strip_prefix(key))
            .and_then(|t| t.strip_prefix(q))
    });
    after.is_some_and(|rest| rest.trim_start().starts_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_lines_of_a_duplicate_key() {
        let doc = "steps:\n  - map:\n      total: \"a\"\n      tag: \"b\"\n      total: \"c\"\n";
        assert_eq!(key_lines(doc, 2, "total"), [3, 5]);
        let flow = "steps:\n  - map: { total: a, \"total\": b }\n";
        assert_eq!(key_lines(flow, 2, "total"), [2, 2]);
    }
}
