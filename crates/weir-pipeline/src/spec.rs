//! The YAML pipeline format, as serde types. Unknown keys are refused everywhere.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::PathBuf;
use weir_core::{BufferPolicy, Format};

pub use crate::enrich::EnrichHttpSpec;
pub use crate::join::JoinStep;
pub use crate::window::{LatePolicy, WindowKind, WindowStep};
pub use weir_connectors::http::{BodyFormat, Method};
pub use weir_resilience::PolicyConfig;

/// The names of a spec's options that are set: `Option` fields named like their YAML keys.
macro_rules! set_options {
    ($spec:expr; $($field:ident),* $(,)?) => {{
        let mut given = Vec::new();
        $(
            if $spec.$field.is_some() {
                given.push(stringify!($field));
            }
        )*
        given
    }};
}

/// A whole pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Shown in progress output and metrics.
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    /// Declared types of the input fields (optional): lets expressions be type-checked before
    /// the first record arrives.
    #[serde(default, deserialize_with = "crate::unique::keys")]
    pub fields: IndexMap<String, FieldType>,
    /// The one source of a linear pipeline (its stream is named `source`)...
    pub source: Option<SourceSpec>,
    /// ...or named sources, read by the steps and sinks that name them (a pipeline is a DAG).
    #[serde(default, deserialize_with = "crate::unique::optional_keys")]
    pub sources: Option<IndexMap<String, SourceSpec>>,
    #[serde(default)]
    pub steps: Vec<StepEntry>,
    /// One sink...
    pub sink: Option<SinkSpec>,
    /// ...or several, each receiving every record.
    pub sinks: Option<Vec<SinkSpec>>,
    /// Where records go that cannot be decoded or fail a step, with the reason.
    pub dead_letter: Option<SinkSpec>,
    /// The schema registry directory used by `validate`, `mask` and the ClickHouse sink.
    pub schemas: Option<PathBuf>,
}

/// Runtime settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub parallelism: Option<usize>,
    pub batch_size: Option<usize>,
    /// A source returns a partial batch when its input has had nothing more for this long.
    pub batch_timeout: Option<crate::duration::Duration>,
    /// How often idleness, processing-time timers and sink flushes run without new data.
    pub watermark_interval: Option<crate::duration::Duration>,
    pub buffer: Option<BufferSpec>,
    /// Periodic checkpoints; a restarted run resumes from the latest one.
    pub checkpoint: Option<CheckpointSpec>,
    /// Where keyed state lives.
    pub state: Option<StateSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `memory` (default) or `disk` (for state larger than memory).
    pub backend: StateBackendKind,
    /// disk: the directory (default `.weir/state/<pipeline name>` next to the pipeline file).
    pub path: Option<PathBuf>,
    /// disk: memory per operator instance for hot entries, e.g. `64 MiB` (the default).
    pub memory_budget: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackendKind {
    Memory,
    Disk,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// How often, e.g. `1s`, `500ms`.
    pub interval: Option<crate::duration::Duration>,
    /// Where checkpoints are stored (default `.weir/checkpoints/<pipeline name>` next to the
    /// pipeline file).
    pub dir: Option<PathBuf>,
    /// Completed checkpoints to keep (default 3).
    pub keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSpec {
    /// Records per channel.
    pub size: Option<usize>,
    pub policy: Option<BufferPolicy>,
}

/// Field types for declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Datetime,
    Json,
}

impl FieldType {
    pub fn kind(self) -> weir_types::ValueKind {
        use weir_types::ValueKind as K;
        match self {
            FieldType::String => K::Str,
            FieldType::Int => K::Int,
            FieldType::Float => K::Float,
            FieldType::Bool => K::Bool,
            FieldType::Datetime => K::Timestamp,
            FieldType::Json => K::Json,
        }
    }
}

/// Where records come from. One flat set of options with a `type`; which options apply to
/// which type is checked after parsing (so that every error keeps its line).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// file: the path (relative to the pipeline file): a file, a directory (every file in
    /// it) or a glob whose file name has `*` or `?` (`logs/*.jsonl`).
    pub path: Option<PathBuf>,
    /// file: keep reading as the file grows, across rotation and truncation (as `tail -F`);
    /// for a directory or glob, also read files added while running. The run then ends only
    /// by a stop (a signal, `stop_after_idle`, `limit`).
    pub follow: Option<bool>,
    /// file, stdin: `json_lines` or `csv`; a file's default follows its extension (`.csv` is
    /// CSV, anything else JSON lines), stdin's is `json_lines`.
    pub format: Option<Format>,
    /// file, stdin, CSV only: guess the types of undeclared columns (default true); false
    /// keeps every undeclared cell as its text.
    pub infer_types: Option<bool>,
    /// generator: records to make; endless when absent.
    pub count: Option<u64>,
    /// generator: records per second; as fast as possible when absent.
    pub rate: Option<f64>,
    /// generator: each field is an expression over `id` (0, 1, 2, ...).
    #[serde(default, deserialize_with = "crate::unique::optional_keys")]
    pub fields: Option<IndexMap<String, String>>,
    /// redis_stream: `redis://host:port[/db]`.
    pub url: Option<String>,
    /// redis_stream: the stream key.
    pub stream: Option<String>,
    /// redis_stream: the consumer group (created if missing).
    pub group: Option<String>,
    /// redis_stream: this reader's consumer name (default `weir`; suffixed with the instance).
    pub consumer: Option<String>,
    /// redis_stream: entries per read (default 500).
    pub read_count: Option<usize>,
    /// redis_stream: take over entries pending this long on a dead consumer (default 60s).
    pub claim_idle: Option<String>,
    /// redis_stream, followed file: stop (not drain) after this long without new input
    /// (default: never).
    pub stop_after_idle: Option<String>,
    /// Any type: each record's event time and this source's watermarks (what the time-based
    /// steps downstream — joins, union — use). Not an option of one type: not in `given`.
    pub event_time: Option<crate::graph::EventTimeSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A file of JSON lines or CSV.
    File,
    /// Standard input.
    Stdin,
    /// Deterministic records made from a counter.
    Generator,
    /// A Redis stream, through a consumer group.
    RedisStream,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Stdin => "stdin",
            SourceKind::Generator => "generator",
            SourceKind::RedisStream => "redis_stream",
        }
    }
}

impl SourceSpec {
    /// The options set in the file, by name.
    pub fn given(&self) -> Vec<&'static str> {
        set_options!(self;
            path, follow, format, infer_types, count, rate, fields, url, stream, group, consumer,
            read_count, claim_idle, stop_after_idle)
    }

    /// The options each type accepts.
    pub fn accepted(&self) -> &'static [&'static str] {
        match self.kind {
            SourceKind::File => &["path", "follow", "format", "infer_types", "stop_after_idle"],
            SourceKind::Stdin => &["format", "infer_types"],
            SourceKind::Generator => &["count", "rate", "fields"],
            SourceKind::RedisStream => &[
                "url",
                "stream",
                "group",
                "consumer",
                "read_count",
                "claim_idle",
                "stop_after_idle",
            ],
        }
    }
}

/// One processing step. Written as a one-key map: `- filter: "amount > 0"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// Keeps the records for which the expression is true.
    Filter(String),
    /// Sets fields from expressions; the record's other fields are kept.
    Map(#[serde(deserialize_with = "crate::unique::keys")] IndexMap<String, String>),
    /// Output records with only these fields, computed from expressions.
    Select(#[serde(deserialize_with = "crate::unique::keys")] IndexMap<String, String>),
    /// Removes fields.
    Drop(Vec<String>),
    /// Renames fields: `old: new`, or `{ fields: { old: new }, overwrite: true }`.
    Rename(RenameSpec),
    /// Partitions by one or more fields; the next step (aggregate) works per key.
    KeyBy(KeyFields),
    /// Per key: aggregates emitted once when the input ends. `name: function(expression)`.
    Aggregate(#[serde(deserialize_with = "crate::unique::keys")] IndexMap<String, String>),
    /// Per key: aggregates emitted after every record (a running total).
    RollingAggregate(#[serde(deserialize_with = "crate::unique::keys")] IndexMap<String, String>),
    /// Passes only the first N records, then stops the source.
    Limit(u64),
    /// Per key: aggregates over event-time windows (tumbling, sliding, session).
    Window(Box<WindowStep>),
    /// Copies fields from a table (a file of JSON lines) into each record, by key.
    Join(JoinStep),
    /// Checks records against a registered schema (coercing and filling defaults); records
    /// that fail go to the dead-letter output with the field and the reason.
    Validate(SchemaRef),
    /// Masks, hashes or drops the fields a schema marks sensitive.
    Mask(SchemaRef),
    /// Calls an HTTP service per record (under a resilience `policy`) and merges its JSON
    /// answer into the record; records whose call fails go to the dead-letter output.
    EnrichHttp(Box<EnrichHttpSpec>),
    /// Submits a task per record to Weir's task service and puts its result in a field
    /// (`into`); records whose task fails go to the dead-letter output.
    Task(Box<crate::task_step::TaskStepSpec>),
    /// Merges several streams with the same fields: `union: [eu_orders, us_orders]`.
    Union(Vec<String>),
    /// Pairs the records of two streams whose keys match and whose event times fall into the
    /// same window.
    WindowJoin(Box<crate::multi::WindowJoinSpec>),
    /// Pairs each left record with the right records of its key whose event times are in
    /// `[left + lower, left + upper]` (both bounds included, as Flink).
    IntervalJoin(Box<crate::multi::IntervalJoinSpec>),
    /// Joins each record with the latest record of its key in another stream at or before the
    /// record's event time (a versioned table).
    LookupJoin(Box<crate::multi::LookupJoinSpec>),
}

/// One entry of `steps`: the step, and optionally its `name` (which makes its output a named
/// stream other steps and sinks can read) and its `input` (a source or an earlier named step;
/// by default the previous step's output, or the only source for the first step):
///
/// ```yaml
/// - filter: "amount > 0"                 # the old form: one key
/// - name: big_orders
///   input: orders
///   filter: "amount > 100"
/// ```
#[derive(Debug)]
pub struct StepEntry {
    pub name: Option<String>,
    pub input: Option<String>,
    pub step: StepSpec,
}

/// The names of the step kinds, for errors.
pub const STEP_KINDS: &str = "filter, map, select, drop, rename, key_by, aggregate, rolling_aggregate, limit, window, join, validate, mask, enrich_http, task, union, window_join, interval_join, lookup_join";

impl<'de> Deserialize<'de> for StepEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(crate::graph::StepEntryVisitor)
    }
}

/// `rename: { old: new }`, or the long form `rename: { fields: { old: new }, overwrite: true }`
/// that may rename onto a field that exists (replacing it). Without `overwrite`, renaming onto
/// an existing field is an error: at validation when the fields are known, else per record.
#[derive(Debug, Default)]
pub struct RenameSpec {
    pub fields: IndexMap<String, String>,
    pub overwrite: bool,
}

impl<'de> Deserialize<'de> for RenameSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        /// One value of the map: a new name (short form) or a long form's option.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Name(String),
            Fields(#[serde(deserialize_with = "crate::unique::keys")] IndexMap<String, String>),
            Flag(bool),
        }
        let entries: IndexMap<String, Entry> = crate::unique::keys(d)?;
        let long = matches!(entries.get("fields"), Some(Entry::Fields(_)));
        let mut spec = RenameSpec::default();
        for (key, entry) in entries {
            match (long, key.as_str(), entry) {
                (false, _, Entry::Name(new)) => {
                    spec.fields.insert(key, new);
                }
                (true, "fields", Entry::Fields(fields)) => spec.fields = fields,
                (true, "overwrite", Entry::Flag(flag)) => spec.overwrite = flag,
                (true, "overwrite", _) => {
                    return Err(D::Error::custom("`overwrite` takes true or false"));
                }
                (true, other, _) => {
                    return Err(D::Error::custom(format_args!(
                        "unknown option `{other}` of the long form of rename; its options are `fields` and `overwrite`"
                    )));
                }
                (false, other, _) => {
                    return Err(D::Error::custom(format_args!(
                        "`{other}`: expected the new name of the field (`old: new`), or the long form `{{ fields: {{ old: new }}, overwrite: true }}`"
                    )));
                }
            }
        }
        Ok(spec)
    }
}

/// `validate: user.login` (latest version) or `validate: { schema: user.login, version: 2 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SchemaRef {
    Name(String),
    Versioned {
        schema: String,
        version: Option<u32>,
    },
}

impl SchemaRef {
    pub fn name(&self) -> &str {
        match self {
            SchemaRef::Name(n) | SchemaRef::Versioned { schema: n, .. } => n,
        }
    }

    pub fn version(&self) -> Option<u32> {
        match self {
            SchemaRef::Name(_) => None,
            SchemaRef::Versioned { version, .. } => *version,
        }
    }
}

impl StepSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            StepSpec::Filter(_) => "filter",
            StepSpec::Map(_) => "map",
            StepSpec::Select(_) => "select",
            StepSpec::Drop(_) => "drop",
            StepSpec::Rename(_) => "rename",
            StepSpec::KeyBy(_) => "key_by",
            StepSpec::Aggregate(_) => "aggregate",
            StepSpec::RollingAggregate(_) => "rolling_aggregate",
            StepSpec::Limit(_) => "limit",
            StepSpec::Window(_) => "window",
            StepSpec::Join(_) => "join",
            StepSpec::Validate(_) => "validate",
            StepSpec::Mask(_) => "mask",
            StepSpec::EnrichHttp(_) => "enrich_http",
            StepSpec::Task(_) => "task",
            StepSpec::Union(_) => "union",
            StepSpec::WindowJoin(_) => "window_join",
            StepSpec::IntervalJoin(_) => "interval_join",
            StepSpec::LookupJoin(_) => "lookup_join",
        }
    }
}

/// `key_by: user` or `key_by: [user, page]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeyFields {
    One(String),
    Many(Vec<String>),
}

impl KeyFields {
    pub fn fields(&self) -> Vec<String> {
        match self {
            KeyFields::One(f) => vec![f.clone()],
            KeyFields::Many(v) => v.clone(),
        }
    }
}

/// Where records go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// file: the path (relative to the pipeline file).
    pub path: Option<PathBuf>,
    /// clickhouse: the HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: Option<String>,
    /// clickhouse: the table (`name` or `db.name`).
    pub table: Option<String>,
    /// clickhouse: a registered schema: rows rendered by it, table created from it.
    pub schema: Option<String>,
    /// clickhouse: create the table from the schema if missing (default true).
    pub create_table: Option<bool>,
    /// clickhouse: most rows per insert (default 50000).
    pub batch_rows: Option<usize>,
    /// clickhouse: without checkpoints, insert at least this often (default 1s).
    pub flush_interval: Option<String>,
    /// clickhouse: retries of a failed insert (default 5).
    pub retries: Option<u32>,
    /// clickhouse: user name.
    pub user: Option<String>,
    /// clickhouse: the environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// redis_stream: the stream key.
    pub stream: Option<String>,
    /// redis_stream: trim the stream to about this many entries (`MAXLEN ~`).
    pub max_len: Option<usize>,
    /// http: `json_array` (default) or `json_lines`.
    pub format: Option<BodyFormat>,
    /// http: extra request headers.
    #[serde(default, deserialize_with = "crate::unique::optional_keys")]
    pub headers: Option<IndexMap<String, String>>,
    /// http: retries, backoff, timeouts, rate limit, circuit breaker of each request.
    pub policy: Option<PolicyConfig>,
    /// Any type: the source or named step whose records this sink writes (default: the last
    /// step's output). Not an option of one type: not in `given`.
    pub input: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Records as JSON lines on standard output.
    Stdout,
    /// Records as JSON lines in a file.
    File,
    /// Counts and discards (for measuring).
    Discard,
    /// Batched inserts into ClickHouse, exactly once with checkpoints.
    Clickhouse,
    /// Appends to a Redis stream, exactly once with checkpoints.
    RedisStream,
    /// Batches of records POSTed to a webhook, at least once.
    Http,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File => "file",
            SinkKind::Discard => "discard",
            SinkKind::Clickhouse => "clickhouse",
            SinkKind::RedisStream => "redis_stream",
            SinkKind::Http => "http",
        }
    }
}

impl SinkSpec {
    pub fn given(&self) -> Vec<&'static str> {
        set_options!(self;
            path, url, table, schema, create_table, batch_rows, flush_interval, retries, user,
            password_env, stream, max_len, format, headers, policy)
    }

    pub fn accepted(&self) -> &'static [&'static str] {
        match self.kind {
            SinkKind::File => &["path"],
            SinkKind::Stdout | SinkKind::Discard => &[],
            SinkKind::RedisStream => &["url", "stream", "max_len"],
            SinkKind::Clickhouse => &[
                "url",
                "table",
                "schema",
                "create_table",
                "batch_rows",
                "flush_interval",
                "retries",
                "user",
                "password_env",
            ],
            SinkKind::Http => &[
                "url",
                "format",
                "batch_rows",
                "flush_interval",
                "headers",
                "policy",
            ],
        }
    }
}
