//! A pipeline as a graph: named sources, steps that name their input(s), sinks that name
//! theirs. Resolves every name before anything is built, refusing unknown names, reads of
//! steps further down (so there are no cycles), steps given several inputs where they take
//! one, and sources or step outputs nobody reads; and describes the graph for `weir validate`.
//!
//! The linear form (`source:` and a list of steps) is the special case: one source named
//! `source`, each step reading the previous one, the sinks reading the last.

use crate::duration::Duration;
use crate::spec::{STEP_KINDS, SinkSpec, SourceSpec, StepEntry, StepSpec};
use crate::unique::DUPLICATE_KEY;
use crate::{Pipeline, PipelineError};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, VariantAccess, Visitor,
};
use std::fmt;

/// `event_time:` of a source: where each record's event time is, and how far behind the
/// newest event time a record may arrive (the source's watermarks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// An int (milliseconds since the epoch) or a datetime (also as text).
    pub field: String,
    /// How far behind the newest event time an event may arrive and still be on time
    /// (default 0s).
    pub watermark_delay: Option<Duration>,
    /// After this long without records, the source stops holding back event time.
    pub idle_timeout: Option<Duration>,
}

/// Reads one entry of `steps`: `name`, `input` and exactly one step kind.
pub(crate) struct StepEntryVisitor;

/// `input: a` (one stream), or a list (refused with a hint).
#[derive(Deserialize)]
#[serde(untagged)]
enum InputField {
    One(String),
    Many(Vec<String>),
}

impl<'de> Visitor<'de> for StepEntryVisitor {
    type Value = StepEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a step: a map with one of {STEP_KINDS} (and optionally `name` and `input`)"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepEntry, A::Error> {
        let (mut name, mut input, mut step): (Option<String>, Option<String>, Option<StepSpec>) =
            (None, None, None);
        let mut kind: Option<String> = None;
        let duplicate = |key: &str| {
            de::Error::custom(format_args!(
                "{DUPLICATE_KEY}{key}` (a key may appear once)"
            ))
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => {
                    if name.is_some() {
                        return Err(duplicate("name"));
                    }
                    name = Some(map.next_value()?);
                }
                "input" => {
                    if input.is_some() {
                        return Err(duplicate("input"));
                    }
                    input = Some(match map.next_value()? {
                        InputField::One(one) => one,
                        InputField::Many(many) => {
                            return Err(de::Error::custom(format_args!(
                                "`input` names one stream, found {} ({}): a step reading several streams is a `union` (`union: [a, b]`) or a join (`left:` and `right:`)",
                                many.len(),
                                many.join(", ")
                            )));
                        }
                    });
                }
                other => {
                    if let Some(first) = &kind {
                        if first == other {
                            return Err(duplicate(other));
                        }
                        return Err(de::Error::custom(format_args!(
                            "a step has one kind, found `{first}` and `{other}`: give each its own `- ` entry"
                        )));
                    }
                    step = Some(map.next_value_seed(KindSeed(other))?);
                    kind = Some(other.to_string());
                }
            }
        }
        let step = step
            .ok_or_else(|| de::Error::custom(format_args!("a step needs one of: {STEP_KINDS}")))?;
        Ok(StepEntry { name, input, step })
    }
}

/// Deserializes a [`StepSpec`] whose variant is the map key already read.
struct KindSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KindSeed<'_> {
    type Value = StepSpec;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StepSpec, D::Error> {
        StepSpec::deserialize(KindDeserializer {
            kind: self.0,
            inner: d,
        })
    }
}

/// An enum whose variant is `kind` and whose content is `inner` (the YAML deserializer, so
/// errors inside the step keep their line and key path).
struct KindDeserializer<'a, D> {
    kind: &'a str,
    inner: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KindDeserializer<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, D: Deserializer<'de>> EnumAccess<'de> for KindDeserializer<'_, D> {
    type Error = D::Error;
    type Variant = ContentOf<D>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, ContentOf<D>), D::Error> {
        let variant = seed.deserialize(de::value::StrDeserializer::<D::Error>::new(self.kind))?;
        Ok((variant, ContentOf(self.inner)))
    }
}

struct ContentOf<D>(D);

impl<'de, D: Deserializer<'de>> VariantAccess<'de> for ContentOf<D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        de::IgnoredAny::deserialize(self.0).map(|_| ())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, D::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct("step", fields, visitor)
    }
}

/// A node of the graph: a source or a step.
pub(crate) struct NodeInfo {
    /// The name others read it by (`None` for an unnamed step).
    pub name: Option<String>,
    /// Where it is in the file: `sources.orders`, `source`, `steps[3]`.
    pub key: String,
}

/// Every name resolved: the inputs of each step and sink, as node indices (sources first,
/// then steps in order).
pub(crate) struct Graph<'p> {
    pub sources: Vec<(String, &'p SourceSpec)>,
    pub nodes: Vec<NodeInfo>,
    /// Per step.
    pub step_inputs: Vec<Vec<usize>>,
    /// Per sink, with its key (`sink`, `sinks[1]`).
    pub sinks: Vec<(String, &'p SinkSpec, usize)>,
}

impl Graph<'_> {
    pub fn node_of_step(&self, step: usize) -> usize {
        self.sources.len() + step
    }

    /// How the node is shown: its name, or `steps[i] (kind)`.
    fn label(&self, p: &Pipeline, node: usize) -> String {
        let info = &self.nodes[node];
        match (&info.name, node.checked_sub(self.sources.len())) {
            (Some(name), _) => name.clone(),
            (None, Some(step)) => format!("{} ({})", info.key, p.spec.steps[step].step.kind()),
            (None, None) => info.key.clone(),
        }
    }
}

/// A name of a source or step: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The inputs a step names in its own options (union, joins), with their keys.
fn named_inputs(entry: &StepEntry) -> Option<Vec<(String, Option<&str>)>> {
    use crate::multi::TwoInputs;
    fn two(j: &dyn TwoInputs) -> Vec<(String, Option<&str>)> {
        vec![
            ("left".to_string(), j.left()),
            ("right".to_string(), Some(j.right())),
        ]
    }
    match &entry.step {
        StepSpec::Union(names) => Some(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("[{i}]"), Some(n.as_str())))
                .collect(),
        ),
        StepSpec::WindowJoin(j) => Some(two(j.as_ref())),
        StepSpec::IntervalJoin(j) => Some(two(j.as_ref())),
        StepSpec::LookupJoin(j) => Some(two(j.as_ref())),
        _ => None,
    }
}

/// Resolves every name of the pipeline.
pub(crate) fn resolve(p: &Pipeline) -> Result<Graph<'_>, PipelineError> {
    let spec = &p.spec;
    let sources: Vec<(String, &SourceSpec)> = match (&spec.source, &spec.sources) {
        (Some(_), Some(_)) => {
            return Err(p.error_at(
                "sources",
                "give either `source` (one) or `sources` (named), not both",
            ));
        }
        (Some(s), None) => vec![("source".to_string(), s)],
        (None, Some(named)) if !named.is_empty() => {
            named.iter().map(|(n, s)| (n.clone(), s)).collect()
        }
        (None, Some(_)) => return Err(p.error_at("sources", "needs at least one source")),
        (None, None) => {
            return Err(p.error_at(
                "source",
                "the pipeline needs a `source` (or named `sources`)",
            ));
        }
    };
    if spec.sources.is_some() && !spec.fields.is_empty() {
        return Err(p.error_at(
            "fields",
            "`fields` declares the types of the one `source`; with named `sources` the fields are not declared (remove `fields`)",
        ));
    }
    let mut nodes: Vec<NodeInfo> = Vec::new();
    for (name, _) in &sources {
        let key = if spec.source.is_some() {
            "source".to_string()
        } else {
            format!("sources.{name}")
        };
        if !is_name(name) {
            return Err(p.error_at(
                &key,
                format!("`{name}` is not a stream name: use letters, digits and `_`, starting with a letter or `_`"),
            ));
        }
        nodes.push(NodeInfo {
            name: Some(name.clone()),
            key,
        });
    }
    for (i, entry) in spec.steps.iter().enumerate() {
        let key = format!("steps[{i}]");
        if let Some(name) = &entry.name {
            let at = format!("{key}.name");
            if !is_name(name) {
                return Err(p.error_at(
                    &at,
                    format!("`{name}` is not a stream name: use letters, digits and `_`, starting with a letter or `_`"),
                ));
            }
            if let Some(other) = nodes.iter().find(|n| n.name.as_deref() == Some(name)) {
                return Err(p.error_at(
                    &at,
                    format!(
                        "`{name}` is already the name of `{}`: names are unique",
                        other.key
                    ),
                ));
            }
        }
        nodes.push(NodeInfo {
            name: entry.name.clone(),
            key,
        });
    }

    // A name read at `at` by node `reader`: an earlier node.
    let lookup = |name: &str, at: &str, reader: usize| -> Result<usize, PipelineError> {
        match nodes.iter().position(|n| n.name.as_deref() == Some(name)) {
            Some(i) if i < reader => Ok(i),
            Some(i) => Err(p.error_at(
                at,
                format!(
                    "`{name}` is `{}`, {}: a step reads only sources and steps above it (so the graph has no cycles)",
                    nodes[i].key,
                    if i == reader { "this step itself" } else { "further down" }
                ),
            )),
            None => {
                let known: Vec<&str> = nodes[..reader.min(nodes.len())]
                    .iter()
                    .filter_map(|n| n.name.as_deref())
                    .collect();
                Err(p.error_at(
                    at,
                    format!(
                        "unknown input `{name}`; the sources and named steps above are: {}",
                        known.join(", ")
                    ),
                ))
            }
        }
    };
    // What a step or sink without `input` reads: the previous step, or the only source.
    let previous = |reader: usize, at: &str, what: &str| -> Result<usize, PipelineError> {
        if reader > sources.len() {
            return Ok(reader - 1);
        }
        if sources.len() == 1 {
            return Ok(0);
        }
        Err(p.error_at(
            at,
            format!(
                "the pipeline has several sources ({}): {what}",
                sources
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    };

    let mut step_inputs = Vec::with_capacity(spec.steps.len());
    for (i, entry) in spec.steps.iter().enumerate() {
        let reader = sources.len() + i;
        let key = format!("steps[{i}]");
        let kind = entry.step.kind();
        let inputs = match named_inputs(entry) {
            Some(named) => {
                if entry.input.is_some() {
                    let how = if kind == "union" {
                        "`union: [a, b]`".to_string()
                    } else {
                        format!("`{kind}: {{ left: a, right: b }}`")
                    };
                    return Err(p.error_at(
                        &format!("{key}.input"),
                        format!("a `{kind}` step names its inputs itself ({how}), not in `input`"),
                    ));
                }
                if kind == "union" && named.len() < 2 {
                    return Err(p.error_at(
                        &format!("{key}.union"),
                        format!("a union merges at least two streams, found {}", named.len()),
                    ));
                }
                let mut inputs = Vec::new();
                for (field, name) in named {
                    let at = if kind == "union" {
                        format!("{key}.union")
                    } else {
                        format!("{key}.{kind}.{field}")
                    };
                    let node = match name {
                        Some(name) => lookup(name, &at, reader)?,
                        None => {
                            previous(reader, &format!("{key}.{kind}"), "name the `left` input")?
                        }
                    };
                    if inputs.contains(&node) {
                        return Err(p.error_at(
                            &at,
                            format!(
                                "`{}` is read twice by this step: its inputs must be different streams",
                                nodes[node].name.as_deref().unwrap_or(&nodes[node].key)
                            ),
                        ));
                    }
                    inputs.push(node);
                }
                inputs
            }
            None => vec![match &entry.input {
                Some(name) => lookup(name, &format!("{key}.input"), reader)?,
                None => previous(reader, &key, "name this step's `input`")?,
            }],
        };
        step_inputs.push(inputs);
    }

    let mut sink_specs: Vec<(String, &SinkSpec)> = match (&spec.sink, &spec.sinks) {
        (Some(_), Some(_)) => {
            return Err(p.error_at("sinks", "give either `sink` or `sinks`, not both"));
        }
        (Some(s), None) => vec![("sink".to_string(), s)],
        (None, Some(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("sinks[{i}]"), s))
            .collect(),
        _ => return Err(p.error_at("sink", "the pipeline needs a `sink` (or `sinks`)")),
    };
    if let Some(dlq) = &spec.dead_letter
        && dlq.input.is_some()
    {
        return Err(p.error_at(
            "dead_letter.input",
            "the dead-letter output receives the failures of every step: it takes no `input`",
        ));
    }
    let mut sinks = Vec::with_capacity(sink_specs.len());
    for (key, sink) in sink_specs.drain(..) {
        let end = nodes.len();
        let node = match &sink.input {
            Some(name) => lookup(name, &format!("{key}.input"), end)?,
            None => previous(end, &key, "name the sink's `input`")?,
        };
        sinks.push((key, sink, node));
    }

    // Every source and step output is read by someone.
    let mut readers = vec![0usize; nodes.len()];
    for inputs in &step_inputs {
        for &i in inputs {
            readers[i] += 1;
        }
    }
    for (_, _, i) in &sinks {
        readers[*i] += 1;
    }
    if let Some(unread) = readers.iter().position(|&n| n == 0) {
        let info = &nodes[unread];
        let message = match &info.name {
            Some(name) if unread < sources.len() => format!(
                "the source `{name}` is never read: name it in a step's `input` (or a join's `left`/`right`, a `union`, a sink's `input`), or remove it"
            ),
            Some(name) => format!(
                "the output of `{name}` is never read: name it in a step's or sink's `input`, or remove the step"
            ),
            None => "the output of this step is never read (the next step names another `input`): give it a `name` and read it, or remove it".to_string(),
        };
        let at = match &info.name {
            Some(_) if unread >= sources.len() => format!("{}.name", info.key),
            _ => info.key.clone(),
        };
        return Err(p.error_at(&at, message));
    }
    Ok(Graph {
        sources,
        nodes,
        step_inputs,
        sinks,
    })
}

/// The graph as text: one line per source, step and sink, each with its inputs. Stable (the
/// order of the file), for `weir validate`.
pub(crate) fn describe(p: &Pipeline, graph: &Graph<'_>, source_labels: &[String]) -> String {
    let mut out = String::new();
    for (i, (name, spec)) in graph.sources.iter().enumerate() {
        out.push_str(&format!(
            "  source {name}: {}",
            source_labels.get(i).map_or("", String::as_str)
        ));
        if let Some(t) = &spec.event_time {
            out.push_str(&format!(
                ", event time `{}` (watermark delay {})",
                t.field,
                t.watermark_delay.as_ref().map_or("0s", |d| d.text())
            ));
        }
        out.push('\n');
    }
    for (i, inputs) in graph.step_inputs.iter().enumerate() {
        let node = graph.node_of_step(i);
        let reads: Vec<String> = inputs.iter().map(|&n| graph.label(p, n)).collect();
        let label = match &graph.nodes[node].name {
            Some(name) => format!("{name} ({})", p.spec.steps[i].step.kind()),
            None => graph.label(p, node),
        };
        out.push_str(&format!("  step {label} <- {}\n", reads.join(", ")));
    }
    for (key, sink, node) in &graph.sinks {
        out.push_str(&format!(
            "  sink {key} ({}) <- {}\n",
            sink.kind().name(),
            graph.label(p, *node)
        ));
    }
    if let Some(dlq) = &p.spec.dead_letter {
        out.push_str(&format!(
            "  dead_letter ({}) <- failures and late events of every step\n",
            dlq.kind().name()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Pipeline;

    const SOURCES: &str = "sources:\n  a:\n    type: generator\n    count: 3\n    fields: { id: id, ts: \"id * 10\" }\n    event_time: { field: ts }\n  b:\n    type: generator\n    count: 3\n    fields: { id: id, ts: \"id * 10\" }\n    event_time: { field: ts }\n";

    /// `line: key: message` of the validation error, or the graph.
    fn check(rest: &str) -> Result<String, String> {
        let text = format!("name: t\n{SOURCES}{rest}");
        let p = Pipeline::parse(&text, "p.yaml").map_err(|e| {
            format!(
                "{}: {}: {}",
                e.line.unwrap_or(0),
                e.key.unwrap_or_default(),
                e.message
            )
        })?;
        p.check().map(|b| b.graph().to_string()).map_err(|e| {
            format!(
                "{}: {}: {}",
                e.line.unwrap_or(0),
                e.key.unwrap_or_default(),
                e.message
            )
        })
    }

    const SINK: &str = "sink:\n  type: discard\n";

    #[test]
    fn a_dag_resolves_and_prints_its_graph() {
        let graph = check(&format!(
            "steps:\n  - name: both\n    union: [a, b]\n  - filter: \"id > 0\"\n{SINK}"
        ))
        .unwrap();
        assert_eq!(
            graph,
            "  source a: generator (3 records), event time `ts` (watermark delay 0s)\n  source b: generator (3 records), event time `ts` (watermark delay 0s)\n  step both (union) <- a, b\n  step steps[1] (filter) <- both\n  sink sink (discard) <- steps[1] (filter)\n"
        );
    }

    #[test]
    fn unknown_later_and_own_names_are_refused_with_their_line() {
        let e = check(&format!("steps:\n  - name: x\n    union: [a, c]\n{SINK}")).unwrap_err();
        assert_eq!(
            e,
            "15: steps[0].union: unknown input `c`; the sources and named steps above are: a, b"
        );
        let e = check(&format!(
            "steps:\n  - name: x\n    input: y\n    filter: \"id > 0\"\n  - name: y\n    union: [x, b]\n  - union: [a, y]\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("15: steps[0].input: `y` is `steps[1]`, further down: a step reads only sources and steps above it"),
            "{e}"
        );
        let e = check(&format!(
            "steps:\n  - name: x\n    input: x\n    filter: \"id > 0\"\n{SINK}"
        ))
        .unwrap_err();
        assert!(e.contains("`x` is `steps[0]`, this step itself"), "{e}");
    }

    #[test]
    fn unread_sources_and_steps_are_refused() {
        let e = check(&format!(
            "steps:\n  - input: a\n    filter: \"id > 0\"\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("8: sources.b: the source `b` is never read"),
            "{e}"
        );
        let e = check(&format!(
            "steps:\n  - input: a\n    filter: \"id > 0\"\n  - union: [a, b]\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("14: steps[0]: the output of this step is never read"),
            "{e}"
        );
    }

    #[test]
    fn a_step_of_one_input_refuses_several() {
        let e = check(&format!(
            "steps:\n  - input: [a, b]\n    filter: \"id > 0\"\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            e.contains("`input` names one stream, found 2 (a, b): a step reading several streams is a `union`"),
            "{e}"
        );
        let e = check(&format!("steps:\n  - filter: \"id > 0\"\n{SINK}")).unwrap_err();
        assert!(
            e.starts_with(
                "14: steps[0]: the pipeline has several sources (a, b): name this step's `input`"
            ),
            "{e}"
        );
        let e = check(&format!("steps:\n  - input: a\n    union: [a, b]\n{SINK}")).unwrap_err();
        assert!(e.contains("a `union` step names its inputs itself"), "{e}");
        let e = check(&format!(
            "steps:\n  - union: [a, b]\n    filter: \"id > 0\"\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            e.contains("a step has one kind, found `union` and `filter`"),
            "{e}"
        );
    }

    #[test]
    fn names_are_unique_and_fields_need_one_source() {
        let e = check(&format!("steps:\n  - name: a\n    union: [a, b]\n{SINK}")).unwrap_err();
        assert!(
            e.starts_with("14: steps[0].name: `a` is already the name of `sources.a`"),
            "{e}"
        );
        let text =
            format!("name: t\nfields: {{ id: int }}\n{SOURCES}steps:\n  - union: [a, b]\n{SINK}");
        let e = Pipeline::parse(&text, "p.yaml")
            .unwrap()
            .check()
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("fields"));
    }

    #[test]
    fn joins_check_keys_event_time_and_colliding_names() {
        let join = |extra: &str| {
            format!(
                "steps:\n  - interval_join:\n      left: a\n      right: b\n      left_key: id\n      lower: 0s\n      upper: 1s\n{extra}{SINK}dead_letter:\n  type: discard\n"
            )
        };
        let e = check(&join("")).unwrap_err();
        assert!(
            e.starts_with("14: steps[0].interval_join: the field `id` would be on both sides of the join's output: set `left_prefix` or `right_prefix`"),
            "{e}"
        );
        assert!(check(&join("      right_prefix: b_\n")).is_ok());
        let e = check(&join("      right_prefix: b_\n      right_key: idx\n")).unwrap_err();
        assert!(
            e.contains("steps[0].interval_join.right_key: unknown field `idx`"),
            "{e}"
        );
        let e = check(&join("      right_prefix: b_\n      lower: 2s\n")).unwrap_err();
        assert!(e.contains("duplicate field `lower`"), "{e}");
        let e =
            check(&join("      right_prefix: b_\n").replace("lower: 0s", "lower: 2s")).unwrap_err();
        assert!(e.contains("`lower` (2s) is after `upper` (1s)"), "{e}");
        let e =
            check(&join("      right_prefix: b_\n").replace("upper: 1s", "upper: 1")).unwrap_err();
        assert!(
            e.starts_with("19: steps[0].interval_join.upper: expected a duration such as 5ms|2s|1m|1h, found the number 1"),
            "{e}"
        );
        // Without event time on an input.
        let text = format!(
            "name: t\n{}{}",
            SOURCES.replacen("    event_time: { field: ts }\n", "", 1),
            join("      right_prefix: b_\n")
        );
        let e = Pipeline::parse(&text, "p.yaml")
            .unwrap()
            .check()
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("steps[0].interval_join.left"));
        assert!(e.message.contains("`a` has no event time"), "{}", e.message);
    }
}
