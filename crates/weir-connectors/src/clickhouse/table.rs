//! How a schema maps to a ClickHouse table: the `CREATE TABLE` and `ALTER TABLE` of a schema,
//! adapted to the server's version, the JSONEachRow rendering of validated records, and
//! ClickHouse's quoting (the one copy, used by the connector's queries too).

use super::exactly_once::BATCH_COLUMN;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fmt::Write as _;
use std::io::Write as _;
use weir_schema::{Field, FieldType, Schema, Sensitivity};
use weir_types::{Record, Value};

/// What a ClickHouse server supports, derived from its version (`SELECT version()`).
///
/// ```
/// use weir_connectors::ClickHouseFeatures;
/// let old = ClickHouseFeatures::from_version("18.16.1").unwrap();
/// assert!(!old.ttl && !old.datetime64);
/// let new = ClickHouseFeatures::from_version("24.3.2.23").unwrap();
/// assert!(new.ttl && new.datetime64);
/// assert_eq!(ClickHouseFeatures::from_version("latest"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClickHouseFeatures {
    /// `(major, minor)` of the server.
    pub version: (u32, u32),
    /// Table `TTL` clauses (19.6 and later; a syntax error on 18.16).
    pub ttl: bool,
    /// `DateTime64(3)` columns with milliseconds (20.1 and later).
    pub datetime64: bool,
}

impl ClickHouseFeatures {
    /// Features of a server version such as `18.16.1` or `24.3.2.23`; `None` when the text does
    /// not start with `MAJOR.MINOR`.
    pub fn from_version(version: &str) -> Option<ClickHouseFeatures> {
        let mut parts = version.trim().split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts
            .next()?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let v = (major, minor);
        Some(ClickHouseFeatures {
            version: v,
            ttl: v >= (19, 6),
            datetime64: v >= (20, 1),
        })
    }
}

/// `CREATE TABLE IF NOT EXISTS` for this schema, for a server with `features`.
///
/// - One column per field, except fields with `sensitive: drop`, which never reach the
///   table: `String`, `Int64`, `Float64`, `UInt8` (bool), `DateTime('UTC')` or, when
///   supported, `DateTime64(3, 'UTC')`, and `String` for json (the JSON text) and for hashed
///   fields (the hex digest).
/// - Optional fields without a default are `Nullable(...)`; fields with a default get
///   `DEFAULT` (masked or hashed like the values are).
/// - A last column `_weir_batch String DEFAULT ''`: see [`BATCH_COLUMN`].
/// - `ENGINE = MergeTree()`, `PARTITION BY` the schema's `partition_by`, else
///   `toYYYYMM(time_field)` when there is a time field, `ORDER BY` the indexed fields in
///   declaration order (or `tuple()`), and `TTL time_field + INTERVAL ...` only when the
///   server supports it (otherwise a comment says it was left out).
///
/// `table` may be `db.table`; each part is quoted with backticks.
///
/// ```
/// use weir_connectors::{ClickHouseFeatures, clickhouse_ddl};
/// use weir_schema::Schema;
/// let schema = Schema::from_yaml(
///     "name: a.b\nfields:\n  - { name: id, type: string, required: true, indexed: true }\n  - { name: n, type: int }\n",
///     "a.yaml",
/// )?;
/// let ddl = clickhouse_ddl(&schema, "events", &ClickHouseFeatures::from_version("23.8").unwrap());
/// assert_eq!(ddl, "CREATE TABLE IF NOT EXISTS `events`\n(\n    `id` String,\n    `n` Nullable(Int64),\n    `_weir_batch` String DEFAULT ''\n)\nENGINE = MergeTree()\nORDER BY (`id`)\n");
/// # Ok::<(), weir_schema::Error>(())
/// ```
pub fn clickhouse_ddl(schema: &Schema, table: &str, features: &ClickHouseFeatures) -> String {
    let mut ddl = String::new();
    let _ = writeln!(ddl, "CREATE TABLE IF NOT EXISTS {}\n(", quote_table(table));
    for field in stored_fields(schema) {
        let _ = writeln!(ddl, "    {},", column_def(schema, field, features));
    }
    let _ = writeln!(ddl, "    `{BATCH_COLUMN}` String DEFAULT ''\n)");
    ddl.push_str("ENGINE = MergeTree()\n");
    if let Some(partition) = partition_by(schema) {
        let _ = writeln!(ddl, "PARTITION BY {partition}");
    }
    let _ = writeln!(ddl, "ORDER BY {}", order_by(schema));
    if let Some(ttl) = ttl_expression(schema) {
        if features.ttl {
            let _ = writeln!(ddl, "TTL {ttl}");
        } else {
            let (major, minor) = features.version;
            let _ = writeln!(
                ddl,
                "-- ttl {} left out: ClickHouse {major}.{minor} has no TTL (19.6 and later do)",
                schema.def().ttl.as_deref().unwrap_or_default()
            );
        }
    }
    ddl
}

/// The `ALTER TABLE` that brings a table created for `previous` (by
/// [`clickhouse_ddl`]) to `schema`, or `None` when the columns are the same.
///
/// New stored fields are added (`ADD COLUMN`), columns whose type or default changed are
/// modified (`MODIFY COLUMN`, e.g. `Nullable(Int64)` to `Nullable(Float64)` for a widened
/// field), and a changed TTL is set (`MODIFY TTL`, where supported). Columns of removed or
/// newly dropped fields stay, with their data. A change of the `ORDER BY` or `PARTITION BY`
/// key cannot be altered in place: it is reported as a comment at the end, and needs a new
/// table. Run it once, when the new version is registered.
///
/// ```
/// use weir_connectors::{ClickHouseFeatures, clickhouse_migration};
/// use weir_schema::Schema;
/// let v1 = Schema::from_yaml("name: a.b\nfields:\n  - { name: id, type: string, required: true }\n  - { name: n, type: int }\n", "v1.yaml")?;
/// let v2 = Schema::from_yaml("name: a.b\nfields:\n  - { name: id, type: string, required: true }\n  - { name: n, type: float }\n  - { name: tag, type: string, default: \"x\" }\n", "v2.yaml")?;
/// let features = ClickHouseFeatures::from_version("18.16.1").unwrap();
/// assert_eq!(
///     clickhouse_migration(&v2, &v1, "events", &features).unwrap(),
///     "ALTER TABLE `events`\n    MODIFY COLUMN `n` Nullable(Float64),\n    ADD COLUMN `tag` String DEFAULT 'x'\n"
/// );
/// assert_eq!(clickhouse_migration(&v1, &v1, "events", &features), None);
/// # Ok::<(), weir_schema::Error>(())
/// ```
pub fn clickhouse_migration(
    schema: &Schema,
    previous: &Schema,
    table: &str,
    features: &ClickHouseFeatures,
) -> Option<String> {
    let mut actions = Vec::new();
    for field in stored_fields(schema) {
        let column = column_def(schema, field, features);
        match stored_fields(previous).find(|f| f.name() == field.name()) {
            None => actions.push(format!("ADD COLUMN {column}")),
            Some(old) if column_def(previous, old, features) != column => {
                actions.push(format!("MODIFY COLUMN {column}"))
            }
            Some(_) => {}
        }
    }
    let ttl = ttl_expression(schema);
    if features.ttl && ttl.is_some() && ttl != ttl_expression(previous) {
        actions.push(format!("MODIFY TTL {}", ttl.unwrap_or_default()));
    }
    let mut notes = Vec::new();
    if order_by(schema) != order_by(previous) {
        notes.push(format!(
            "-- ORDER BY changed from {} to {}: ClickHouse cannot alter it in place; create a new table to apply it",
            order_by(previous),
            order_by(schema)
        ));
    }
    if partition_by(schema) != partition_by(previous) {
        notes.push(format!(
            "-- PARTITION BY changed from {} to {}: ClickHouse cannot alter it in place; create a new table to apply it",
            partition_by(previous).unwrap_or_else(|| "(none)".into()),
            partition_by(schema).unwrap_or_else(|| "(none)".into())
        ));
    }
    if actions.is_empty() && notes.is_empty() {
        return None;
    }
    let mut sql = String::new();
    if !actions.is_empty() {
        let _ = writeln!(
            sql,
            "ALTER TABLE {}\n    {}",
            quote_table(table),
            actions.join(",\n    ")
        );
    }
    for note in notes {
        let _ = writeln!(sql, "{note}");
    }
    Some(sql)
}

/// The record as one JSONEachRow line (no newline) for the schema's table, in the format
/// every ClickHouse version accepts: datetimes as `YYYY-MM-DD HH:MM:SS` in UTC, bools as 0/1,
/// json fields as their JSON text. Only the table's columns are written: unknown fields and
/// dropped sensitive fields are left out; absent fields are `null` when the column is
/// Nullable and omitted (so the column default applies) otherwise. Give it a validated record
/// after [`Schema::apply_privacy`].
///
/// ```
/// use weir_connectors::clickhouse_row_json;
/// use weir_schema::Schema;
/// use weir_types::{Record, Value};
/// let schema = Schema::from_yaml(
///     "name: a.b\nfields:\n  - { name: ts, type: datetime, required: true }\n  - { name: ok, type: bool }\n  - { name: n, type: int }\n",
///     "a.yaml",
/// )?;
/// let r = Record::from_pairs([("ts", Value::Timestamp(1_714_564_800_250)), ("ok", Value::Bool(true)), ("x", Value::Int(1))]);
/// assert_eq!(clickhouse_row_json(&schema, &r), r#"{"ts":"2024-05-01 12:00:00","ok":1,"n":null}"#);
/// # Ok::<(), weir_schema::Error>(())
/// ```
pub fn clickhouse_row_json(schema: &Schema, record: &Record) -> String {
    let mut out = Vec::with_capacity(64 + 16 * schema.fields().len());
    write_row(schema, record, false, None, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the record as a JSONEachRow line, newline included, for a batched insert by the
/// exactly-once sink: like [`clickhouse_row_json`], plus `_weir_batch` set to
/// `batch`, and datetimes with milliseconds when the server has `DateTime64`.
pub fn write_clickhouse_row(
    schema: &Schema,
    record: &Record,
    features: &ClickHouseFeatures,
    batch: &str,
    out: &mut Vec<u8>,
) {
    write_row(schema, record, features.datetime64, Some(batch), out);
    out.push(b'\n');
}

/// `` `name` Type [DEFAULT literal] ``
fn column_def(schema: &Schema, field: &Field, features: &ClickHouseFeatures) -> String {
    let mut column = format!(
        "{} {}",
        quote_identifier(field.name()),
        column_type(field, features)
    );
    if let Some(default) = field.default() {
        column.push_str(" DEFAULT ");
        column.push_str(&default_literal(schema, field, default, features));
    }
    column
}

fn order_by(schema: &Schema) -> String {
    let indexed: Vec<String> = schema
        .order_key()
        .map(|f| quote_identifier(f.name()))
        .collect();
    if indexed.is_empty() {
        "tuple()".to_string()
    } else {
        format!("({})", indexed.join(", "))
    }
}

fn partition_by(schema: &Schema) -> Option<String> {
    match (&schema.def().partition_by, &schema.def().time_field) {
        (Some(expr), _) => Some(expr.trim().to_string()),
        (None, Some(ts)) => Some(format!("toYYYYMM({})", quote_identifier(ts))),
        (None, None) => None,
    }
}

fn ttl_expression(schema: &Schema) -> Option<String> {
    let (ttl, ts) = (schema.ttl()?, schema.def().time_field.as_deref()?);
    Some(format!(
        "toDateTime({}) + INTERVAL {} {}",
        quote_identifier(ts),
        ttl.amount(),
        ttl.unit()
    ))
}

fn stored_fields(schema: &Schema) -> impl Iterator<Item = &Field> {
    schema
        .fields()
        .iter()
        .filter(|f| f.sensitive() != Some(Sensitivity::Drop))
}

fn default_literal(
    schema: &Schema,
    field: &Field,
    default: &Value,
    features: &ClickHouseFeatures,
) -> String {
    if field.sensitive().is_some() {
        // The table holds protected values, so its default must be protected alike.
        let mut record = Record::from_pairs([(field.name(), default.clone())]);
        schema.apply_privacy(&mut record);
        let text = record
            .get(field.name())
            .map(|v| v.to_string())
            .unwrap_or_default();
        return quote_string(&text);
    }
    match (field.field_type(), default) {
        (_, Value::Timestamp(ms)) => {
            let mut text = Vec::new();
            write_datetime(&mut text, *ms, features.datetime64);
            let text = String::from_utf8_lossy(&text);
            if features.datetime64 {
                format!("toDateTime64({}, 3, 'UTC')", quote_string(&text))
            } else {
                format!("toDateTime({}, 'UTC')", quote_string(&text))
            }
        }
        (FieldType::Json, value) => quote_string(&value.to_json().to_string()),
        (_, Value::Str(s)) => quote_string(s),
        (_, Value::Bool(b)) => u8::from(*b).to_string(),
        (_, Value::Float(f)) => format!("{f:?}"),
        (_, other) => other.to_string(),
    }
}

fn write_row(
    schema: &Schema,
    record: &Record,
    millis: bool,
    batch: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    let mut first = true;
    for field in stored_fields(schema) {
        let value = record.get(field.name()).filter(|v| !v.is_null());
        if value.is_none() && !field.nullable() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        // Field names are identifiers: no escaping needed.
        out.push(b'"');
        out.extend_from_slice(field.name().as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            None => out.extend_from_slice(b"null"),
            Some(value) => write_value(out, field, value, millis),
        }
    }
    if let Some(batch) = batch {
        if !first {
            out.push(b',');
        }
        let _ = write!(out, "\"{BATCH_COLUMN}\":");
        write_json_string(out, batch);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, field: &Field, value: &Value, millis: bool) {
    if field.field_type() == FieldType::Json && field.sensitive().is_none() {
        write_json_string(out, &value.to_json().to_string());
        return;
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.push(if *b { b'1' } else { b'0' }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => write_json_string(out, s),
        Value::Timestamp(ms) => {
            out.push(b'"');
            write_datetime(out, *ms, millis);
            out.push(b'"');
        }
        Value::Json(j) => write_json_string(out, &j.to_string()),
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `YYYY-MM-DD HH:MM:SS[.mmm]` in UTC.
fn write_datetime(out: &mut Vec<u8>, ms: i64, millis: bool) {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(dt) => {
            let _ = write!(
                out,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            if millis {
                let _ = write!(out, ".{:03}", ms.rem_euclid(1000));
            }
        }
        None => {
            let _ = write!(out, "{}", ms.div_euclid(1000));
        }
    }
}

fn column_type(field: &Field, features: &ClickHouseFeatures) -> String {
    let base = match (field.sensitive(), field.field_type()) {
        (Some(Sensitivity::Hash), _) => "String",
        (_, FieldType::String | FieldType::Json) => "String",
        (_, FieldType::Int) => "Int64",
        (_, FieldType::Float) => "Float64",
        (_, FieldType::Bool) => "UInt8",
        (_, FieldType::Datetime) if features.datetime64 => "DateTime64(3, 'UTC')",
        (_, FieldType::Datetime) => "DateTime('UTC')",
    };
    if field.nullable() {
        format!("Nullable({base})")
    } else {
        base.to_string()
    }
}

/// `db.table` as `` `db`.`table` `` (the one copy of ClickHouse's quoting: the DDL here and
/// the connector's queries use it).
pub fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

/// An identifier in backticks, `` ` `` and `\` escaped.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A single-quoted SQL string literal.
pub fn quote_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_leniently() {
        let f = ClickHouseFeatures::from_version("19.6.2.11").unwrap();
        assert_eq!(f.version, (19, 6));
        assert!(f.ttl && !f.datetime64);
        assert!(!ClickHouseFeatures::from_version("19.5").unwrap().ttl);
        assert!(
            ClickHouseFeatures::from_version("20.1-lts")
                .unwrap()
                .datetime64
        );
        assert_eq!(ClickHouseFeatures::from_version("24"), None);
        assert_eq!(ClickHouseFeatures::from_version(""), None);
    }

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(quote_string("it's a \\ test\n"), "'it\\'s a \\\\ test\\n'");
        assert_eq!(quote_identifier("db"), "`db`");
        assert_eq!(quote_identifier("we`ird"), "`we\\`ird`");
        assert_eq!(quote_table("db.t"), "`db`.`t`");
    }

    #[test]
    fn datetimes_render_in_utc_with_optional_millis() {
        let mut out = Vec::new();
        write_datetime(&mut out, 1_714_564_800_250, false);
        out.push(b'|');
        write_datetime(&mut out, 1_714_564_800_250, true);
        out.push(b'|');
        write_datetime(&mut out, -1, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-05-01 12:00:00|2024-05-01 12:00:00.250|1969-12-31 23:59:59.999"
        );
    }
}
