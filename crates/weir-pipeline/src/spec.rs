//! The YAML pipeline format, as serde types. Unknown keys are refused everywhere.

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::MapAccess;
use std::path::PathBuf;
use weir_connectors::config::{Common, deserialize_tagged};
use weir_core::BufferPolicy;

pub use crate::enrich::EnrichHttpSpec;
pub use crate::join::JoinStep;
pub use crate::window::{LatePolicy, WindowKind, WindowStep};
pub use weir_connectors::config::{SinkConfig, SinkKind, SourceConfig, SourceKind};
pub use weir_connectors::http::{BodyFormat, Method};
pub use weir_resilience::PolicyConfig;

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

/// Where records come from: a connector `type` and that connector's typed options (each
/// connector's folder in weir-connectors owns them), and `event_time`, which any source takes.
#[derive(Debug)]
pub struct SourceSpec {
    pub config: SourceConfig,
    /// Each record's event time and this source's watermarks (what the time-based steps
    /// downstream — joins, union — use).
    pub event_time: Option<crate::graph::EventTimeSpec>,
}

impl SourceSpec {
    pub fn kind(&self) -> SourceKind {
        self.config.kind()
    }
}

/// The options every source takes.
#[derive(Default)]
struct SourceCommon {
    event_time: Option<crate::graph::EventTimeSpec>,
}

impl<'de> Common<'de> for SourceCommon {
    const KEYS: &'static [&'static str] = &["event_time"];
    fn read<A: MapAccess<'de>>(&mut self, _: &'static str, map: &mut A) -> Result<(), A::Error> {
        if self.event_time.is_some() {
            return Err(serde::de::Error::custom(format_args!(
                "{}event_time` (a key may appear once)",
                weir_connectors::unique::DUPLICATE_KEY
            )));
        }
        self.event_time = Some(map.next_value()?);
        Ok(())
    }
}

impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (config, common): (SourceConfig, SourceCommon) = deserialize_tagged(d)?;
        Ok(SourceSpec {
            config,
            event_time: common.event_time,
        })
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
    /// One record per element of an array field, or per piece of a split string field.
    Explode(crate::steps::explode::ExplodeSpec),
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
pub const STEP_KINDS: &str = "filter, map, select, drop, rename, key_by, aggregate, rolling_aggregate, limit, explode, window, join, validate, mask, enrich_http, task, union, window_join, interval_join, lookup_join";

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
            StepSpec::Explode(_) => "explode",
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

/// Where records go: a connector `type` and that connector's typed options, and `input`,
/// which any sink takes.
#[derive(Debug)]
pub struct SinkSpec {
    pub config: SinkConfig,
    /// The source or named step whose records this sink writes (default: the last step's
    /// output).
    pub input: Option<String>,
}

impl SinkSpec {
    pub fn kind(&self) -> SinkKind {
        self.config.kind()
    }
}

/// The options every sink takes.
#[derive(Default)]
struct SinkCommon {
    input: Option<String>,
}

impl<'de> Common<'de> for SinkCommon {
    const KEYS: &'static [&'static str] = &["input"];
    fn read<A: MapAccess<'de>>(&mut self, _: &'static str, map: &mut A) -> Result<(), A::Error> {
        if self.input.is_some() {
            return Err(serde::de::Error::custom(format_args!(
                "{}input` (a key may appear once)",
                weir_connectors::unique::DUPLICATE_KEY
            )));
        }
        self.input = Some(map.next_value()?);
        Ok(())
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (config, common): (SinkConfig, SinkCommon) = deserialize_tagged(d)?;
        Ok(SinkSpec {
            config,
            input: common.input,
        })
    }
}
