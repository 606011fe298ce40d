//! Turning stream entries (Redis replies) into [`Record`]s.

use super::StreamId;
use redis::Value as RedisValue;
use std::sync::Arc;
use weir_types::{Record, RecordDecoder, Shape, Value};

/// How a stream entry's fields hold a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldEncoding {
    /// One field holds the whole record as a JSON object (what Weir's writer and producer
    /// write). Other fields of the entry are ignored.
    Json { field: String },
    /// Every field/value pair of the entry is a field of the record; values stay strings.
    Flat,
}

impl Default for FieldEncoding {
    /// `Json` in the field `data`.
    fn default() -> Self {
        FieldEncoding::Json {
            field: "data".to_string(),
        }
    }
}

/// A decoded stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub record: Record,
}

/// An entry that could not be decoded. It stays pending like any other entry: route it to a
/// dead-letter output and acknowledge it with the rest, or it will be delivered again.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidEntry {
    pub id: StreamId,
    /// What was wrong, naming the field.
    pub reason: String,
    /// The entry's fields as `name=value` pairs (lossy UTF-8), for a dead-letter record.
    pub raw: String,
}

/// What one read returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamBatch {
    /// Decoded entries, in stream order.
    pub entries: Vec<StreamEntry>,
    /// Entries whose fields could not be decoded.
    pub invalid: Vec<InvalidEntry>,
    /// Pending ids whose entry no longer exists in the stream (deleted or trimmed before it
    /// was processed). They have been removed from the pending list; count them as lost.
    pub deleted: Vec<StreamId>,
}

impl StreamBatch {
    /// Nothing was returned: no entry, valid, invalid or deleted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of ids returned: valid, invalid and deleted entries.
    pub fn len(&self) -> usize {
        self.entries.len() + self.invalid.len() + self.deleted.len()
    }

    /// The ids to acknowledge once this batch is durably processed: valid and invalid entries.
    pub fn ids(&self) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .entries
            .iter()
            .map(|e| e.id)
            .chain(self.invalid.iter().map(|e| e.id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The largest id returned (valid, invalid or deleted), if any: where to continue.
    pub fn last_id(&self) -> Option<StreamId> {
        let a = self.entries.last().map(|e| e.id);
        let b = self.invalid.last().map(|e| e.id);
        let c = self.deleted.iter().max().copied();
        a.max(b).max(c)
    }
}

/// Decodes entries, reusing the field-name list across entries of the same shape.
pub(crate) struct EntryDecoder {
    encoding: FieldEncoding,
    json: RecordDecoder,
    flat_shape: Arc<Shape>,
}

impl EntryDecoder {
    pub(crate) fn new(encoding: FieldEncoding) -> Self {
        EntryDecoder {
            encoding,
            json: RecordDecoder::default(),
            flat_shape: Arc::new(Shape::default()),
        }
    }

    /// Appends the entries of an entry list (`[[id, [f, v, ...]], ...]`) to `batch`.
    /// Entries with a nil field list (deleted while pending) go to `batch.deleted`.
    pub(crate) fn push_entries(
        &mut self,
        entries: RedisValue,
        batch: &mut StreamBatch,
    ) -> Result<(), String> {
        let entries = match entries {
            RedisValue::Array(items) => items,
            RedisValue::Nil => return Ok(()),
            other => return Err(format!("expected a list of entries, found {other:?}")),
        };
        batch.entries.reserve(entries.len());
        for entry in entries {
            let RedisValue::Array(mut parts) = entry else {
                return Err(format!("expected an [id, fields] pair, found {entry:?}"));
            };
            if parts.len() != 2 {
                return Err(format!(
                    "expected an [id, fields] pair, found {} elements",
                    parts.len()
                ));
            }
            let fields = parts.pop().unwrap_or(RedisValue::Nil);
            let id = parse_id(&parts[0])?;
            match fields {
                RedisValue::Nil => batch.deleted.push(id),
                RedisValue::Array(fields) => match self.decode(&fields) {
                    Ok(record) => batch.entries.push(StreamEntry { id, record }),
                    Err(reason) => batch.invalid.push(InvalidEntry {
                        id,
                        reason,
                        raw: render_fields(&fields),
                    }),
                },
                RedisValue::Map(pairs) => {
                    let flat: Vec<RedisValue> =
                        pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                    match self.decode(&flat) {
                        Ok(record) => batch.entries.push(StreamEntry { id, record }),
                        Err(reason) => batch.invalid.push(InvalidEntry {
                            id,
                            reason,
                            raw: render_fields(&flat),
                        }),
                    }
                }
                other => {
                    return Err(format!(
                        "expected the fields of entry {id}, found {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Decodes one entry's flat `[field, value, field, value, ...]` list.
    pub(crate) fn decode(&mut self, fields: &[RedisValue]) -> Result<Record, String> {
        if !fields.len().is_multiple_of(2) {
            return Err(format!(
                "entry has an odd number ({}) of field names and values",
                fields.len()
            ));
        }
        match &self.encoding {
            FieldEncoding::Json { field } => {
                let mut data = None;
                for pair in fields.chunks_exact(2) {
                    if bytes_of(&pair[0]) == Some(field.as_bytes()) {
                        data = Some(&pair[1]);
                    }
                }
                let Some(data) = data else {
                    return Err(format!(
                        "entry has no field `{field}` holding a JSON record"
                    ));
                };
                let bytes = bytes_of(data)
                    .ok_or_else(|| format!("field `{field}` is not a string: {data:?}"))?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| format!("field `{field}` is not UTF-8: {e}"))?;
                self.json
                    .decode(text)
                    .map_err(|e| format!("field `{field}`: {e}"))
            }
            FieldEncoding::Flat => self.decode_flat(fields),
        }
    }

    fn decode_flat(&mut self, fields: &[RedisValue]) -> Result<Record, String> {
        let n = fields.len() / 2;
        let mut values = Vec::with_capacity(n);
        let mut same_shape = self.flat_shape.len() == n;
        for (i, pair) in fields.chunks_exact(2).enumerate() {
            let name = utf8_of(&pair[0]).map_err(|e| format!("field name #{}: {e}", i + 1))?;
            let value = utf8_of(&pair[1]).map_err(|e| format!("field `{name}`: {e}"))?;
            if same_shape && &*self.flat_shape.names()[i] != name {
                same_shape = false;
            }
            values.push(Value::Str(Arc::from(value)));
        }
        if !same_shape {
            let mut names: Vec<Arc<str>> = Vec::with_capacity(n);
            for pair in fields.chunks_exact(2) {
                let name = utf8_of(&pair[0])?;
                if names.iter().any(|existing| &**existing == name) {
                    return Err(format!("field `{name}` appears twice"));
                }
                names.push(Arc::from(name));
            }
            self.flat_shape = Arc::new(Shape::new(names));
        }
        Record::with_shape(self.flat_shape.clone(), values).map_err(|e| e.to_string())
    }
}

pub(crate) fn bytes_of(value: &RedisValue) -> Option<&[u8]> {
    match value {
        RedisValue::BulkString(b) => Some(b),
        RedisValue::SimpleString(s) => Some(s.as_bytes()),
        RedisValue::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn utf8_of(value: &RedisValue) -> Result<&str, String> {
    let bytes = bytes_of(value).ok_or_else(|| format!("not a string: {value:?}"))?;
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

pub(crate) fn parse_id(value: &RedisValue) -> Result<StreamId, String> {
    bytes_of(value)
        .and_then(StreamId::from_bytes)
        .ok_or_else(|| format!("expected a stream id, found {value:?}"))
}

fn render_fields(fields: &[RedisValue]) -> String {
    let mut out = String::new();
    for pair in fields.chunks(2) {
        if !out.is_empty() {
            out.push(' ');
        }
        for (i, v) in pair.iter().enumerate() {
            if i == 1 {
                out.push('=');
            }
            match bytes_of(v) {
                Some(b) => out.push_str(&String::from_utf8_lossy(b)),
                None => out.push_str(&format!("{v:?}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> RedisValue {
        RedisValue::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> RedisValue {
        RedisValue::Array(vec![
            bulk(id),
            RedisValue::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn json_entries_decode_and_share_shape() {
        let mut d = EntryDecoder::new(FieldEncoding::default());
        let mut batch = StreamBatch::default();
        let list = RedisValue::Array(vec![
            entry("1-0", &["data", r#"{"k":1,"v":"a"}"#]),
            entry("1-1", &["src", "web", "data", r#"{"k":2,"v":"b"}"#]),
            entry("1-2", &["data", "not json"]),
            entry("1-3", &["other", "x"]),
            RedisValue::Array(vec![bulk("1-4"), RedisValue::Nil]),
        ]);
        d.push_entries(list, &mut batch).unwrap();
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.entries[1].record.get("k"), Some(&Value::Int(2)));
        assert!(Arc::ptr_eq(
            batch.entries[0].record.shape(),
            batch.entries[1].record.shape()
        ));
        assert_eq!(batch.invalid.len(), 2);
        assert_eq!(batch.invalid[0].id, StreamId::new(1, 2));
        assert!(
            batch.invalid[0].reason.contains("field `data`"),
            "{:?}",
            batch.invalid[0]
        );
        assert_eq!(batch.invalid[0].raw, "data=not json");
        assert!(batch.invalid[1].reason.contains("no field `data`"));
        assert_eq!(batch.deleted, vec![StreamId::new(1, 4)]);
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.last_id(), Some(StreamId::new(1, 4)));
        assert_eq!(
            batch.ids(),
            ["1-0", "1-1", "1-2", "1-3"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<StreamId>>()
        );
    }

    #[test]
    fn flat_entries_keep_strings_and_reuse_shape() {
        let mut d = EntryDecoder::new(FieldEncoding::Flat);
        let a = d
            .decode(&[bulk("user"), bulk("7"), bulk("page"), bulk("/x")])
            .unwrap();
        let b = d
            .decode(&[bulk("user"), bulk("8"), bulk("page"), bulk("/y")])
            .unwrap();
        assert_eq!(a.get("user"), Some(&Value::from("7")));
        assert_eq!(b.get("page"), Some(&Value::from("/y")));
        assert!(Arc::ptr_eq(a.shape(), b.shape()));
        let c = d.decode(&[bulk("page"), bulk("/z")]).unwrap();
        assert_eq!(c.len(), 1);
        assert!(
            d.decode(&[bulk("a"), bulk("1"), bulk("a"), bulk("2")])
                .is_err()
        );
        assert!(d.decode(&[bulk("a")]).unwrap_err().contains("odd number"));
    }
}
