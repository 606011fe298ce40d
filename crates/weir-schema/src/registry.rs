//! The schema registry: versioned schema files in a directory.
//!
//! Layout: `DIR/<name>/v<version>.yaml`, one file per version, never rewritten. A new version is
//! written to a temporary file in the same directory and linked into place only if no file of
//! that version exists yet, so readers never see a partial file and two concurrent registrations
//! of the same version cannot overwrite each other.

use crate::compat;
use crate::def::Compatibility;
use crate::error::{Error, SchemaError};
use crate::schema::{Schema, check_schema_name};
use serde::Serialize;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A directory of versioned schemas.
///
/// ```
/// use weir_schema::{Registry, Schema, VersionSpec};
/// let dir = tempfile::tempdir().unwrap();
/// let registry = Registry::open(dir.path())?;
/// let v1 = Schema::from_yaml("name: shop.order\nfields:\n  - { name: id, type: string, required: true }\n", "order.yaml")?;
/// assert_eq!(registry.register(&v1)?.version, 1);
/// let v2 = Schema::from_yaml("name: shop.order\nfields:\n  - { name: id, type: string, required: true }\n  - { name: note, type: string }\n", "order.yaml")?;
/// let registered = registry.register(&v2)?;
/// assert_eq!(
///     registered.to_string(),
///     format!("registered shop.order v2 ({})\n  + note (string, optional)", registered.path.display())
/// );
/// assert_eq!(registry.get("shop.order", VersionSpec::Latest)?.version(), Some(2));
/// # Ok::<(), weir_schema::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

/// Which version of a schema to fetch: `latest`, `3` or `v3` when parsed from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VersionSpec {
    Latest,
    Exact(u32),
}

impl FromStr for VersionSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("latest") {
            return Ok(VersionSpec::Latest);
        }
        text.strip_prefix('v')
            .unwrap_or(text)
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .map(VersionSpec::Exact)
            .ok_or_else(|| format!("`{text}` is not a version: expected `latest`, `3` or `v3`"))
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Exact(v) => write!(f, "v{v}"),
        }
    }
}

/// The outcome of [`Registry::register`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub name: String,
    pub version: u32,
    /// `false` when an identical definition was already registered as `version`.
    pub created: bool,
    pub path: PathBuf,
    /// What changed since the previous version (see [`CheckReport::changes`]).
    pub changes: Vec<String>,
}

impl fmt::Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            write!(
                f,
                "registered {} v{} ({})",
                self.name,
                self.version,
                self.path.display()
            )?;
        } else {
            write!(
                f,
                "{} v{} is already registered with this definition ({})",
                self.name,
                self.version,
                self.path.display()
            )?;
        }
        self.changes.iter().try_for_each(|c| write!(f, "\n  {c}"))
    }
}

/// The outcome of a successful [`Registry::check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub name: String,
    /// The version `register` would assign (or the existing one when `unchanged`).
    pub version: u32,
    /// The latest registered version it was checked against.
    pub previous: Option<u32>,
    pub compatibility: Compatibility,
    /// True when the definition equals the latest registered version.
    pub unchanged: bool,
    /// One line per change: `+ field (type, ...)`, `- field (...)`, `~ field (old -> new)`,
    /// `~ setting: old -> new`.
    pub changes: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.previous {
            _ if self.unchanged => write!(
                f,
                "{}: identical to the registered v{}",
                self.name, self.version
            )?,
            None => write!(
                f,
                "{}: new schema, would be registered as v{}",
                self.name, self.version
            )?,
            Some(previous) => write!(
                f,
                "{}: {} compatible with v{previous}, would be registered as v{}",
                self.name, self.compatibility, self.version
            )?,
        }
        self.changes.iter().try_for_each(|c| write!(f, "\n  {c}"))
    }
}

/// One schema in [`SchemaList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaSummary {
    pub name: String,
    pub versions: Vec<u32>,
    pub latest: u32,
    pub description: Option<String>,
    /// Number of fields of the latest version.
    pub fields: usize,
}

/// The outcome of [`Registry::list`]: schemas sorted by name. `Display` prints a table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchemaList {
    pub schemas: Vec<SchemaSummary>,
}

impl fmt::Display for SchemaList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.schemas.is_empty() {
            return f.write_str("no schemas registered");
        }
        let width = self
            .schemas
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0)
            .max(4);
        write!(
            f,
            "{:width$}  LATEST  VERSIONS  FIELDS  DESCRIPTION",
            "NAME"
        )?;
        for s in &self.schemas {
            write!(
                f,
                "\n{:width$}  {:>6}  {:>8}  {:>6}  {}",
                s.name,
                format!("v{}", s.latest),
                s.versions.len(),
                s.fields,
                s.description.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

impl Registry {
    /// Opens (creating it if needed) the registry directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Registry, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        Ok(Registry { dir })
    }

    /// Opens an existing registry directory; a missing one is an error rather than created
    /// (for commands that only read: `list`, `show`).
    pub fn open_existing(dir: impl Into<PathBuf>) -> Result<Registry, Error> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(SchemaError::NoRegistry { dir }.into());
        }
        Ok(Registry { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks what [`register`](Registry::register) would do, without writing: the version it
    /// would assign and the changes, or the same error `register` would return.
    pub fn check(&self, schema: &Schema) -> Result<CheckReport, Error> {
        self.plan(schema)
    }

    /// Reads a definition file and checks it: `weir schema check FILE`.
    pub fn check_file(&self, path: impl AsRef<Path>) -> Result<CheckReport, Error> {
        self.check(&Schema::from_file(path)?)
    }

    /// Registers a schema as the next version of its name, after checking it against the
    /// latest version under the schema's compatibility mode. Registering a definition equal to
    /// the latest version (or to the version it names) writes nothing and returns that version.
    pub fn register(&self, schema: &Schema) -> Result<Registered, Error> {
        let report = self.plan(schema)?;
        let path = self.file(&report.name, report.version);
        if report.unchanged {
            return Ok(Registered {
                name: report.name,
                version: report.version,
                created: false,
                path,
                changes: Vec::new(),
            });
        }
        let stored = schema.with_version(report.version);
        self.write_new(
            &report.name,
            report.version,
            &storable_yaml(&stored, &path)?,
        )?;
        Ok(Registered {
            name: report.name,
            version: report.version,
            created: true,
            path,
            changes: report.changes,
        })
    }

    /// Reads a definition file and registers it: `weir schema register FILE`.
    pub fn register_file(&self, path: impl AsRef<Path>) -> Result<Registered, Error> {
        self.register(&Schema::from_file(path)?)
    }

    /// Every registered schema with its versions: `weir schema list`.
    pub fn list(&self) -> Result<SchemaList, Error> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        let mut schemas = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if check_schema_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let versions = self.versions(&name)?;
            let Some(&latest) = versions.last() else {
                continue;
            };
            let schema = self.load(&name, latest)?;
            schemas.push(SchemaSummary {
                description: schema.def.description.clone(),
                fields: schema.fields.len(),
                name,
                versions,
                latest,
            });
        }
        schemas.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SchemaList { schemas })
    }

    /// One version of a schema: `weir schema show NAME [VERSION]`. The schema's `Display` is
    /// its YAML definition.
    pub fn get(&self, name: &str, version: VersionSpec) -> Result<Schema, Error> {
        let versions = self.versions(name)?;
        let version = match version {
            VersionSpec::Latest => *versions.last().ok_or_else(|| SchemaError::UnknownSchema {
                name: name.to_string(),
                registry: self.dir.clone(),
            })?,
            VersionSpec::Exact(v) if versions.contains(&v) => v,
            VersionSpec::Exact(_) if versions.is_empty() => {
                return Err(SchemaError::UnknownSchema {
                    name: name.to_string(),
                    registry: self.dir.clone(),
                }
                .into());
            }
            VersionSpec::Exact(v) => {
                return Err(SchemaError::UnknownVersion {
                    name: name.to_string(),
                    version: v,
                    available: versions,
                }
                .into());
            }
        };
        self.load(name, version)
    }

    /// The registered versions of a schema, ascending; empty when it has none.
    pub fn versions(&self, name: &str) -> Result<Vec<u32>, Error> {
        check_schema_name(name).map_err(|reason| SchemaError::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        let dir = self.dir.join(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let file = entry.file_name();
            let version = file
                .to_str()
                .and_then(|f| f.strip_prefix('v'))
                .and_then(|f| f.strip_suffix(".yaml"))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| *v > 0);
            versions.extend(version);
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn file(&self, name: &str, version: u32) -> PathBuf {
        self.dir.join(name).join(format!("v{version}.yaml"))
    }

    fn load(&self, name: &str, version: u32) -> Result<Schema, Error> {
        let path = self.file(name, version);
        let schema = Schema::from_file(&path)?;
        if schema.name() != name || schema.version() != Some(version) {
            return Err(SchemaError::Definition {
                origin: path.display().to_string(),
                issues: vec![crate::error::DefinitionIssue {
                    line: None,
                    key: "name".into(),
                    message: format!(
                        "the file holds `{}` version {}, but its place in the registry says `{name}` version {version}",
                        schema.name(),
                        schema.version().map_or("(none)".into(), |v| v.to_string()),
                    ),
                }],
            }
            .into());
        }
        Ok(schema)
    }

    /// Decides the version and checks compatibility: the shared part of check and register.
    fn plan(&self, schema: &Schema) -> Result<CheckReport, Error> {
        let name = schema.name().to_string();
        let versions = self.versions(&name)?;
        let next = versions.last().map_or(1, |v| v + 1);
        let unversioned = |s: &Schema| {
            let mut def = s.def.clone();
            def.version = None;
            def
        };

        // A definition that names an existing version must be that version, unchanged.
        if let Some(requested) = schema.version()
            && versions.contains(&requested)
        {
            let existing = self.load(&name, requested)?;
            if unversioned(&existing) != unversioned(schema) {
                return Err(SchemaError::VersionExists {
                    name,
                    version: requested,
                }
                .into());
            }
            return Ok(unchanged(name, requested, schema));
        }
        if let Some(requested) = schema.version()
            && requested != next
        {
            return Err(SchemaError::VersionMismatch {
                name,
                requested,
                next,
            }
            .into());
        }

        let Some(&latest) = versions.last() else {
            return Ok(CheckReport {
                name,
                version: 1,
                previous: None,
                compatibility: schema.def.compatibility,
                unchanged: false,
                changes: Vec::new(),
            });
        };
        let previous = self.load(&name, latest)?;
        if unversioned(&previous) == unversioned(schema) {
            return Ok(unchanged(name, latest, schema));
        }
        let problems = compat::incompatibilities(&previous, schema);
        if !problems.is_empty() {
            return Err(SchemaError::Incompatible {
                name,
                previous: latest,
                mode: schema.def.compatibility,
                problems,
            }
            .into());
        }
        Ok(CheckReport {
            name,
            version: next,
            previous: Some(latest),
            compatibility: schema.def.compatibility,
            unchanged: false,
            changes: compat::changes(&previous, schema),
        })
    }

    /// Writes a new version file atomically and without replacing an existing one.
    fn write_new(&self, name: &str, version: u32, text: &str) -> Result<(), Error> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let path = self.file(name, version);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io("write", tmp.path().to_path_buf(), e))?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(SchemaError::VersionExists {
                    name: name.to_string(),
                    version,
                }
                .into());
            }
            Err(e) => return Err(Error::io("write", path, e.error)),
        }
        // Make the new directory entry durable too; not every platform can open a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The schema as YAML, checked to load back as the same definition before it is stored.
fn storable_yaml(schema: &Schema, path: &Path) -> Result<String, Error> {
    let origin = path.display().to_string();
    let unstorable = |message: String| SchemaError::Definition {
        origin: origin.clone(),
        issues: vec![crate::error::DefinitionIssue {
            line: None,
            key: String::new(),
            message,
        }],
    };
    let text = serde_yaml::to_string(schema.def())
        .map_err(|e| unstorable(format!("cannot be written as YAML: {e}")))?;
    match crate::def::SchemaDef::parse(&text, &origin) {
        Ok(back) if &back == schema.def() => Ok(text),
        _ => Err(unstorable("does not read back as the same definition from YAML".into()).into()),
    }
}

fn unchanged(name: String, version: u32, schema: &Schema) -> CheckReport {
    CheckReport {
        name,
        version,
        previous: Some(version),
        compatibility: schema.def.compatibility,
        unchanged: true,
        changes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_specs_parse() {
        assert_eq!("latest".parse(), Ok(VersionSpec::Latest));
        assert_eq!("3".parse(), Ok(VersionSpec::Exact(3)));
        assert_eq!("v12".parse(), Ok(VersionSpec::Exact(12)));
        assert!("v0".parse::<VersionSpec>().is_err());
        assert!("two".parse::<VersionSpec>().unwrap_err().contains("`two`"));
        assert_eq!(VersionSpec::Exact(2).to_string(), "v2");
    }

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let err = registry.get("../etc", VersionSpec::Latest).unwrap_err();
        assert!(
            matches!(err, Error::Schema(SchemaError::InvalidName { .. })),
            "{err}"
        );
    }
}
