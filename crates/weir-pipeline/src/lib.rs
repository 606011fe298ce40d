//! Weir's YAML pipeline format.
//!
//! Owns the format (see `docs/pipeline-format.md` at the repository root), its parsing with
//! errors that name the file, line and key, its validation (every expression compiled and
//! type-checked before anything runs), and its planning onto the runtime of `weir-core` over
//! dynamic [`weir_types::Record`]s.

pub mod agent;
mod aggregate;
mod build;
mod checkpoints;
mod connect;
pub use weir_connectors::duration;
mod enrich;
mod event_time;
pub mod graph;
mod ingest;
mod join;
pub mod lifecycle;
mod locate;
pub mod multi;
mod outputs;
mod source;
pub mod spec;
mod steps;
mod task_step;
mod window;

pub use build::Built;
pub use checkpoints::{AbandonEarlierRuns, CheckpointPlan, Resume};
pub use connect::{CheckError, ConnectionCheck};
pub use locate::locate;
pub use outputs::Output;

use spec::PipelineSpec;
use std::fmt;
use std::path::{Path, PathBuf};
pub(crate) use weir_connectors::unique;
use weir_core::{Config, Environment};

/// A configuration error: the file, the line when known, the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PipelineError {
    pub file: String,
    pub line: Option<usize>,
    /// Dotted key path, e.g. `steps[2].filter`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A parsed pipeline file.
pub struct Pipeline {
    pub spec: PipelineSpec,
    file: String,
    text: String,
}

/// `settings.batch_timeout` by default: how long a source waits to fill a batch.
pub const DEFAULT_BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(5);
/// `settings.watermark_interval` by default (Flink's auto-watermark interval).
pub const DEFAULT_WATERMARK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl Pipeline {
    /// Reads and parses a pipeline file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PipelineError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses pipeline text; `file` names it in errors. `${VAR}` and `${VAR:-default}` in
    /// string values come from the process environment.
    pub fn parse(text: &str, file: &str) -> Result<Self, PipelineError> {
        Self::parse_with_env(text, file, &weir_schema::env::process_env)
    }

    /// [`Pipeline::parse`] for a pipeline whose `name` defaults to `name` (not to the file's
    /// stem): a pipeline agent's, named after its agent.
    pub fn parse_named(text: &str, file: &str, name: &str) -> Result<Self, PipelineError> {
        Self::parse_inner(text, file, &weir_schema::env::process_env, Some(name))
    }

    /// [`Pipeline::parse`] with variables looked up by `lookup`.
    pub fn parse_with_env(
        text: &str,
        file: &str,
        lookup: weir_schema::env::Lookup<'_>,
    ) -> Result<Self, PipelineError> {
        Self::parse_inner(text, file, lookup, None)
    }

    fn parse_inner(
        text: &str,
        file: &str,
        lookup: weir_schema::env::Lookup<'_>,
        default_name: Option<&str>,
    ) -> Result<Self, PipelineError> {
        // A byte order mark is an editor's artefact, not content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let error = |line: Option<usize>, key: Option<String>, message: String| PipelineError {
            file: file.to_string(),
            line,
            key,
            message,
        };
        // Before the YAML parser, whose time grows with the square of the nesting depth.
        weir_schema::nesting::check_nesting(text, weir_schema::nesting::MAX_NESTING)
            .map_err(|deep| error(Some(deep.line), None, deep.to_string()))?;
        // Steps are written as one-key maps (`- filter: ...`), not YAML tags.
        let spec: PipelineSpec = serde_yaml::with::singleton_map_recursive::deserialize(
            weir_schema::env::Expanding {
                inner: serde_yaml::Deserializer::from_str(text),
                lookup,
            },
        )
        .map_err(|e| {
            let (key, message) = split_yaml_message(&e.to_string());
            let mut line = e
                .location()
                .map(|l| l.line())
                .or_else(|| key.as_deref().and_then(|k| locate(text, k)));
            // A connector's option (unknown to its type, or read before its `type`): the
            // error is at the connector's map; name the option.
            let (key, message) = match (key, option_of(&message)) {
                (Some(at), Some((option, rest))) => {
                    let key = format!("{at}.{option}");
                    line = locate(text, &key).or(line);
                    (Some(key), rest.to_string())
                }
                (key, _) => (key, message),
            };
            match duplicate_key(&message) {
                // The error is at the map; name the lines of both entries.
                Some(dup) => match unique::key_lines(text, line.unwrap_or(1), dup)[..] {
                    [first, second] => error(
                        Some(second),
                        key.map(|k| format!("{k}.{dup}")),
                        format!("duplicate key `{dup}`: lines {first} and {second} (a key may appear once)"),
                    ),
                    _ => error(line, key, message),
                },
                None => error(line, key, message),
            }
        })?;
        let mut spec = spec;
        if spec.name.is_none() {
            spec.name = default_name.map(str::to_string);
        }
        let pipeline = Pipeline {
            spec,
            file: file.to_string(),
            text: text.to_string(),
        };
        pipeline.check_name()?;
        Ok(pipeline)
    }

    /// The name becomes a directory name (checkpoints, on-disk state): an identifier only.
    fn check_name(&self) -> Result<(), PipelineError> {
        let name = self.name();
        if is_pipeline_name(&name) {
            return Ok(());
        }
        let what = if self.spec.name.is_some() {
            "`name`".to_string()
        } else {
            "the file name (the default `name`)".to_string()
        };
        let shown: String = name.chars().flat_map(char::escape_debug).take(80).collect();
        let mut error = self.error_at(
            "name",
            format!(
                "{what} `{shown}` is not a pipeline name: use 1 to {MAX_NAME_LEN} letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`"
            ),
        );
        if self.spec.name.is_none() {
            error.line = None;
            error.key = None;
        }
        Err(error)
    }

    /// An error about `key`, located in the file.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> PipelineError {
        PipelineError {
            file: self.file.clone(),
            line: locate(&self.text, key),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// The sources with their keys: `source`, or `sources.<name>` for each named one.
    pub fn source_specs(&self) -> Vec<(String, &spec::SourceSpec)> {
        let one = self.spec.source.iter().map(|s| ("source".to_string(), s));
        let named = self
            .spec
            .sources
            .iter()
            .flatten()
            .map(|(n, s)| (format!("sources.{n}"), s));
        one.chain(named).collect()
    }

    /// The file the pipeline came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The pipeline's name (from the file, or the file's stem).
    pub fn name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| {
            PathBuf::from(&self.file)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "pipeline".into())
        })
    }

    /// The runtime configuration from the `settings` block (the state backend is set by
    /// [`Pipeline::build`], which can report a bad one).
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        let s = &self.spec.settings;
        if let Some(p) = s.parallelism {
            config.parallelism = p;
        }
        if let Some(b) = s.batch_size {
            config.batch_size = b;
        }
        let parse = |d: &Option<duration::Duration>| d.map(duration::Duration::get);
        config.batch_timeout = parse(&s.batch_timeout).unwrap_or(DEFAULT_BATCH_TIMEOUT);
        config.tick_interval = parse(&s.watermark_interval)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_WATERMARK_INTERVAL);
        if let Some(buffer) = &s.buffer {
            if let Some(size) = buffer.size {
                config.buffer_size = size;
            }
            if let Some(policy) = buffer.policy {
                config.buffer_policy = policy;
            }
        }
        // An invalid backend is reported by `build` and `validate`.
        config.state = weir_state::StoreFactory::new(self.state_backend().unwrap_or_default());
        config
    }

    /// The keyed-state backend from `settings.state`.
    pub fn state_backend(&self) -> Result<weir_state::StateBackend, PipelineError> {
        use spec::StateBackendKind;
        let Some(state) = &self.spec.settings.state else {
            return Ok(weir_state::StateBackend::Memory {});
        };
        match state.backend {
            StateBackendKind::Memory => {
                for (set, key) in [
                    (state.path.is_some(), "path"),
                    (state.memory_budget.is_some(), "memory_budget"),
                ] {
                    if set {
                        return Err(self.error_at(
                            &format!("settings.state.{key}"),
                            format!("`{key}` applies to the disk backend only"),
                        ));
                    }
                }
                Ok(weir_state::StateBackend::Memory {})
            }
            StateBackendKind::Disk => {
                let path = match &state.path {
                    Some(p) => build::resolve(self, p),
                    None => build::resolve(self, &PathBuf::from(".weir/state").join(self.name())),
                };
                let memory_budget = match &state.memory_budget {
                    None => 64 << 20,
                    Some(text) => parse_bytes(text).ok_or_else(|| {
                        self.error_at(
                            "settings.state.memory_budget",
                            format!("invalid size `{text}`: expected a number and a unit such as `256 KiB`, `64 MiB` or `1 GiB`"),
                        )
                    })?,
                };
                Ok(weir_state::StateBackend::Disk {
                    path,
                    memory_budget,
                })
            }
        }
    }

    /// Checks everything that can be checked without running: settings, expressions, field
    /// references, aggregate functions. Returns a one-line description of the plan.
    pub fn validate(&self) -> Result<String, PipelineError> {
        Ok(self.check()?.describe())
    }

    /// [`Pipeline::validate`], returning the plan (its description and its graph).
    pub fn check(&self) -> Result<Built, PipelineError> {
        let env = Environment::with_config(self.config());
        self.build(&env)
    }

    /// Adds the pipeline's dataflow to `env`.
    pub fn build(&self, env: &Environment) -> Result<Built, PipelineError> {
        build::build(self, env)
    }
}

/// The longest pipeline name.
pub const MAX_NAME_LEN: usize = 100;

/// A pipeline name: it names directories, so `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most
/// [`MAX_NAME_LEN`] characters (no `/`, no `..`, no leading `.` or `-`).
pub fn is_pipeline_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The key of a duplicate-key error from [`unique`].
fn duplicate_key(message: &str) -> Option<&str> {
    message
        .strip_prefix(unique::DUPLICATE_KEY)
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
}

/// The option a connector's error names at its start: for "`count` is not an option of ...",
/// `count` and the message kept whole; for "option `count`: message" (an option read before
/// the connector's `type`), `count` and the message.
fn option_of(message: &str) -> Option<(&str, &str)> {
    let is_name =
        |o: &str| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if let Some(rest) = message.strip_prefix("option `") {
        let (option, after) = rest.split_once('`')?;
        return after
            .strip_prefix(": ")
            .filter(|_| is_name(option))
            .map(|rest| (option, rest));
    }
    let (option, after) = message.strip_prefix('`')?.split_once('`')?;
    (is_name(option) && after.starts_with(" is not an option of ")).then_some((option, message))
}

/// `256 KiB`, `64MB`, `1 GiB`, `1000`: a byte count.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    Some((number * factor as f64) as u64)
}

/// yaml_serde's message is `path: message at line L column C`; keep the path and message.
fn split_yaml_message(text: &str) -> (Option<String>, String) {
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    let looks_like_path = |p: &str| {
        !p.is_empty()
            && !p.contains(' ')
            && p.chars()
                .all(|c| c.is_alphanumeric() || "_.[]-".contains(c))
    };
    match text.split_once(": ") {
        Some((path, message)) if looks_like_path(path) => {
            (Some(path.to_string()), message.to_string())
        }
        _ => (None, text.to_string()),
    }
}
