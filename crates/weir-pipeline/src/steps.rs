//! The operators behind pipeline steps. Each emits `Ok(record)` downstream, and for a record it
//! cannot process either fails the job (naming the step and the record's position) or, when
//! the pipeline has a dead-letter sink, emits `Err(dead_letter_record)` with the reason.

pub(crate) mod explode;

use crate::aggregate::{Acc, Aggregation, argument};
use smallvec::SmallVec;
use std::fmt::Display;
use std::sync::Arc;
use weir_connectors::BadRecord;
use weir_core::{END_OF_TIME, Operator, OperatorContext, OperatorError, Timestamp};
use weir_expr::{CompiledExpr, Projection};
use weir_state::KeyedStore;
use weir_types::{Record, Shape, Value};

pub(crate) type Routed = Result<Record, Record>;

/// The record sent to the dead-letter output for a record a step could not process.
pub(crate) fn dead_letter(
    stage: &str,
    error: impl Display,
    record: &Record,
    position: u64,
) -> Record {
    Record::from_pairs([
        ("stage", Value::from(stage)),
        ("error", Value::from(error.to_string())),
        ("position", Value::Int(position as i64)),
        ("record", Value::Json(Arc::new(record.to_json()))),
    ])
}

/// A record a step cannot process: fails the job, naming the record's position, or — when the
/// pipeline has a dead-letter output (`route`) — goes there with the reason.
pub(crate) fn reject<T>(
    route: bool,
    stage: &str,
    error: impl Display,
    record: &Record,
    position: u64,
    ctx: &OperatorContext,
    out: &mut Vec<Result<T, Record>>,
) -> Result<(), OperatorError> {
    if !route {
        return Err(OperatorError::user(error).at(position));
    }
    ctx.count_errors(1);
    out.push(Err(dead_letter(stage, error, record, position)));
    Ok(())
}

/// The record sent to the dead-letter output for input that could not be decoded.
pub(crate) fn bad_input(bad: BadRecord) -> Record {
    Record::from_pairs([
        ("stage", Value::from("source")),
        ("error", Value::from(bad.error)),
        ("source", Value::from(&*bad.source)),
        ("line", Value::Int(bad.line as i64)),
        ("raw", Value::from(bad.raw)),
    ])
}

/// What a stateless step does to one record.
pub(crate) enum Transform {
    Filter(CompiledExpr),
    Project(Projection),
    Drop(Vec<String>),
    /// `overwrite`: a record that already has the new name loses that field; otherwise the
    /// record fails.
    Rename {
        pairs: Vec<(String, String)>,
        overwrite: bool,
    },
}

/// Whether the `k`-th rename of `pairs` (applied in order) lands on a field that exists at that
/// point: one the record had and no earlier rename moved away, or one an earlier rename made.
/// `has` says whether the record has a field.
pub(crate) fn rename_replaces(
    pairs: &[(String, String)],
    k: usize,
    has: impl Fn(&str) -> bool,
) -> bool {
    let (from, to) = &pairs[k];
    if from == to || !has(from) || pairs[..k].iter().any(|(moved, _)| moved == from) {
        return false;
    }
    let mut exists = has(to);
    for (earlier_from, earlier_to) in &pairs[..k] {
        if earlier_from == to {
            exists = false;
        }
        if earlier_to == to && has(earlier_from) {
            exists = true;
        }
    }
    exists
}

/// Refuses, at validation, a rename that would silently replace a field the records have
/// (unless `overwrite: true`) when the fields are known.
pub(crate) fn check_rename(
    p: &crate::Pipeline,
    stage: &str,
    fields: &weir_expr::FieldTypes,
    rename: &crate::spec::RenameSpec,
) -> Result<(), crate::PipelineError> {
    if rename.overwrite || fields.is_dynamic() {
        return Ok(());
    }
    let pairs: Vec<(String, String)> = rename.fields.clone().into_iter().collect();
    for (k, (from, to)) in pairs.iter().enumerate() {
        if rename_replaces(&pairs, k, |f| fields.get(f).is_some()) {
            return Err(p.error_at(
                &format!("{stage}.{from}"),
                format!(
                    "renaming `{from}` to `{to}` would replace the field `{to}` the records already have; drop `{to}` first, or write `rename: {{ fields: {{ {from}: {to} }}, overwrite: true }}`"
                ),
            ));
        }
    }
    Ok(())
}

impl Transform {
    /// Applies the step to one record: `Ok(Some)` goes on, `Ok(None)` is filtered out, and a
    /// record the step fails on comes back as it came, with the reason.
    #[inline]
    fn apply(&self, record: Record) -> Result<Option<Record>, (String, Record)> {
        match self {
            Transform::Filter(e) => match e.eval_bool(&record) {
                Ok(true) => Ok(Some(record)),
                Ok(false) => Ok(None),
                Err(err) => Err((err.to_string(), record)),
            },
            Transform::Project(p) => match p.apply_owned(record) {
                Ok(out) => Ok(Some(out)),
                Err((err, record)) => Err((err.to_string(), record)),
            },
            Transform::Drop(fields) => {
                let mut record = record;
                for f in fields {
                    record.remove(f);
                }
                Ok(Some(record))
            }
            Transform::Rename { pairs, overwrite } => {
                // Checked first, so that a failing record goes to the dead-letter output as
                // it came.
                if !overwrite {
                    for (k, (from, to)) in pairs.iter().enumerate() {
                        if rename_replaces(pairs, k, |f| record.get(f).is_some()) {
                            return Err((
                                format!(
                                    "renaming `{from}` to `{to}` would replace the record's field `{to}` (set `overwrite: true` to allow it)"
                                ),
                                record,
                            ));
                        }
                    }
                }
                let mut record = record;
                for (from, to) in pairs {
                    if let Some(v) = record.remove(from) {
                        record.set(to, v);
                    }
                }
                Ok(Some(record))
            }
        }
    }
}

/// One stateless step of a fused chain, with the name its errors carry.
pub(crate) struct Stage {
    pub(crate) transform: Transform,
    pub(crate) stage: Arc<str>,
}

/// Consecutive stateless steps (filter, map, select, drop, rename) run as one operator: each
/// step runs over the whole batch in turn, moving records (no copy, no result splitting
/// between steps). Dead letters and positions are those the steps would give one by one.
pub(crate) struct StepOp {
    pub(crate) chain: Arc<[Stage]>,
    /// Records that reached each step so far in this instance: a failing record's position in
    /// its step's input.
    pub(crate) seen: Vec<u64>,
    pub(crate) route_errors: bool,
    /// The batch between two steps (kept to reuse its memory).
    spare: Vec<Record>,
}

impl StepOp {
    pub(crate) fn new(chain: Arc<[Stage]>, route_errors: bool) -> Self {
        StepOp {
            seen: vec![0; chain.len()],
            chain,
            route_errors,
            spare: Vec::new(),
        }
    }

    /// Runs the chain over `batch` in place; dead letters go to `dead` (only when routing
    /// errors: otherwise the first failure fails the job).
    fn run(
        &mut self,
        batch: &mut Vec<Record>,
        ctx: &OperatorContext,
        dead: &mut Vec<Routed>,
    ) -> Result<(), OperatorError> {
        for (k, stage) in self.chain.iter().enumerate() {
            if batch.is_empty() {
                break;
            }
            let first = self.seen[k];
            self.seen[k] += batch.len() as u64;
            let kept = &mut self.spare;
            kept.clear();
            kept.reserve(batch.len());
            for (i, record) in batch.drain(..).enumerate() {
                match stage.transform.apply(record) {
                    Ok(Some(r)) => kept.push(r),
                    Ok(None) => {}
                    // The job's error names the operator: in a chain of several steps, the
                    // message names the step.
                    Err((error, _)) if !self.route_errors && self.chain.len() > 1 => {
                        return Err(OperatorError::user(format!("{}: {error}", stage.stage))
                            .at(first + i as u64));
                    }
                    Err((error, record)) => reject(
                        self.route_errors,
                        &stage.stage,
                        error,
                        &record,
                        first + i as u64,
                        ctx,
                        dead,
                    )?,
                }
            }
            std::mem::swap(batch, kept);
        }
        Ok(())
    }
}

/// Without a dead-letter output: records only (the first failure fails the job).
impl Operator<Record, Record> for StepOp {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Record>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let mut dead = Vec::new();
        self.run(input, ctx, &mut dead)?;
        out.append(input);
        Ok(())
    }
}

/// With a dead-letter output: records and dead letters, split after the whole chain.
pub(crate) struct RoutedStepOp(pub(crate) StepOp);

impl Operator<Record, Routed> for RoutedStepOp {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Routed>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.0.run(input, ctx, out)?;
        out.extend(input.drain(..).map(Ok));
        Ok(())
    }
}

/// Per-key aggregation over records, on the keyed state backend.
pub(crate) struct AggregateOp<S> {
    pub(crate) key_fields: Arc<[String]>,
    pub(crate) aggregations: Arc<[Aggregation]>,
    pub(crate) out_shape: Arc<Shape>,
    pub(crate) state: S,
    pub(crate) emit_every_record: bool,
    pub(crate) stage: Arc<str>,
    pub(crate) route_errors: bool,
}

/// A record's key: the values of its key fields, in order. Up to two values sit inline, so
/// that making a key allocates nothing and a hash table compares keys without following a
/// pointer. Serialized and hashed exactly as the `Vec<Value>` it replaced (a sequence of
/// values), so checkpoints and the partitioning of keys stay as they were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Key(pub(crate) smallvec::SmallVec<[Value; 2]>);

impl Key {
    pub(crate) fn into_values(self) -> impl Iterator<Item = Value> {
        self.0.into_iter()
    }
}

pub(crate) fn key_of(fields: &[String], record: &Record) -> Key {
    Key(fields
        .iter()
        .map(|f| record.get(f).cloned().unwrap_or(Value::Null))
        .collect())
}

impl<S: KeyedStore<Key, Vec<Acc>>> AggregateOp<S> {
    fn output(&self, key: Key, accs: &[Acc]) -> Result<Record, OperatorError> {
        let mut values = Vec::with_capacity(key.0.len() + accs.len());
        values.extend(key.into_values());
        values.extend(accs.iter().map(Acc::result));
        Record::with_shape(self.out_shape.clone(), values)
            .map_err(|e| OperatorError::new(weir_core::ErrorKind::Internal, e.to_string()))
    }

    /// Adds `record` to its key's accumulators; with `emit_every_record`, returns the key's
    /// updated result.
    fn update(&mut self, record: &Record) -> Result<Option<Record>, String> {
        // Evaluate every argument before touching state, so a failing record changes nothing.
        let mut args: SmallVec<[Option<Value>; 4]> = SmallVec::new();
        for agg in self.aggregations.iter() {
            args.push(argument(agg, record).map_err(|e| format!("{}: {e}", agg.name))?);
        }
        let key = key_of(&self.key_fields, record);
        let aggs = &self.aggregations;
        let accs = self
            .state
            .get_or_insert_with(&key, || aggs.iter().map(Aggregation::init).collect());
        // All or nothing: check every accumulator before changing any.
        for ((acc, agg), arg) in accs.iter().zip(aggs.iter()).zip(&args) {
            acc.check(arg.as_ref())
                .map_err(|e| format!("{}: {e}", agg.name))?;
        }
        for ((acc, agg), arg) in accs.iter_mut().zip(aggs.iter()).zip(args) {
            acc.add(arg).map_err(|e| format!("{}: {e}", agg.name))?;
        }
        if !self.emit_every_record {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(self.out_shape.len());
        values.extend(key.into_values());
        values.extend(accs.iter().map(Acc::result));
        // Invariant: the shape is the key fields and then the aggregates.
        Ok(Some(
            Record::with_shape(self.out_shape.clone(), values).expect("one value per field"),
        ))
    }

    fn emit_all(&mut self, out: &mut Vec<Routed>) -> Result<(), OperatorError> {
        for (key, accs) in self.state.drain_all() {
            out.push(Ok(self.output(key, &accs)?));
        }
        Ok(())
    }
}

impl<S> Operator<Record, Routed> for AggregateOp<S>
where
    S: KeyedStore<Key, Vec<Acc>> + From<weir_state::AnyStore<Key, Vec<Acc>>>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.state = ctx.keyed_store::<Key, Vec<Acc>>()?.into();
        weir_core::state::restore_keyed(&mut self.state, ctx, "aggregates")
    }

    fn snapshot(
        &mut self,
        _: weir_core::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        weir_core::state::save_keyed(&mut self.state, ctx, "aggregates")
    }

    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Routed>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for (i, record) in input.drain(..).enumerate() {
            match self.update(&record) {
                Ok(None) => {}
                Ok(Some(result)) => out.push(Ok(result)),
                Err(error) => {
                    let position = ctx.position() + i as u64;
                    reject(
                        self.route_errors,
                        &self.stage,
                        error,
                        &record,
                        position,
                        ctx,
                        out,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<Routed>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        if watermark == END_OF_TIME && !self.emit_every_record {
            self.emit_all(out)?;
        }
        Ok(Some(watermark))
    }

    fn close(
        &mut self,
        out: &mut Vec<Routed>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !self.emit_every_record {
            self.emit_all(out)?;
        }
        Ok(())
    }
}
