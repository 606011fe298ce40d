//! Weir's schema registry and record validation (StreamHouse-style ingestion).
//!
//! This crate owns:
//! - the schema file format ([`SchemaDef`]) and its checked form ([`Schema`]), with errors that
//!   name the file, the line and the key;
//! - the [`Registry`]: named, versioned schemas stored as files, with evolution rules
//!   ([`Compatibility`]) enforced on `register`;
//! - record validation ([`Schema::validate`], [`Validator`] for streams): types, lossless
//!   coercions, defaults, unknown fields;
//! - PII handling ([`Schema::apply_privacy`]): mask, hash or drop sensitive fields;
//! - read access to a compiled schema ([`Schema::fields`], [`Schema::order_key`],
//!   [`Schema::ttl`]), through which the ClickHouse connector (weir-connectors) makes tables;
//! - the error classification other crates reuse ([`ErrorClass`]).
//!
//! Each `weir schema` CLI command is one call returning something printable:
//! `register` → [`Registry::register_file`], `check` → [`Registry::check_file`],
//! `list` → [`Registry::list`], `show` → [`Registry::get`].
//!
//! ```
//! use weir_schema::{Registry, Schema, VersionSpec};
//! use weir_types::{Record, Value};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let registry = Registry::open(dir.path())?;
//! let schema = Schema::from_yaml(r#"
//! name: user.activity.login
//! fields:
//!   - { name: user_id, type: string, required: true, indexed: true }
//!   - { name: email, type: string, sensitive: hash }
//!   - { name: attempts, type: int, default: 1 }
//! "#, "login.yaml")?;
//! println!("{}", registry.register(&schema)?);
//!
//! let schema = registry.get("user.activity.login", VersionSpec::Latest)?;
//! let record = Record::from_pairs([("user_id", Value::from("u1")), ("email", Value::from("a@b.c"))]);
//! let mut record = schema.validate(record)?;
//! schema.apply_privacy(&mut record);
//! assert_eq!(record.get("attempts"), Some(&Value::Int(1)));
//! assert_eq!(record.get("email").and_then(Value::as_str).map(str::len), Some(64));
//! # Ok::<(), weir_schema::Error>(())
//! ```

mod compat;
mod def;
pub mod env;
mod error;
pub mod nesting;
mod privacy;
mod registry;
mod schema;
mod validate;

pub use def::{Compatibility, FieldDef, FieldType, SchemaDef, Sensitivity, UnknownFields};
pub use error::{DefinitionIssue, Error, ErrorClass, Incompatibility, SchemaError};
pub use registry::{CheckReport, Registered, Registry, SchemaList, SchemaSummary, VersionSpec};
pub use schema::{Field, Schema, Ttl};
pub use validate::{FieldProblem, Problem, ValidationError, Validator};

#[cfg(test)]
pub(crate) mod tests {
    /// The example of the brief, used across unit tests.
    pub const LOGIN_V2: &str = r#"name: user.activity.login          # dotted name, validated
version: 2
description: User logins
compatibility: backward
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true, indexed: true }
  - { name: ip, type: string, sensitive: mask }      # mask | hash | drop
  - { name: email, type: string, sensitive: hash }
  - { name: attempts, type: int, default: 1 }
  - { name: score, type: float }
  - { name: ok, type: bool, required: true }
  - { name: meta, type: json }
partition_by: "toYYYYMM(ts)"
ttl: 90d
time_field: ts
"#;
}
