//! The schema file format: what a user writes in YAML or JSON.

use crate::error::{DefinitionIssue, SchemaError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A schema definition as written in a file. [`Schema`](crate::Schema) is its checked, compiled
/// form; see the crate's README for the reference of every key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// Dotted name, e.g. `user.activity.login`.
    pub name: String,
    /// Assigned by the registry when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which changes a new version may make; see [`Compatibility`].
    #[serde(default)]
    pub compatibility: Compatibility,
    /// What validation does with fields the schema does not declare.
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    pub fields: Vec<FieldDef>,
    /// A ClickHouse expression for `PARTITION BY`, used verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
    /// Retention such as `90d`: a number and a unit among `s`, `m`, `h`, `d`, `w`, `mo`, `y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// The event-time field (a `datetime` field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
}

/// One field of a [`SchemaDef`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// An identifier: a letter or `_`, then letters, digits or `_`.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// A record without this field (or with `null`) is invalid.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Part of the ClickHouse `ORDER BY` key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub indexed: bool,
    /// How the field is protected before it leaves the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Sensitivity>,
    /// Filled in when the field is missing or `null`; makes the field optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Datetime,
    /// Any JSON value; objects and arrays are the usual content.
    Json,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Datetime => "datetime",
            FieldType::Json => "json",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which changes a new version of a schema may make, with the meanings of the Confluent schema
/// registry. "Old data" is any record valid under the latest registered version, "new data" any
/// record valid under the new one.
///
/// - `Backward` (the default): the new version accepts old data, so consumers can upgrade first.
///   It may add optional fields or fields with defaults, remove optional fields and widen
///   `int` to `float`; it may not add a required field, remove a required field, change a type
///   otherwise, make an optional field required, or start rejecting unknown fields.
/// - `Forward`: the previous version accepts new data, so producers can upgrade first. It may add
///   fields (unless the previous version rejects unknown fields), remove optional fields, narrow
///   `float` to `int` and make optional fields required; it may not remove a required field,
///   make a required field optional or change a type otherwise.
/// - `Full`: both `Backward` and `Forward`.
/// - `None`: no check.
///
/// The new definition's mode is the one applied, and only against the latest version (not
/// transitively against every earlier one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compatibility {
    #[default]
    Backward,
    Forward,
    Full,
    None,
}

impl Compatibility {
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::Backward => "backward",
            Compatibility::Forward => "forward",
            Compatibility::Full => "full",
            Compatibility::None => "none",
        }
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What validation does with a record's fields that the schema does not declare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    /// The record is invalid.
    Reject,
    /// The fields pass through unchanged (the default).
    #[default]
    Keep,
    /// The fields are removed.
    Drop,
}

/// How a sensitive field is protected by [`Schema::apply_privacy`](crate::Schema::apply_privacy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Every character but the last four becomes `*` (all of them for four or fewer).
    Mask,
    /// Replaced by the lowercase hex SHA-256 of the salt followed by the value's text.
    Hash,
    /// Removed from the record.
    Drop,
}

impl SchemaDef {
    /// Parses a definition from YAML or JSON text (JSON when `origin` ends in `.json` or the
    /// text starts with `{`). `origin` names the source in error messages, usually the path.
    ///
    /// This only checks the syntax and the keys; [`Schema::from_def`](crate::Schema::from_def)
    /// checks the meaning.
    ///
    /// `${VAR}` and `${VAR:-default}` in string values are replaced from the process
    /// environment (see [`crate::env`]); a UTF-8 byte order mark at the start is skipped.
    pub fn parse(text: &str, origin: &str) -> Result<SchemaDef, SchemaError> {
        Self::parse_with_env(text, origin, &crate::env::process_env)
    }

    /// [`SchemaDef::parse`] with variables looked up by `lookup`.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        lookup: crate::env::Lookup<'_>,
    ) -> Result<SchemaDef, SchemaError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let json = origin.ends_with(".json") || text.trim_start().starts_with('{');
        let result = if json {
            serde_json::from_str(text).map_err(|e| json_issue(&e))
        } else if let Err(deep) = crate::nesting::check_nesting(text, crate::nesting::MAX_NESTING) {
            Err(DefinitionIssue {
                line: Some(deep.line),
                key: String::new(),
                message: deep.to_string(),
            })
        } else {
            crate::env::deserialize(serde_yaml::Deserializer::from_str(text), lookup)
                .map_err(|e| yaml_issue(&e))
        };
        result.map_err(|issue| SchemaError::Definition {
            origin: origin.to_string(),
            issues: vec![issue],
        })
    }

    /// The definition as YAML, in the registry's file format.
    pub fn to_yaml(&self) -> String {
        // Serializing plain data (strings, numbers, JSON values) to YAML cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

fn yaml_issue(e: &serde_yaml::Error) -> DefinitionIssue {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let (key, message) = split_key(text);
    DefinitionIssue {
        line: e.location().map(|l| l.line()),
        key,
        message,
    }
}

fn json_issue(e: &serde_json::Error) -> DefinitionIssue {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    DefinitionIssue {
        line: (e.line() > 0).then_some(e.line()),
        key: String::new(),
        message: text.to_string(),
    }
}

/// yaml_serde prefixes messages with the path of the key: `fields[1].type: unknown variant ...`.
fn split_key(text: &str) -> (String, String) {
    if let Some((key, message)) = text.split_once(": ")
        && !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
    {
        return (key.to_string(), message.to_string());
    }
    (String::new(), text.to_string())
}

/// Best-effort line of a key in the definition text, for semantic errors found after parsing.
/// `field` is the field's name when the key is inside `fields[i]`; `key` a top-level key.
pub(crate) fn locate(text: &str, field: Option<&str>, key: &str) -> Option<usize> {
    let lines = text.lines().enumerate();
    match field {
        Some(name) => {
            let yaml = format!("name: {name}");
            let yaml_quoted = [format!("name: \"{name}\""), format!("name: '{name}'")];
            let json = format!("\"name\": \"{name}\"");
            let json_tight = format!("\"name\":\"{name}\"");
            for (i, line) in lines {
                let matches_yaml = line.match_indices(&yaml).any(|(at, _)| {
                    let rest = &line[at + yaml.len()..];
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if matches_yaml
                    || yaml_quoted.iter().any(|q| line.contains(q.as_str()))
                    || line.contains(&json)
                    || line.contains(&json_tight)
                {
                    return Some(i + 1);
                }
            }
            None
        }
        None => {
            let yaml = format!("{key}:");
            let json = format!("\"{key}\"");
            lines
                .filter(|(_, line)| line.starts_with(&yaml) || line.trim_start().starts_with(&json))
                .map(|(i, _)| i + 1)
                .next()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_take_variables_a_bom_and_refuse_deep_nesting() {
        let lookup = |name: &str| -> Result<Option<String>, String> {
            Ok((name == "DESC").then(|| "from the environment".to_string()))
        };
        let text = "\u{feff}name: a.b\ndescription: ${DESC}\nfields:\n  - { name: x, type: int }\n";
        let def = SchemaDef::parse_with_env(text, "s.yaml", &lookup).expect("parses");
        assert_eq!(def.description.as_deref(), Some("from the environment"));

        let unset = text.replace("${DESC}", "${NOPE}");
        match SchemaDef::parse_with_env(&unset, "s.yaml", &lookup) {
            Err(SchemaError::Definition { issues, .. }) => {
                assert_eq!(issues[0].line, Some(2));
                assert_eq!(issues[0].key, "description");
                assert!(
                    issues[0].message.contains("`NOPE` is not set"),
                    "{issues:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let deep = format!("name: a.b\ndescription: {}\n", "[".repeat(100_000));
        match SchemaDef::parse_with_env(&deep, "s.yaml", &lookup) {
            Err(SchemaError::Definition { issues, .. }) => {
                assert_eq!(issues[0].line, Some(2));
                assert!(
                    issues[0].message.contains("deeper than 64 levels"),
                    "{issues:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn issue(text: &str, origin: &str) -> DefinitionIssue {
        match SchemaDef::parse(text, origin) {
            Err(SchemaError::Definition {
                origin: o,
                mut issues,
            }) => {
                assert_eq!(o, origin);
                assert_eq!(issues.len(), 1);
                issues.remove(0)
            }
            other => panic!("expected a definition error, got {other:?}"),
        }
    }

    #[test]
    fn parses_yaml_with_defaults_for_optional_keys() {
        let def = SchemaDef::parse(
            "name: a.b\nfields:\n  - { name: x, type: int, default: 1 }\n",
            "a.yaml",
        )
        .unwrap();
        assert_eq!(def.compatibility, Compatibility::Backward);
        assert_eq!(def.unknown_fields, UnknownFields::Keep);
        assert_eq!(def.fields[0].ty, FieldType::Int);
        assert_eq!(def.fields[0].default, Some(serde_json::json!(1)));
        assert!(!def.fields[0].required);
    }

    #[test]
    fn unknown_type_names_the_key_and_line() {
        let i = issue(
            "name: a.b\nfields:\n  - name: x\n    type: strng\n",
            "a.yaml",
        );
        assert_eq!(i.line, Some(4));
        assert_eq!(i.key, "fields[0].type");
        assert!(i.message.contains("unknown variant `strng`"), "{i}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let i = issue(
            "name: a.b\nfields:\n  - { name: x, type: int, requird: true }\n",
            "a.yaml",
        );
        assert_eq!(i.line, Some(3));
        assert_eq!(i.key, "fields[0]");
        assert!(i.message.contains("unknown field `requird`"), "{i}");
        let i = issue("name: a.b\nfields: []\nindex: [x]\n", "a.yaml");
        assert!(i.message.contains("unknown field `index`"), "{i}");
    }

    #[test]
    fn json_definitions_report_the_line() {
        let i = issue(
            "{\n  \"name\": \"a.b\",\n  \"fields\": [ { \"name\": \"x\", \"type\": \"strng\" } ]\n}",
            "a.json",
        );
        assert_eq!(i.line, Some(3));
        assert!(i.message.contains("unknown variant `strng`"), "{i}");
    }

    #[test]
    fn locate_finds_fields_and_top_level_keys() {
        let text = "name: a.b\nfields:\n  - { name: user_id, type: string }\n  - name: user\n    type: int\ntime_field: ts\n";
        assert_eq!(locate(text, Some("user"), "type"), Some(4));
        assert_eq!(locate(text, Some("user_id"), "type"), Some(3));
        assert_eq!(locate(text, None, "time_field"), Some(6));
        assert_eq!(locate(text, None, "ttl"), None);
        let json =
            "{\n \"name\": \"a.b\",\n \"fields\": [\n  {\"name\":\"x\",\"type\":\"int\"}\n ]\n}";
        assert_eq!(locate(json, Some("x"), "type"), Some(4));
    }
}
