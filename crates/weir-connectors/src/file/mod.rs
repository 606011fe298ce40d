//! The file connector: reading and writing records in files (JSON lines and CSV, [`records`];
//! followed files, directories, globs and byte-range splits, [`tail`]), its YAML options
//! (`type: file` as a source and as a sink), their build and their checks. The typed API
//! reaches it through [`crate::SourceExt`] and [`crate::SinkExt`].

mod records;
mod tail;

pub use records::{
    BadRecord, CsvHeaderError, CsvOptions, CsvSource, Format, JsonLinesSink, JsonLinesSource,
    ReadResult, check_csv_header, escape_invalid_utf8, infer_value,
};
pub use tail::{FileSelection, FileSource, FileSourceConfig, SelectionError, file_owner};

use crate::ConnectorError;
use crate::config::{BuiltSource, CheckFailure, ConfigError, Context, SourceOutput};
use crate::duration::Duration;
use crate::typed::{SinkExt, SourceExt};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use weir_core::{Environment, Stream};
use weir_expr::FieldTypes;
use weir_types::Record;

/// `source: { type: file, path, follow, format, infer_types, stop_after_idle }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// The path (relative to the pipeline file): a file, a directory (every file in it) or a
    /// glob whose file name has `*` or `?` (`logs/*.jsonl`).
    pub path: PathBuf,
    /// Keep reading as the file grows, across rotation and truncation (as `tail -F`); for a
    /// directory or glob, also read files added while running. The run then ends only by a
    /// stop (a signal, `stop_after_idle`, `limit`).
    #[serde(default)]
    pub follow: bool,
    /// `json_lines` or `csv`; the default follows the extension (`.csv` is CSV, anything
    /// else JSON lines).
    pub format: Option<Format>,
    /// CSV only: guess the types of undeclared columns (default true); false keeps every
    /// undeclared cell as its text.
    pub infer_types: Option<bool>,
    /// A followed file: stop (not drain) after this long without new input (default: never).
    pub stop_after_idle: Option<Duration>,
}

/// `sink: { type: file, path }`: records as JSON lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkOptions {
    /// The path (relative to the pipeline file); `-` is standard output.
    pub path: PathBuf,
}

pub(crate) fn format_name(format: Format) -> &'static str {
    match format {
        Format::JsonLines => "json_lines",
        Format::Csv => "csv",
    }
}

/// How a CSV source types its cells (`None` for JSON lines, which refuse `infer_types`):
/// the pipeline's declared `fields` win over guessing.
pub(crate) fn csv_options(
    ctx: &dyn Context,
    format: Format,
    infer_types: Option<bool>,
) -> Result<Option<CsvOptions>, ConfigError> {
    if format != Format::Csv {
        if infer_types.is_some() {
            return Err(ConfigError::option(
                "infer_types",
                "`infer_types` applies to CSV input only (JSON values carry their types); set `format: csv` or remove it",
            ));
        }
        return Ok(None);
    }
    Ok(Some(CsvOptions {
        types: ctx.declared_fields().into_iter().collect(),
        infer_types: infer_types.unwrap_or(true),
    }))
}

impl FileSourceOptions {
    fn selection(&self, ctx: &dyn Context) -> Result<(PathBuf, FileSelection), ConfigError> {
        let path = ctx.resolve(&self.path);
        let selection = FileSelection::from_path(&path, self.follow).map_err(|e| {
            let text = match e {
                SelectionError::Missing(_) => {
                    format!("no such file: {}", path.display())
                }
                e => e.to_string(),
            };
            ConfigError::option("path", text)
        })?;
        Ok((path, selection))
    }

    fn format(&self, selection: &FileSelection) -> Format {
        self.format.unwrap_or_else(|| match selection {
            FileSelection::File(path) => Format::from_path(path),
            _ => Format::JsonLines,
        })
    }
}

impl crate::config::SourceConnector for FileSourceOptions {
    /// One file, a followed file, a directory or a glob; JSON lines by offset (split by byte
    /// ranges at a parallelism above 1), or one CSV file.
    fn build(
        &self,
        ctx: &dyn Context,
        env: &Environment,
        _at: &str,
        _fields: &mut FieldTypes,
    ) -> Result<BuiltSource, ConfigError> {
        let follow = self.follow;
        let (path, selection) = self.selection(ctx)?;
        if self.stop_after_idle.is_some() && !follow {
            return Err(ConfigError::option(
                "stop_after_idle",
                "`stop_after_idle` applies to a followed file (`follow: true`); a file read once ends at its end",
            ));
        }
        let format = self.format(&selection);
        let csv = csv_options(ctx, format, self.infer_types)?;
        if csv.is_some() && (follow || selection.is_many()) {
            let what = if follow {
                "`follow: true`"
            } else {
                "a directory or glob source"
            };
            return Err(ConfigError::option(
                "format",
                format!("{what} reads JSON lines; CSV is read from one file without `follow`"),
            ));
        }
        let label = match &selection {
            FileSelection::File(_) if follow => {
                format!("{} (json lines, followed)", path.display())
            }
            FileSelection::File(_) => format!("{} ({})", path.display(), format_name(format)),
            _ if follow => format!("{} (json lines, every file, followed)", path.display()),
            _ => format!("{} (json lines, every file)", path.display()),
        };
        let read = match csv {
            Some(options) => {
                // A bad header is bad input: refuse it before the run starts.
                check_csv_header(&path, &options).map_err(|e| match e.declared_field() {
                    Some(name) => ConfigError::root(format!("fields.{name}"), e.to_string()),
                    None => ConfigError::option("path", e.to_string()),
                })?;
                env.read_csv(path, options)
            }
            None => {
                let mut config = FileSourceConfig::new(selection);
                config.follow = follow;
                config.stop_after_idle = self.stop_after_idle.map(Duration::get);
                config.split =
                    !follow && !config.selection.is_many() && env.config().parallelism > 1;
                env.read_files(config)
            }
        };
        Ok(BuiltSource {
            output: SourceOutput::Read(read),
            label,
        })
    }

    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure> {
        let (_, selection) = self.selection(ctx)?;
        check_readable(&selection, self.follow)?;
        Ok(true)
    }

    /// A followed single file and a CSV file are read by one instance; a directory or glob
    /// spreads its files, and a JSON-lines file is split by byte ranges.
    fn single_reader(&self, ctx: &dyn Context) -> bool {
        let path = ctx.resolve(&self.path);
        let many = FileSelection::from_path(&path, true).is_ok_and(|s| s.is_many());
        let csv = self.format.unwrap_or_else(|| Format::from_path(&path)) == Format::Csv;
        !many && (self.follow || csv)
    }
}

impl crate::config::SinkConnector for FileSinkOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        stream.write_json_lines(ctx.resolve(&self.path)).name(name);
        Ok(())
    }

    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure> {
        check_writable(&ctx.resolve(&self.path))?;
        Ok(true)
    }

    fn destination(&self, ctx: &dyn Context) -> String {
        if self.path == Path::new("-") {
            return "standard output".into();
        }
        ctx.resolve(&self.path).display().to_string()
    }

    fn output_file(&self) -> Option<&Path> {
        Some(self.path.as_path()).filter(|p| *p != Path::new("-"))
    }
}

fn access(path: &Path, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::FileAccess {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Connectivity check of a file source: the file can be opened for reading (a followed file
/// may not exist yet, if its directory does), or the directory can be listed.
pub fn check_readable(selection: &FileSelection, follow: bool) -> Result<(), ConnectorError> {
    match selection {
        FileSelection::File(path) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                match dir {
                    Some(dir) if !dir.is_dir() => Err(access(
                        path,
                        format!(
                            "neither the file nor its directory {} exists",
                            dir.display()
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(access(path, format!("cannot open for reading: {e}"))),
        },
        FileSelection::Directory(dir) | FileSelection::Glob { dir, .. } => std::fs::read_dir(dir)
            .map(|_| ())
            .map_err(|e| access(dir, format!("cannot list the directory: {e}"))),
    }
}

/// Connectivity check of a file sink: the file, or the nearest directory that exists on its
/// way, is writable (nothing is created).
pub fn check_writable(path: &Path) -> Result<(), ConnectorError> {
    if path == Path::new("-") {
        return Ok(());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(access(path, "is a directory, not a file"));
        }
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| access(path, format!("cannot open for writing: {e}")));
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if let Ok(meta) = std::fs::metadata(d) {
            if !meta.is_dir() {
                return Err(access(path, format!("{} is not a directory", d.display())));
            }
            if meta.permissions().readonly() {
                return Err(access(
                    path,
                    format!("the directory {} is read-only", d.display()),
                ));
            }
            return Ok(());
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unwritable_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.jsonl");
        let err = check_readable(&FileSelection::File(missing.clone()), false).unwrap_err();
        assert!(err.to_string().contains("none.jsonl"), "{err}");
        assert!(check_readable(&FileSelection::File(missing.clone()), true).is_ok());
        assert!(check_writable(&dir.path().join("new/deeper/out.jsonl")).is_ok());
        let err = check_writable(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let err = check_writable(&dir.path().join("plain/out.jsonl")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
