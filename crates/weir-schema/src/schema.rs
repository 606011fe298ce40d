//! The compiled schema: a checked definition with everything validation needs precomputed.

use crate::def::{self, FieldDef, FieldType, SchemaDef, Sensitivity};
use crate::error::{DefinitionIssue, Error, SchemaError};
use crate::validate::coerce_datetime;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use weir_types::Value;

/// A checked schema, ready to validate records and protect sensitive fields.
///
/// ```
/// use weir_schema::Schema;
/// let schema = Schema::from_yaml(
///     "name: shop.order\nfields:\n  - { name: id, type: string, required: true }\n",
///     "order.yaml",
/// )?;
/// assert_eq!(schema.name(), "shop.order");
/// assert_eq!(schema.version(), None); // the registry assigns versions
/// # Ok::<(), weir_schema::Error>(())
/// ```
#[derive(Clone)]
pub struct Schema {
    pub(crate) def: SchemaDef,
    pub(crate) name: Arc<str>,
    pub(crate) fields: Vec<Field>,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) hash_salt: Option<Arc<[u8]>>,
    /// Whether any field is sensitive (lets `apply_privacy` return at once otherwise).
    pub(crate) has_sensitive: bool,
}

/// A compiled field, read through [`Schema::fields`].
#[derive(Clone, Debug)]
pub struct Field {
    pub(crate) name: Arc<str>,
    pub(crate) ty: FieldType,
    pub(crate) required: bool,
    pub(crate) indexed: bool,
    pub(crate) sensitive: Option<Sensitivity>,
    pub(crate) default: Option<Value>,
}

impl Field {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn field_type(&self) -> FieldType {
        self.ty
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// Part of the order key (see [`Schema::order_key`]).
    pub fn indexed(&self) -> bool {
        self.indexed
    }

    pub fn sensitive(&self) -> Option<Sensitivity> {
        self.sensitive
    }

    /// The value an absent field takes.
    pub fn default(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// Whether a record may lack a value: neither required nor defaulted.
    pub fn nullable(&self) -> bool {
        !self.required && self.default.is_none()
    }
}

/// A retention period: `amount` `unit`s, e.g. 90 DAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl {
    pub(crate) amount: u32,
    /// The ClickHouse interval unit: SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR.
    pub(crate) unit: &'static str,
}

impl Ttl {
    pub fn amount(&self) -> u32 {
        self.amount
    }

    /// SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR (as in SQL `INTERVAL`s).
    pub fn unit(&self) -> &'static str {
        self.unit
    }
}

const RESERVED_PREFIX: &str = "_weir";

impl Schema {
    /// Parses and checks a definition written in YAML or JSON; `origin` (usually the file path)
    /// names the source in error messages, which also give the line and the key at fault.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Schema, Error> {
        let def = SchemaDef::parse(text, origin)?;
        Schema::check(def, Some(text), origin).map_err(Error::from)
    }

    /// Reads and checks a definition file (YAML, or JSON when it ends in `.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Schema, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        // Not text is a bad definition (the user's to fix), not an I/O failure.
        let text = String::from_utf8(bytes).map_err(|e| SchemaError::Definition {
            origin: path.display().to_string(),
            issues: vec![crate::DefinitionIssue {
                line: None,
                key: String::new(),
                message: format!(
                    "not a YAML or JSON text file: invalid UTF-8 at byte {}",
                    e.utf8_error().valid_up_to()
                ),
            }],
        })?;
        Schema::from_yaml(&text, &path.display().to_string())
    }

    /// Checks a definition built in code.
    pub fn from_def(def: SchemaDef) -> Result<Schema, Error> {
        let origin = format!("schema `{}`", def.name);
        Schema::check(def, None, &origin).map_err(Error::from)
    }

    /// Sets the salt prepended to values before hashing `sensitive: hash` fields. Keep it in
    /// configuration or a secret store, not in the schema file.
    pub fn with_hash_salt(mut self, salt: impl AsRef<[u8]>) -> Schema {
        self.hash_salt = Some(Arc::from(salt.as_ref()));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registered version; `None` for a schema that did not come from a registry.
    pub fn version(&self) -> Option<u32> {
        self.def.version
    }

    /// The definition this schema was compiled from.
    pub fn def(&self) -> &SchemaDef {
        &self.def
    }

    /// The definition as YAML (what `weir schema show` prints and what the registry stores).
    pub fn to_yaml(&self) -> String {
        self.def.to_yaml()
    }

    /// The fields in declaration order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The indexed fields in declaration order: the key a table is ordered by.
    pub fn order_key(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.indexed)
    }

    /// The retention period of `ttl` (applied to `time_field`).
    pub fn ttl(&self) -> Option<Ttl> {
        self.ttl
    }

    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| &*f.name == name)
    }

    pub(crate) fn with_version(&self, version: u32) -> Schema {
        let mut schema = self.clone();
        schema.def.version = Some(version);
        schema
    }

    fn check(def: SchemaDef, text: Option<&str>, origin: &str) -> Result<Schema, SchemaError> {
        let mut issues = Vec::new();
        let top = |key: &str, message: String| DefinitionIssue {
            line: text.and_then(|t| def::locate(t, None, key)),
            key: key.to_string(),
            message,
        };

        if let Err(reason) = check_schema_name(&def.name) {
            issues.push(top("name", reason));
        }
        if def.version == Some(0) {
            issues.push(top("version", "versions start at 1".into()));
        }
        if def.fields.is_empty() {
            issues.push(top("fields", "a schema needs at least one field".into()));
        }
        let ttl = match def.ttl.as_deref().map(parse_ttl) {
            Some(Ok(ttl)) => Some(ttl),
            Some(Err(reason)) => {
                issues.push(top("ttl", reason));
                None
            }
            None => None,
        };
        if let Some(expr) = &def.partition_by
            && (expr.trim().is_empty() || expr.contains(';'))
        {
            issues.push(top(
                "partition_by",
                "expected a ClickHouse expression such as `toYYYYMM(ts)`".into(),
            ));
        }

        let mut fields: Vec<Field> = Vec::with_capacity(def.fields.len());
        for (i, fd) in def.fields.iter().enumerate() {
            let mut issue = |key: &str, message: String| {
                issues.push(DefinitionIssue {
                    line: text.and_then(|t| def::locate(t, Some(&fd.name), key)),
                    key: format!("fields[{i}].{key}"),
                    message,
                });
            };
            if let Err(reason) = check_field_name(&fd.name) {
                issue("name", reason);
            } else if def.fields[..i].iter().any(|f| f.name == fd.name) {
                issue("name", format!("field `{}` is declared twice", fd.name));
            }
            let default = match &fd.default {
                None => None,
                Some(json) => match default_value(fd, json) {
                    Ok(v) => Some(v),
                    Err(reason) => {
                        issue("default", reason);
                        None
                    }
                },
            };
            if fd.required && fd.default.is_some() {
                issue(
                    "required",
                    "a field with a default is filled in when missing, so it cannot be required: remove one of the two".into(),
                );
            }
            if fd.sensitive == Some(Sensitivity::Mask) && fd.ty != FieldType::String {
                issue(
                    "sensitive",
                    format!(
                        "`mask` applies to string fields, not {}: use `hash` or `drop`",
                        fd.ty
                    ),
                );
            }
            if fd.indexed {
                if fd.sensitive == Some(Sensitivity::Drop) {
                    issue(
                        "indexed",
                        "a field dropped for privacy cannot be indexed".into(),
                    );
                }
                if !fd.required && fd.default.is_none() {
                    issue(
                        "indexed",
                        "an indexed field must be required or have a default (ClickHouse cannot sort by a Nullable column)".into(),
                    );
                }
            }
            fields.push(Field {
                name: Arc::from(fd.name.as_str()),
                ty: fd.ty,
                required: fd.required,
                indexed: fd.indexed,
                sensitive: fd.sensitive,
                default,
            });
        }

        match &def.time_field {
            Some(name) => match def.fields.iter().find(|f| &f.name == name) {
                None => issues.push(top(
                    "time_field",
                    format!("no field named `{name}` in `fields`"),
                )),
                Some(f) if f.ty != FieldType::Datetime => issues.push(top(
                    "time_field",
                    format!("field `{name}` has type {}, expected datetime", f.ty),
                )),
                Some(f) if !f.required && f.default.is_none() => issues.push(top(
                    "time_field",
                    format!("field `{name}` must be required or have a default"),
                )),
                Some(f) if f.sensitive == Some(Sensitivity::Drop) => issues.push(top(
                    "time_field",
                    format!("field `{name}` is dropped for privacy"),
                )),
                Some(_) => {}
            },
            None if ttl.is_some() => issues.push(top(
                "ttl",
                "a ttl needs a `time_field` to count from".into(),
            )),
            None => {}
        }

        if !issues.is_empty() {
            return Err(SchemaError::Definition {
                origin: origin.to_string(),
                issues,
            });
        }
        Ok(Schema {
            name: Arc::from(def.name.as_str()),
            has_sensitive: fields.iter().any(|f| f.sensitive.is_some()),
            def,
            fields,
            ttl,
            hash_salt: None,
        })
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salt is a secret: never print it.
        f.debug_struct("Schema")
            .field("def", &self.def)
            .field("hash_salt", &self.hash_salt.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The definition as YAML, as stored in the registry.
impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yaml())
    }
}

impl serde::Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.def.serialize(serializer)
    }
}

/// Schema names: dot-separated segments, each a letter then letters, digits, `_` or `-`.
pub(crate) fn check_schema_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 200 {
        return Err("the name is longer than 200 characters".into());
    }
    for segment in name.split('.') {
        let mut chars = segment.chars();
        match chars.next() {
            None => return Err("empty segment between dots".into()),
            Some(c) if !c.is_ascii_alphabetic() => {
                return Err(format!("segment `{segment}` must start with a letter"));
            }
            Some(_) => {}
        }
        if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(format!(
                "segment `{segment}` contains `{c}`: use letters, digits, `_` and `-`, separated by dots"
            ));
        }
    }
    Ok(())
}

fn check_field_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if !valid {
        return Err(format!(
            "`{name}` is not an identifier: start with a letter or `_`, then letters, digits or `_`"
        ));
    }
    if name.len() > 128 {
        return Err("the name is longer than 128 characters".into());
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for Weir's own columns"
        ));
    }
    Ok(())
}

fn default_value(fd: &FieldDef, json: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    let wrong = || {
        format!(
            "expected a {} default, found {}",
            fd.ty,
            match json {
                J::Null => "null".to_string(),
                J::String(s) => format!("the string {s:?}"),
                other => other.to_string(),
            }
        )
    };
    match (fd.ty, json) {
        (_, J::Null) => Err("a default cannot be null: leave `default` out".into()),
        (FieldType::String, J::String(s)) => Ok(Value::from(s.as_str())),
        (FieldType::Int, J::Number(n)) => n.as_i64().map(Value::Int).ok_or_else(wrong),
        (FieldType::Float, J::Number(n)) => n.as_f64().map(Value::Float).ok_or_else(wrong),
        (FieldType::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Datetime, J::String(_) | J::Number(_)) => {
            coerce_datetime(&Value::from_json(json.clone())).ok_or_else(|| {
                format!(
                    "{json} is not a datetime: use RFC 3339, `YYYY-MM-DD HH:MM:SS` or epoch seconds"
                )
            })
        }
        (FieldType::Json, other) => Ok(Value::from_json(other.clone())),
        _ => Err(wrong()),
    }
}

fn parse_ttl(text: &str) -> Result<Ttl, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let amount: u32 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` does not start with a positive number"))?;
    let unit = match unit.trim() {
        "s" => "SECOND",
        "m" => "MINUTE",
        "h" => "HOUR",
        "d" => "DAY",
        "w" => "WEEK",
        "mo" => "MONTH",
        "y" => "YEAR",
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use s, m, h, d, w, mo or y (e.g. `90d`)"
            ));
        }
    };
    Ok(Ttl { amount, unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Vec<DefinitionIssue> {
        match Schema::from_yaml(yaml, "t.yaml") {
            Err(Error::Schema(SchemaError::Definition { issues, .. })) => issues,
            other => panic!("expected a definition error, got {other:?}"),
        }
    }

    #[test]
    fn the_brief_example_compiles() {
        let s = Schema::from_yaml(crate::tests::LOGIN_V2, "login.yaml").unwrap();
        assert_eq!(s.name(), "user.activity.login");
        assert_eq!(s.version(), Some(2));
        assert_eq!(s.fields.len(), 8);
        assert_eq!(s.field("attempts").unwrap().default, Some(Value::Int(1)));
        assert_eq!(
            s.ttl,
            Some(Ttl {
                amount: 90,
                unit: "DAY"
            })
        );
        assert!(s.has_sensitive);
    }

    #[test]
    fn duplicate_and_bad_field_names_are_refused_with_line_and_key() {
        let found = issues(
            "name: a.b\nfields:\n  - { name: x, type: int }\n  - { name: 2x, type: int }\n  - { name: x, type: string }\n  - { name: _weir_batch, type: string }\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].key, "fields[1].name");
        assert_eq!(found[0].line, Some(4));
        assert!(found[0].message.contains("not an identifier"));
        assert_eq!(found[1].key, "fields[2].name");
        assert!(found[1].message.contains("declared twice"));
        assert!(found[2].message.contains("reserved"));
    }

    #[test]
    fn defaults_must_have_the_field_type() {
        let found = issues(
            "name: a.b\nfields:\n  - { name: n, type: int, default: \"one\" }\n  - { name: f, type: float, default: 2 }\n  - { name: t, type: datetime, default: yesterday }\n  - { name: b, type: bool, default: 1 }\n",
        );
        let keys: Vec<_> = found.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "fields[0].default",
                "fields[2].default",
                "fields[3].default"
            ]
        );
        assert_eq!(found[0].line, Some(3));
        assert_eq!(
            found[0].message,
            "expected a int default, found the string \"one\""
        );
        assert!(found[1].message.contains("not a datetime"));
    }

    #[test]
    fn indexed_and_time_fields_must_exist_and_be_usable() {
        let found = issues(
            "name: a.b\nfields:\n  - { name: u, type: string, indexed: true }\n  - { name: s, type: string }\ntime_field: s\nttl: 3d\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].key, "fields[0].indexed");
        assert!(found[0].message.contains("Nullable"));
        assert_eq!(found[1].key, "time_field");
        assert_eq!(found[1].line, Some(5));
        assert_eq!(
            found[1].message,
            "field `s` has type string, expected datetime"
        );

        let found = issues("name: a.b\nfields:\n  - { name: u, type: string }\ntime_field: ts\n");
        assert_eq!(found[0].message, "no field named `ts` in `fields`");
        let found = issues("name: a.b\nfields:\n  - { name: u, type: string }\nttl: 30d\n");
        assert_eq!(found[0].key, "ttl");
        assert!(found[0].message.contains("time_field"));
    }

    #[test]
    fn schema_names_ttl_and_privacy_are_checked() {
        let found = issues(
            "name: user..login\nfields:\n  - { name: n, type: int, sensitive: mask }\n  - { name: r, type: int, required: true, default: 1 }\n",
        );
        let keys: Vec<_> = found.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["name", "fields[0].sensitive", "fields[1].required"]);
        assert_eq!(found[0].line, Some(1));
        assert!(check_schema_name("../etc").is_err());
        assert!(check_schema_name("user/x").is_err());
        assert!(check_schema_name("user.activity-v2.login").is_ok());
        assert_eq!(
            parse_ttl("12h").unwrap(),
            Ttl {
                amount: 12,
                unit: "HOUR"
            }
        );
        assert_eq!(parse_ttl("6mo").unwrap().unit, "MONTH");
        assert!(parse_ttl("90 days").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("d").is_err());
    }

    #[test]
    fn display_is_the_yaml_definition_and_parses_back() {
        let s = Schema::from_yaml(crate::tests::LOGIN_V2, "login.yaml").unwrap();
        let text = s.to_string();
        let back = Schema::from_yaml(&text, "back.yaml").unwrap();
        assert_eq!(back.def(), s.def());
    }

    #[test]
    fn debug_never_shows_the_salt() {
        let s = Schema::from_yaml(crate::tests::LOGIN_V2, "login.yaml")
            .unwrap()
            .with_hash_salt("pepper-secret");
        assert!(!format!("{s:?}").contains("pepper"));
    }
}
