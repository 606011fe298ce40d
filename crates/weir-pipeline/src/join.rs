//! The `join` step: enrichment of every record with a row of a table loaded from a file of
//! JSON lines or CSV.
//!
//! ```yaml
//! - join:
//!     table: users.jsonl       # JSON lines or CSV (by extension, or `format`), relative to
//!                              # the pipeline file
//!     on: user_id              # the records' key field(s)
//!     table_key: id            # the table's key field(s) (default: the same names as `on`)
//!     fields: [name, plan]     # table fields copied into the record (default: all but the key)
//!     kind: left               # left (default): unmatched records go on with the fields null
//!                              # inner: unmatched records are left out
//! ```

use crate::spec::KeyFields;
use crate::steps::key_of;
use crate::{Pipeline, PipelineError};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use weir_core::Stream;
use weir_expr::FieldTypes;
use weir_time::prelude::*;
use weir_types::{Record, Shape, Value};

/// A `join` step, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinStep {
    /// A file of JSON lines, one table row per line (relative to the pipeline file). A later
    /// row replaces an earlier one with the same key.
    pub table: PathBuf,
    /// The records' field(s) to look up.
    pub on: KeyFields,
    /// The table's key field(s), when they are named differently from `on`.
    pub table_key: Option<KeyFields>,
    /// The table fields copied into each record (default: every field of the table but its key).
    pub fields: Option<Vec<String>>,
    /// `left` (default) or `inner`.
    pub kind: Option<JoinKind>,
    /// `json_lines` or `csv` (with a header row; cells typed as a CSV source types them);
    /// default: by the extension (`.csv` is CSV, anything else JSON lines).
    pub format: Option<weir_connectors::Format>,
}

/// Loads a CSV table (header row, cells typed by their text) keyed by `key_of`; errors name the
/// file and line.
fn load_csv<K: std::hash::Hash + Eq>(
    path: &std::path::Path,
    key_of: impl Fn(&Record) -> Option<K>,
) -> Result<Table<K, Record>, String> {
    let file = path.display();
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("cannot read the table {file}: {e}"))?;
    let header = reader
        .headers()
        .map_err(|e| format!("{file}, line 1: cannot read the CSV header: {e}"))?
        .clone();
    let shape = Arc::new(Shape::new(header.iter()));
    let mut rows = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("{file}, line {line}: {e}"))?;
        if row.len() != header.len() {
            return Err(format!(
                "{file}, line {line}: expected {} fields (as in the header), found {}",
                header.len(),
                row.len()
            ));
        }
        let record = Record::with_shape(
            shape.clone(),
            row.iter().map(weir_connectors::infer_value).collect(),
        )
        .map_err(|e| format!("{file}, line {line}: {e}"))?;
        let key =
            key_of(&record).ok_or_else(|| format!("{file}, line {line}: the row has no key"))?;
        rows.push((key, record));
    }
    Ok(Table::from_rows(rows))
}

/// Output shapes per input shape: records decoded alike share one shape, so this is computed
/// once per shape, not per record.
#[derive(Clone)]
struct ShapeCache {
    fields: Arc<[String]>,
    last: Option<Cached>,
}

/// An input shape, its output shape, and where the copied fields sit in the output.
type Cached = (Arc<Shape>, Arc<Shape>, Arc<[usize]>);

impl ShapeCache {
    /// The output shape and the position of each copied field in it.
    fn get(&mut self, input: &Arc<Shape>) -> (Arc<Shape>, Arc<[usize]>) {
        if let Some((i, o, at)) = &self.last
            && Arc::ptr_eq(i, input)
        {
            return (o.clone(), at.clone());
        }
        let mut names: Vec<Arc<str>> = input.names().to_vec();
        let mut positions = Vec::with_capacity(self.fields.len());
        for f in self.fields.iter() {
            match names.iter().position(|n| **n == **f) {
                Some(i) => positions.push(i),
                None => {
                    positions.push(names.len());
                    names.push(Arc::from(f.as_str()));
                }
            }
        }
        let out = Arc::new(Shape::new(names));
        let positions: Arc<[usize]> = positions.into();
        self.last = Some((input.clone(), out.clone(), positions.clone()));
        (out, positions)
    }
}

/// Copies the table row's fields into the record (null where there is no row).
fn enrich(cache: &mut ShapeCache, record: Record, row: Option<&Record>) -> Record {
    let (shape, positions) = cache.get(record.shape());
    let (_, mut values) = record.into_parts();
    values.resize(shape.len(), Value::Null);
    for (field, &at) in cache.fields.iter().zip(positions.iter()) {
        values[at] = row
            .and_then(|r| r.get(field))
            .cloned()
            .unwrap_or(Value::Null);
    }
    match Record::with_shape(shape.clone(), values) {
        Ok(r) => r,
        // Cannot happen (the values were resized to the shape); keep the fields by name anyway.
        Err(_) => Record::from_pairs(shape.names().iter().map(|n| (n.to_string(), Value::Null))),
    }
}

/// Adds the join step after `stream`; returns its output and the output's fields.
pub(crate) fn plan(
    p: &Pipeline,
    stage: &str,
    step: &JoinStep,
    stream: &Stream<Record>,
    fields: &FieldTypes,
) -> Result<(Stream<Record>, FieldTypes), PipelineError> {
    let at = |key: &str| format!("{stage}.{key}");
    let on = step.on.fields();
    let table_key = step
        .table_key
        .as_ref()
        .map_or_else(|| on.clone(), KeyFields::fields);
    if on.is_empty() {
        return Err(p.error_at(&at("on"), "needs at least one field"));
    }
    if table_key.len() != on.len() {
        return Err(p.error_at(
            &at("table_key"),
            format!(
                "names {} field(s) but `on` names {}: they are matched in order",
                table_key.len(),
                on.len()
            ),
        ));
    }
    if !fields.is_dynamic() {
        for name in &on {
            if fields.get(name).is_none() {
                let known: Vec<&str> = fields.names().collect();
                return Err(p.error_at(
                    &at("on"),
                    format!(
                        "unknown field `{name}`; the records here have: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let path = crate::build::resolve(p, &step.table);
    let keys: Arc<[String]> = table_key.clone().into();
    let key_of_row = |row: &Record| {
        keys.iter()
            .all(|k| row.get(k).is_some_and(|v| !matches!(v, Value::Null)))
            .then(|| key_of(&keys, row))
    };
    let format = step
        .format
        .unwrap_or_else(|| weir_connectors::Format::from_path(&path));
    let table = if format == weir_connectors::Format::Csv {
        load_csv(&path, key_of_row).map_err(|message| {
            let message = message.replace(
                ": the row has no key",
                &format!(": the row has no `{}`", table_key.join("`, `")),
            );
            p.error_at(&at("table"), message)
        })?
    } else {
        Table::load_json_lines(&path, |row: &Record| {
            keys.iter()
                .all(|k| row.get(k).is_some())
                .then(|| key_of(&keys, row))
        })
        .map_err(|e| {
            let message = match e {
                weir_time::TimeError::TableRow { line, message, .. }
                    if message == "the row has no key" =>
                {
                    format!(
                        "{}, line {line}: the row has no `{}`",
                        path.display(),
                        table_key.join("`, `")
                    )
                }
                other => other.to_string(),
            };
            p.error_at(&at("table"), message)
        })?
    };

    // The fields to copy: as given, or every field of the table but the key (sorted by name).
    let copied: Vec<String> = match &step.fields {
        Some(list) => {
            if list.is_empty() {
                return Err(p.error_at(&at("fields"), "needs at least one field"));
            }
            list.clone()
        }
        None => {
            let mut all: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (_, row) in table.iter() {
                for (name, _) in row.iter() {
                    if !table_key.iter().any(|k| k == name) && seen.insert(name.to_string()) {
                        all.push(name.to_string());
                    }
                }
            }
            all.sort();
            all
        }
    };
    let mut out_fields = fields.clone();
    if !fields.is_dynamic() {
        for f in &copied {
            out_fields.insert(f, None);
        }
    }
    let kind = step.kind.unwrap_or(JoinKind::Left);
    let on: Arc<[String]> = on.into();
    let mut cache = ShapeCache {
        fields: copied.into(),
        last: None,
    };
    let joined = stream
        .enrich(
            &table,
            move |r: &Record| key_of(&on, r),
            kind,
            move |record, row| enrich(&mut cache, record, row),
        )
        .name(stage);
    Ok((joined, out_fields))
}

#[cfg(test)]
mod tests {
    use crate::Pipeline;
    use std::path::Path;

    fn validate(dir: &Path, join: &str) -> Result<String, String> {
        let text = format!(
            "source:\n  type: generator\n  count: 3\n  fields:\n    id: id\n    user: \"id % 2\"\nsteps:\n  - join:\n{join}sink:\n  type: discard\n"
        );
        let file = dir.join("p.yaml");
        let p = Pipeline::parse(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
        p.validate().map_err(|e| {
            format!(
                "{}: {}: {}",
                e.line.unwrap_or(0),
                e.key.unwrap_or_default(),
                e.message
            )
        })
    }

    #[test]
    fn tables_are_checked_when_the_pipeline_is_built() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("users.jsonl"),
            "{\"id\": 0, \"name\": \"a\"}\n{\"name\": \"b\"}\n",
        )
        .unwrap();
        let e = validate(
            dir.path(),
            "      table: users.jsonl\n      on: user\n      table_key: id\n",
        )
        .unwrap_err();
        assert!(e.starts_with("9: steps[0].join.table: "), "{e}");
        assert!(
            e.ends_with("users.jsonl, line 2: the row has no `id`"),
            "{e}"
        );

        let e = validate(dir.path(), "      table: none.jsonl\n      on: user\n").unwrap_err();
        assert!(e.contains("cannot read the table"), "{e}");

        std::fs::write(dir.path().join("users.jsonl"), "{\"id\": 0}\n").unwrap();
        let e = validate(
            dir.path(),
            "      table: users.jsonl\n      on: user\n      table_key: [id, x]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("steps[0].join.table_key: names 2 field(s) but `on` names 1"),
            "{e}"
        );
        let e = validate(dir.path(), "      table: users.jsonl\n      on: usr\n").unwrap_err();
        assert!(e.contains("unknown field `usr`"), "{e}");
        let e = validate(
            dir.path(),
            "      table: users.jsonl\n      on: user\n      kind: outer\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown variant `outer`"), "{e}");
        assert!(
            validate(
                dir.path(),
                "      table: users.jsonl\n      on: user\n      table_key: id\n      kind: inner\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn csv_tables_are_loaded_and_their_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.csv"), "id,name\n0,a\n1,b\n").unwrap();
        assert!(
            validate(
                dir.path(),
                "      table: users.csv\n      on: user\n      table_key: id\n"
            )
            .is_ok()
        );
        std::fs::write(dir.path().join("users.csv"), "id,name\n0,a\n,b\n").unwrap();
        let e = validate(
            dir.path(),
            "      table: users.csv\n      on: user\n      table_key: id\n",
        )
        .unwrap_err();
        assert!(e.ends_with("users.csv, line 3: the row has no `id`"), "{e}");
        std::fs::write(dir.path().join("users.txt"), "id,name\n0,a,x\n").unwrap();
        let e = validate(
            dir.path(),
            "      table: users.txt\n      format: csv\n      on: user\n      table_key: id\n",
        )
        .unwrap_err();
        assert!(e.contains("users.txt, line 2: "), "{e}");
    }
}
