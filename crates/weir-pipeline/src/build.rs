//! Plans a pipeline spec onto the runtime.

use crate::aggregate::{Acc, Aggregation};
use crate::source::SourceOutput;
use crate::spec::{SourceSpec, StepSpec};
use crate::steps::{
    AggregateOp, Routed, RoutedStepOp, Stage, StepOp, Transform, bad_input, key_of,
};
use crate::{Pipeline, PipelineError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_core::{Environment, Operator, OperatorContext, OperatorError, Stream};
use weir_expr::{Expr, FieldTypes, Projection};
use weir_state::MemoryStore;
use weir_types::{Record, Shape};

/// What was built, for display.
pub struct Built {
    source: String,
    steps: usize,
    sinks: usize,
    dead_letter: bool,
    warnings: Vec<String>,
    graph: String,
}

impl Built {
    /// Settings that do not apply to this pipeline, and why (to show before running).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The graph: one line per source, step and sink, with each one's inputs.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    pub fn describe(&self) -> String {
        format!(
            "{} → {} step{} → {} sink{}{}",
            self.source,
            self.steps,
            if self.steps == 1 { "" } else { "s" },
            self.sinks,
            if self.sinks == 1 { "" } else { "s" },
            if self.dead_letter {
                " (+ dead-letter output)"
            } else {
                ""
            }
        )
    }
}

/// Passes records on unchanged (a repartition by key without an aggregate after it).
struct Pass;

impl Operator<Record, Record> for Pass {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Record>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        out.append(input);
        Ok(())
    }
}

/// Relative paths in a pipeline file are relative to the file's directory.
pub(crate) fn resolve(pipeline: &Pipeline, path: &Path) -> PathBuf {
    if path.is_absolute() || path == Path::new("-") {
        return path.to_path_buf();
    }
    match Path::new(pipeline.file()).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

struct Planner<'p> {
    pipeline: &'p Pipeline,
    route_errors: bool,
    dead: Vec<Stream<Record>>,
}

impl Planner<'_> {
    /// Splits a step's routed output: records go on, failures to the dead-letter output.
    fn routed(&mut self, routed: Stream<Routed>) -> Stream<Record> {
        let (ok, failed) = routed.split_result();
        if self.route_errors {
            self.dead.push(failed);
        }
        ok
    }

    fn decoded(&mut self, raw: Stream<weir_connectors::ReadResult>) -> Stream<Record> {
        if self.route_errors {
            let (ok, bad) = raw.split_result();
            self.dead.push(bad.map(bad_input).name("source_errors"));
            ok
        } else {
            raw.try_map(|r| r).name("decode")
        }
    }

    /// Plans the source `spec`, found at `at` (`source` or `sources.<name>`).
    fn source(
        &mut self,
        env: &Environment,
        fields: &mut FieldTypes,
        at: &str,
        spec: &SourceSpec,
    ) -> Result<(Stream<Record>, String), PipelineError> {
        let p = self.pipeline;
        let (output, label) = spec.build(p, at, env, fields)?;
        let records = match output {
            SourceOutput::Read(raw) => self.decoded(raw),
            SourceOutput::Records(records) => records,
        };
        Ok((records, label))
    }
}

/// Stateless steps planned but not built yet (the next step joins them): the stream they
/// read, the steps, and the fields, event-time field and key after them.
type PendingChain = (
    Stream<Record>,
    Vec<Stage>,
    FieldTypes,
    Option<Arc<str>>,
    Option<Vec<String>>,
);

/// The steps that change one record at a time, with no state: consecutive ones run as one
/// operator.
fn is_stateless(step: &StepSpec) -> bool {
    matches!(
        step,
        StepSpec::Filter(_)
            | StepSpec::Map(_)
            | StepSpec::Select(_)
            | StepSpec::Drop(_)
            | StepSpec::Rename(_)
    )
}

/// A stream of the plan, with what the planner knows about its records.
pub(crate) struct Node {
    pub(crate) stream: Stream<Record>,
    pub(crate) fields: FieldTypes,
    /// Set by `key_by`: the key of the aggregates and windows after it.
    pub(crate) key: Option<Vec<String>>,
    /// The field its event time is read from (its source's `event_time`), while it has one.
    pub(crate) time: Option<Arc<str>>,
    /// How errors name it: the source's or step's name, or its key.
    pub(crate) label: String,
}

pub(crate) fn build(p: &Pipeline, env: &Environment) -> Result<Built, PipelineError> {
    let spec = &p.spec;
    // Checked here so that `validate` reports a bad backend; the caller applies it.
    p.state_backend()?;
    crate::outputs::check_outputs_do_not_clash(p)?;
    if let Some(0) = spec.settings.parallelism {
        return Err(p.error_at("settings.parallelism", "must be at least 1"));
    }
    if let Some(0) = spec.settings.batch_size {
        return Err(p.error_at("settings.batch_size", "must be at least 1"));
    }
    if spec
        .settings
        .watermark_interval
        .is_some_and(|d| d.get().is_zero())
    {
        return Err(p.error_at("settings.watermark_interval", "must be longer than zero"));
    }
    // Every name resolved before anything is built.
    let graph = crate::graph::resolve(p)?;
    let mut planner = Planner {
        pipeline: p,
        route_errors: spec.dead_letter.is_some(),
        dead: Vec::new(),
    };
    let mut nodes: Vec<Node> = Vec::with_capacity(graph.nodes.len());
    let mut source_labels = Vec::new();
    for (name, source) in &graph.sources {
        let at = if spec.source.is_some() {
            "source".to_string()
        } else {
            format!("sources.{name}")
        };
        let mut fields = if spec.fields.is_empty() {
            FieldTypes::dynamic()
        } else {
            spec.fields
                .iter()
                .map(|(name, t)| (name.as_str(), t.kind()))
                .collect()
        };
        let (mut stream, label) = planner.source(env, &mut fields, &at, source)?;
        let mut time = None;
        if let Some(event_time) = &source.event_time {
            stream = crate::event_time::assign(
                p,
                &at,
                event_time,
                &stream,
                &fields,
                planner.route_errors,
                &mut planner.dead,
            )?;
            time = Some(Arc::from(event_time.field.as_str()));
        }
        source_labels.push(label);
        nodes.push(Node {
            stream,
            fields,
            key: None,
            time,
            label: name.clone(),
        });
    }

    // How many steps and sinks read each node: a stateless step read only by the next
    // stateless step runs in one operator with it.
    let mut readers = vec![0usize; graph.sources.len() + spec.steps.len()];
    for &input in graph.step_inputs.iter().flatten() {
        readers[input] += 1;
    }
    for (_, _, node) in &graph.sinks {
        readers[*node] += 1;
    }
    let mut chain: Option<PendingChain> = None;
    for (i, entry) in spec.steps.iter().enumerate() {
        let inputs = &graph.step_inputs[i];
        let stage: Arc<str> = format!("steps[{i}].{}", entry.step.kind()).into();
        let label = entry.name.clone().unwrap_or_else(|| format!("steps[{i}]"));
        let node = match &entry.step {
            StepSpec::Union(_) => {
                let ins: Vec<&Node> = inputs.iter().map(|&n| &nodes[n]).collect();
                crate::multi::union::union(p, &stage, &ins)?
            }
            StepSpec::IntervalJoin(j) => {
                planner
                    .join(stage)
                    .interval(j, &nodes[inputs[0]], &nodes[inputs[1]])?
            }
            StepSpec::WindowJoin(j) => {
                planner
                    .join(stage)
                    .window(j, &nodes[inputs[0]], &nodes[inputs[1]])?
            }
            StepSpec::LookupJoin(j) => {
                planner
                    .join(stage)
                    .lookup(j, &nodes[inputs[0]], &nodes[inputs[1]])?
            }
            step if is_stateless(step) => {
                let (stream, mut stages, mut fields, mut time, key) = match chain.take() {
                    Some(pending) => pending,
                    None => {
                        let input = &nodes[inputs[0]];
                        (
                            input.stream.clone(),
                            Vec::new(),
                            input.fields.clone(),
                            input.time.clone(),
                            input.key.clone(),
                        )
                    }
                };
                let transform = planner
                    .stateless(&stage, step, &mut fields, &mut time)?
                    .expect("a stateless step");
                stages.push(Stage {
                    transform,
                    stage: stage.clone(),
                });
                // The next step joins this chain when it is stateless too and the only reader
                // of this step's output.
                let this = graph.sources.len() + i;
                let fuse_next = readers[this] == 1
                    && spec
                        .steps
                        .get(i + 1)
                        .is_some_and(|next| is_stateless(&next.step))
                    && graph
                        .step_inputs
                        .get(i + 1)
                        .is_some_and(|ins| ins[..] == [this]);
                let node = Node {
                    stream: if fuse_next {
                        // Read by no one: the next step continues the chain.
                        stream.clone()
                    } else {
                        planner.chain(&stream, std::mem::take(&mut stages))
                    },
                    fields: fields.clone(),
                    key: key.clone(),
                    time: time.clone(),
                    label: String::new(),
                };
                if fuse_next {
                    chain = Some((stream, stages, fields, time, key));
                }
                node
            }
            step => {
                let input = &nodes[inputs[0]];
                // A key_by whose key the next step (reading it implicitly) aggregates by
                // hands the key on without a repartition of its own.
                let keyed_for_next = entry.name.is_none()
                    && spec.steps.get(i + 1).is_some_and(|next| {
                        next.input.is_none()
                            && matches!(
                                next.step,
                                StepSpec::Aggregate(_)
                                    | StepSpec::RollingAggregate(_)
                                    | StepSpec::Window(_)
                            )
                    });
                planner.step(env, i, step, input, keyed_for_next)?
            }
        };
        nodes.push(Node { label, ..node });
    }

    for (name, sink, node) in &graph.sinks {
        sink.build(p, name, &nodes[*node].stream)?;
    }
    if let Some(dlq) = &spec.dead_letter {
        let dead = match planner.dead.split_first() {
            Some((first, rest)) => first.union(rest).name("dead_letters"),
            None => env.from_iter(std::iter::empty::<Record>()),
        };
        dlq.build(p, "dead_letter", &dead)?;
    }
    let described = crate::graph::describe(p, &graph, &source_labels);
    Ok(Built {
        source: match &source_labels[..] {
            [one] => one.clone(),
            many => format!(
                "{} sources ({})",
                many.len(),
                graph
                    .sources
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        steps: spec.steps.len(),
        sinks: graph.sinks.len(),
        dead_letter: spec.dead_letter.is_some(),
        warnings: parallelism_warnings(p, env.config().parallelism),
        graph: described,
    })
}

impl<'p> Planner<'p> {
    fn join(&mut self, stage: Arc<str>) -> crate::multi::JoinPlan<'_> {
        crate::multi::JoinPlan {
            pipeline: self.pipeline,
            stage,
            route_errors: self.route_errors,
            dead: &mut self.dead,
        }
    }

    /// Plans a stateless step (filter, map, select, drop, rename): what it does to a record,
    /// and the fields and event-time field after it; `None` for other steps.
    fn stateless(
        &self,
        stage: &str,
        step: &StepSpec,
        fields: &mut FieldTypes,
        time: &mut Option<Arc<str>>,
    ) -> Result<Option<Transform>, PipelineError> {
        let p = self.pipeline;
        let err = |message: String| p.error_at(stage, message);
        let transform = match step {
            StepSpec::Filter(source) => Some(Transform::Filter(
                Expr::compile_filter(source, fields).map_err(|e| err(e.to_string()))?,
            )),
            StepSpec::Map(exprs) | StepSpec::Select(exprs) => {
                for (name, source) in exprs {
                    Expr::compile(source, fields)
                        .map_err(|e| p.error_at(&format!("{stage}.{name}"), e.to_string()))?;
                }
                let pairs: Vec<(&str, &str)> = exprs
                    .iter()
                    .map(|(n, s)| (n.as_str(), s.as_str()))
                    .collect();
                let projection = if matches!(step, StepSpec::Map(_)) {
                    Projection::extend(&pairs, fields)
                } else {
                    Projection::compile(&pairs, fields)
                }
                .map_err(|e| err(e.to_string()))?;
                *fields = projection.output_types();
                if matches!(step, StepSpec::Select(_))
                    && time.as_deref().is_some_and(|t| !exprs.contains_key(t))
                {
                    *time = None;
                }
                Some(Transform::Project(projection))
            }
            StepSpec::Drop(names) => {
                check_known(p, stage, fields, names.iter())?;
                if time
                    .as_deref()
                    .is_some_and(|t| names.iter().any(|n| n == t))
                {
                    *time = None;
                }
                Some(Transform::Drop(names.clone()))
            }
            StepSpec::Rename(rename) => {
                check_known(p, stage, fields, rename.fields.keys())?;
                crate::steps::check_rename(p, stage, fields, rename)?;
                if let Some(t) = &time {
                    if let Some(new) = rename.fields.get(&**t) {
                        *time = Some(Arc::from(new.as_str()));
                    } else if rename.fields.values().any(|n| n == &**t) {
                        *time = None;
                    }
                }
                Some(Transform::Rename {
                    pairs: rename
                        .fields
                        .iter()
                        .map(|(a, b)| (a.clone(), b.clone()))
                        .collect(),
                    overwrite: rename.overwrite,
                })
            }
            _ => None,
        };
        if transform.is_some() && !matches!(step, StepSpec::Map(_) | StepSpec::Select(_)) {
            *fields = fields_after(step, std::mem::take(fields));
        }
        Ok(transform)
    }

    /// One operator running `stages` (consecutive stateless steps) over each batch.
    fn chain(&mut self, stream: &Stream<Record>, stages: Vec<Stage>) -> Stream<Record> {
        let name = stages
            .iter()
            .map(|s| &*s.stage)
            .collect::<Vec<_>>()
            .join("+");
        let stages: Arc<[Stage]> = stages.into();
        if self.route_errors {
            let routed = stream.transform(&name, move || {
                RoutedStepOp(StepOp::new(stages.clone(), true))
            });
            self.routed(routed)
        } else {
            stream.transform(&name, move || StepOp::new(stages.clone(), false))
        }
    }

    /// Plans a step of one input.
    fn step(
        &mut self,
        env: &Environment,
        i: usize,
        step: &StepSpec,
        input: &Node,
        keyed_for_next: bool,
    ) -> Result<Node, PipelineError> {
        let _ = env;
        let p = self.pipeline;
        let planner = self;
        let stage: Arc<str> = format!("steps[{i}].{}", step.kind()).into();
        let err = |message: String| p.error_at(&stage, message);
        let mut stream = input.stream.clone();
        let mut fields = input.fields.clone();
        let mut key = input.key.clone();
        let mut time = input.time.clone();
        if let Some(transform) = planner.stateless(&stage, step, &mut fields, &mut time)? {
            let stages = vec![Stage {
                transform,
                stage: stage.clone(),
            }];
            stream = planner.chain(&stream, stages);
            return Ok(Node {
                stream,
                fields,
                key,
                time,
                label: String::new(),
            });
        }
        match step {
            StepSpec::KeyBy(k) => {
                let names = k.fields();
                if names.is_empty() {
                    return Err(err("needs at least one field".into()));
                }
                check_known(p, &stage, &fields, names.iter())?;
                if !keyed_for_next {
                    let names: Arc<[String]> = names.clone().into();
                    stream = stream
                        .key_by(move |r: &Record| key_of(&names, r))
                        .transform(&stage, |_| Pass);
                }
                key = Some(names);
            }
            StepSpec::Aggregate(exprs) | StepSpec::RollingAggregate(exprs) => {
                if exprs.is_empty() {
                    return Err(err("needs at least one `name: function(expression)`".into()));
                }
                let key_fields: Arc<[String]> = key.take().unwrap_or_default().into();
                let mut aggregations = Vec::new();
                let mut out_fields = FieldTypes::default();
                for k in key_fields.iter() {
                    out_fields.insert(k, fields.get(k).flatten());
                }
                for (name, source) in exprs {
                    let agg = Aggregation::parse(name, source, &fields)
                        .map_err(|m| p.error_at(&format!("{stage}.{name}"), m))?;
                    let kind =
                        Acc::result_kind(agg.func, agg.arg.as_ref().and_then(|a| a.result_kind()));
                    out_fields.insert(name, kind);
                    aggregations.push(agg);
                }
                let out_shape = Arc::new(Shape::new(
                    key_fields
                        .iter()
                        .map(String::as_str)
                        .chain(exprs.keys().map(String::as_str)),
                ));
                let aggregations: Arc<[Aggregation]> = aggregations.into();
                let emit_every_record = matches!(step, StepSpec::RollingAggregate(_));
                let route = planner.route_errors;
                let (kf, stage2) = (key_fields.clone(), stage.clone());
                let routed =
                    stream
                        .key_by(move |r: &Record| key_of(&kf, r))
                        .transform(&stage, move |_| AggregateOp {
                            key_fields: key_fields.clone(),
                            aggregations: aggregations.clone(),
                            out_shape: out_shape.clone(),
                            state: weir_state::AnyStore::Memory(MemoryStore::new()),
                            emit_every_record,
                            stage: stage2.clone(),
                            route_errors: route,
                        });
                stream = planner.routed(routed);
                fields = out_fields;
                time = None;
            }
            StepSpec::Limit(n) => stream = stream.take(*n).name(&stage),
            StepSpec::Explode(spec) => {
                let (explode, after) = spec.plan(p, &stage, &fields)?;
                if time
                    .as_deref()
                    .is_some_and(|t| t == spec.field || Some(t) == spec.into.as_deref())
                {
                    time = None;
                }
                let explode = Arc::new(explode);
                let route = planner.route_errors;
                let stage2 = stage.clone();
                let routed = stream.transform(&stage, move || crate::steps::explode::ExplodeOp {
                    explode: explode.clone(),
                    stage: stage2.clone(),
                    route_errors: route,
                });
                stream = planner.routed(routed);
                fields = after;
            }
            StepSpec::Window(w) => {
                (stream, fields) = crate::window::WindowPlan {
                    pipeline: p,
                    stage: stage.clone(),
                    key_fields: key.take().unwrap_or_default(),
                    fields: &fields,
                    route_errors: planner.route_errors,
                    dead: &mut planner.dead,
                }
                .plan(w, &stream)?;
                time = None;
            }
            StepSpec::Join(j) => {
                (stream, fields) = crate::join::plan(p, &stage, j, &stream, &fields)?
            }
            StepSpec::Validate(reference) => {
                let schema = crate::ingest::schema(p, &stage, reference)?;
                fields = crate::ingest::schema_fields(&schema);
                let route = planner.route_errors;
                let stage2 = stage.clone();
                let routed = stream.transform(&stage, move || crate::ingest::ValidateOp {
                    validator: weir_schema::Validator::new(schema.clone()),
                    stage: stage2.clone(),
                    route_errors: route,
                });
                stream = planner.routed(routed);
            }
            StepSpec::EnrichHttp(enrich) => {
                let (enriched, dead) =
                    crate::enrich::plan(p, &stage, enrich, &stream, &fields, planner.route_errors)?;
                planner.dead.extend(dead);
                stream = enriched;
                fields = crate::enrich::fields_after(enrich, fields);
            }
            StepSpec::Task(task) => {
                let (done, dead) = crate::task_step::plan(
                    p,
                    &stage,
                    task,
                    &stream,
                    &fields,
                    planner.route_errors,
                )?;
                planner.dead.extend(dead);
                stream = done;
                fields = crate::task_step::fields_after(task, fields);
            }
            StepSpec::Mask(reference) => {
                let schema = crate::ingest::schema(p, &stage, reference)?;
                stream = stream
                    .map(move |mut r: Record| {
                        schema.apply_privacy(&mut r);
                        r
                    })
                    .name(&stage);
                fields = FieldTypes::dynamic();
            }
            _ => {}
        }
        Ok(Node {
            stream,
            fields,
            key,
            time,
            label: String::new(),
        })
    }
}

/// A parallelism above 1 runs keyed steps (and what follows them) at that parallelism; a
/// file or stdin source is read by one instance, so without a step that repartitions the
/// records nothing would run in parallel: say so rather than ignore the setting.
fn parallelism_warnings(p: &Pipeline, parallelism: usize) -> Vec<String> {
    let spec = &p.spec;
    // A stdin source, a followed single file and a CSV file are read by one instance; a
    // directory or glob spreads its files, and a JSON-lines file is split by byte ranges.
    let sources = p.source_specs();
    let ctx = crate::source::PipelineContext(p);
    let single_reader = sources
        .iter()
        .all(|(_, source)| source.config.connector().single_reader(&ctx));
    let repartitions = spec.steps.iter().any(|s| {
        matches!(
            s.step,
            StepSpec::KeyBy(_)
                | StepSpec::Aggregate(_)
                | StepSpec::RollingAggregate(_)
                | StepSpec::Window(_)
                | StepSpec::Join(_)
                | StepSpec::WindowJoin(_)
                | StepSpec::IntervalJoin(_)
                | StepSpec::LookupJoin(_)
        )
    });
    if parallelism <= 1 || !single_reader || repartitions {
        return Vec::new();
    }
    vec![format!(
        "parallelism {parallelism} (settings.parallelism or --parallelism) does not apply to pipeline '{}': a {} source is read by one instance and no step repartitions the records (key_by, aggregate, rolling_aggregate, window, join), so every step runs at parallelism 1",
        p.name(),
        sources.first().map_or("file", |(_, s)| s.kind().name())
    )]
}

/// Fields named by a step must exist when the record's fields are known.
pub(crate) fn check_known<'a>(
    p: &Pipeline,
    stage: &str,
    fields: &FieldTypes,
    names: impl Iterator<Item = &'a String>,
) -> Result<(), PipelineError> {
    if fields.is_dynamic() {
        return Ok(());
    }
    for name in names {
        if fields.get(name).is_none() {
            let known: Vec<&str> = fields.names().collect();
            return Err(p.error_at(
                stage,
                format!(
                    "unknown field `{name}`; the records here have: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Field types after a drop or rename.
fn fields_after(step: &StepSpec, fields: FieldTypes) -> FieldTypes {
    if fields.is_dynamic() {
        return fields;
    }
    match step {
        StepSpec::Drop(names) => {
            let mut out = FieldTypes::default();
            for n in fields.names() {
                if !names.iter().any(|d| d == n) {
                    out.insert(n, fields.get(n).flatten());
                }
            }
            out
        }
        StepSpec::Rename(rename) => {
            let mut out = FieldTypes::default();
            for n in fields.names() {
                let new = rename.fields.get(n).map(String::as_str).unwrap_or(n);
                out.insert(new, fields.get(n).flatten());
            }
            out
        }
        _ => fields,
    }
}

/// A pipeline agent's plan ([`plan_agent`]): its results, the records a `filter` dropped, and
/// the dead letters of the records a step failed on.
pub(crate) struct AgentPlan {
    pub(crate) results: Stream<Record>,
    pub(crate) dropped: Vec<Stream<Record>>,
    pub(crate) dead: Vec<Stream<Record>>,
}

/// The steps a pipeline agent may have: each turns a task's record into at most one record.
const AGENT_STEPS: &str = "filter, map, drop, rename, join, enrich_http and task";

/// Plans the steps of a pipeline agent's pipeline (a list: no `name`, no `input`) on `input`,
/// the agent's tasks as records carrying `task_field`. A `filter` keeps its dropped records
/// apart (their tasks end with a `null` result) instead of discarding them; step failures are
/// dead letters (their tasks fail with the error).
pub(crate) fn plan_agent(
    p: &Pipeline,
    env: &Environment,
    input: Stream<Record>,
    task_field: &str,
) -> Result<AgentPlan, PipelineError> {
    let spec = &p.spec;
    if let Some(0) = spec.settings.parallelism {
        return Err(p.error_at("settings.parallelism", "must be at least 1"));
    }
    let mut planner = Planner {
        pipeline: p,
        route_errors: true,
        dead: Vec::new(),
    };
    let mut fields: FieldTypes = if spec.fields.is_empty() {
        FieldTypes::dynamic()
    } else {
        spec.fields
            .iter()
            .map(|(name, t)| (name.as_str(), t.kind()))
            .collect()
    };
    if !fields.is_dynamic() {
        fields.insert(task_field, Some(weir_types::ValueKind::Int));
    }
    let mut node = Node {
        stream: input,
        fields,
        key: None,
        time: None,
        label: "tasks".into(),
    };
    let mut dropped = Vec::new();
    for (i, entry) in spec.steps.iter().enumerate() {
        let kind = entry.step.kind();
        let stage = format!("steps[{i}].{kind}");
        if entry.name.is_some() || entry.input.is_some() {
            return Err(p.error_at(
                &format!("steps[{i}]"),
                "a pipeline agent's steps are one list: no `name` or `input`",
            ));
        }
        match &entry.step {
            StepSpec::Filter(source) => {
                let expr = Arc::new(
                    Expr::compile_filter(source, &node.fields)
                        .map_err(|e| p.error_at(&stage, e.to_string()))?,
                );
                let stage_name: Arc<str> = stage.as_str().into();
                // Ok: kept; Err with the task field: dropped; Err without: a dead letter.
                let routed = node
                    .stream
                    .map(move |r: Record| match expr.eval_bool(&r) {
                        Ok(true) => Ok(r),
                        Ok(false) => Err(r),
                        Err(e) => Err(crate::steps::dead_letter(&stage_name, e, &r, 0)),
                    })
                    .name(&stage);
                let (kept, out) = routed.split_result();
                dropped.push(out);
                node.stream = kept;
                continue;
            }
            StepSpec::Map(exprs) if exprs.contains_key(task_field) => {
                return Err(p.error_at(
                    &format!("{stage}.{task_field}"),
                    format!(
                        "`{task_field}` carries the task through the pipeline: it cannot be set"
                    ),
                ));
            }
            StepSpec::Drop(names) if names_contain(names.iter(), task_field) => {
                return Err(p.error_at(
                    &stage,
                    format!(
                        "`{task_field}` carries the task through the pipeline: it cannot be dropped"
                    ),
                ));
            }
            StepSpec::Rename(rename)
                if names_contain(rename.fields.keys(), task_field)
                    || names_contain(rename.fields.values(), task_field) =>
            {
                return Err(p.error_at(
                    &stage,
                    format!(
                        "`{task_field}` carries the task through the pipeline: it cannot be renamed"
                    ),
                ));
            }
            StepSpec::Map(_)
            | StepSpec::Drop(_)
            | StepSpec::Rename(_)
            | StepSpec::Join(_)
            | StepSpec::EnrichHttp(_)
            | StepSpec::Task(_) => {}
            other => {
                return Err(p.error_at(
                    &stage,
                    format!(
                        "`{}` is not available in a pipeline agent, whose steps turn each task into at most one result: use {AGENT_STEPS}",
                        other.kind()
                    ),
                ));
            }
        }
        let next = planner.step(env, i, &entry.step, &node, false)?;
        node = Node {
            label: format!("steps[{i}]"),
            ..next
        };
    }
    Ok(AgentPlan {
        results: node.stream,
        dropped,
        dead: planner.dead,
    })
}

fn names_contain<'a>(mut names: impl Iterator<Item = &'a String>, field: &str) -> bool {
    names.any(|n| n == field)
}
