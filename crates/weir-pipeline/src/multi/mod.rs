//! The steps that read several streams, one module each (its YAML type and its planning): `union`, `window_join`, `interval_join` and
//! `lookup_join`, planned onto `Stream::union` and `weir-time`'s keyed joins.
//!
//! ```yaml
//! - name: all_orders
//!   union: [eu_orders, us_orders]          # same fields; watermark: the minimum of the inputs'
//! - name: paid
//!   interval_join:
//!     left: orders                         # default: the previous step's output
//!     right: payments
//!     left_key: id
//!     right_key: order_id                  # default: the same names as `left_key`
//!     lower: -5m                           # right time in [left + lower, left + upper]
//!     upper: 10m
//!     right_prefix: "payment_"             # output names: left fields, then right fields
//!     late: dead_letter                    # or `drop`
//! ```
//!
//! Both inputs of a join need event time (`event_time` on their sources); a join's output
//! has none of its own (a `window` step after it reads its `time_field`).
//!
//! This module holds what they share: the inputs they name, the output names of a joined
//! pair, the event time of both sides, and where late events and unjoinable pairs go.

pub mod interval_join;
pub mod lookup_join;
pub mod union;
pub mod window_join;

pub use interval_join::IntervalJoinSpec;
pub use lookup_join::LookupJoinSpec;
pub use window_join::{JoinWindow, JoinWindowKind, WindowJoinSpec};

use crate::build::Node;
use crate::event_time::timestamped;
use crate::spec::KeyFields;
use crate::steps::Routed;
use crate::window::LatePolicy;
use crate::{Pipeline, PipelineError};
use std::sync::Arc;
use weir_core::Stream;
use weir_expr::FieldTypes;
use weir_time::Tagged;
use weir_time::prelude::*;
use weir_types::{Record, Shape, Value, format_datetime};

/// The inputs a two-input step names.
pub(crate) trait TwoInputs {
    /// `None`: the previous step's output.
    fn left(&self) -> Option<&str>;
    fn right(&self) -> &str;
}

macro_rules! two_inputs {
    ($($t:ty),*) => {$(
        impl TwoInputs for $t {
            fn left(&self) -> Option<&str> {
                self.left.as_deref()
            }
            fn right(&self) -> &str {
                &self.right
            }
        }
    )*};
}
two_inputs!(WindowJoinSpec, IntervalJoinSpec, LookupJoinSpec);

/// What a join step needs from the planner.
pub(crate) struct JoinPlan<'a> {
    pub pipeline: &'a Pipeline,
    /// `steps[i].interval_join`
    pub stage: Arc<str>,
    pub route_errors: bool,
    pub dead: &'a mut Vec<Stream<Record>>,
}

/// The output shape of a pair, or the name both sides have.
type PairShape = Result<Arc<Shape>, String>;

/// The key fields of the left and right side.
pub(crate) type KeyPair = (Arc<[String]>, Arc<[String]>);

/// The output shape of a pair of input shapes, or the name both sides have.
#[derive(Clone)]
pub(crate) struct PairShapes {
    pub(crate) left_prefix: Arc<str>,
    right_prefix: Arc<str>,
    last: Option<(Arc<Shape>, Arc<Shape>, PairShape)>,
}

impl PairShapes {
    pub(crate) fn new(left_prefix: &str, right_prefix: &str) -> Self {
        PairShapes {
            left_prefix: left_prefix.into(),
            right_prefix: right_prefix.into(),
            last: None,
        }
    }

    /// Computed once per pair of input shapes (records decoded alike share one).
    fn get(&mut self, left: &Arc<Shape>, right: &Arc<Shape>) -> Result<Arc<Shape>, String> {
        if let Some((l, r, out)) = &self.last
            && Arc::ptr_eq(l, left)
            && Arc::ptr_eq(r, right)
        {
            return out.clone();
        }
        let out = output_names(
            left.names().iter().map(|n| &**n),
            right.names().iter().map(|n| &**n),
            &self.left_prefix,
            &self.right_prefix,
        )
        .map(|names| Arc::new(Shape::new(names)));
        self.last = Some((left.clone(), right.clone(), out.clone()));
        out
    }

    /// The joined record: the left values, then the right values.
    pub(crate) fn join(&mut self, left: &Record, right: &Record) -> Routed {
        match self.get(left.shape(), right.shape()) {
            Ok(shape) => {
                let mut values = Vec::with_capacity(shape.len());
                values.extend_from_slice(left.values());
                values.extend_from_slice(right.values());
                Record::with_shape(shape, values)
                    .map_err(|e| pair_letter(&e.to_string(), left, right))
            }
            Err(name) => Err(pair_letter(
                &format!(
                    "the field `{name}` is on both sides of the join: set `left_prefix` or `right_prefix`"
                ),
                left,
                right,
            )),
        }
    }
}

/// The output names: the left ones, then the right ones, each with its side's prefix; `Err`
/// with a name that would appear twice.
pub(crate) fn output_names<'a>(
    left: impl Iterator<Item = &'a str>,
    right: impl Iterator<Item = &'a str>,
    left_prefix: &str,
    right_prefix: &str,
) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = left.map(|n| format!("{left_prefix}{n}")).collect();
    for n in right {
        let name = format!("{right_prefix}{n}");
        if names.contains(&name) {
            return Err(name);
        }
        names.push(name);
    }
    Ok(names)
}

/// The dead letter of a pair that cannot be joined.
pub(crate) fn pair_letter(error: &str, left: &Record, right: &Record) -> Record {
    Record::from_pairs([
        ("error", Value::from(error)),
        ("left", Value::Json(Arc::new(left.to_json()))),
        ("right", Value::Json(Arc::new(right.to_json()))),
    ])
}

/// The output fields of a join when both sides' fields are known.
pub(crate) fn joined_fields(
    p: &Pipeline,
    at: &str,
    left: &FieldTypes,
    right: &FieldTypes,
    left_prefix: &str,
    right_prefix: &str,
) -> Result<FieldTypes, PipelineError> {
    if left.is_dynamic() || right.is_dynamic() {
        return Ok(FieldTypes::dynamic());
    }
    output_names(left.names(), right.names(), left_prefix, right_prefix).map_err(|name| {
        p.error_at(
            at,
            format!("the field `{name}` would be on both sides of the join's output: set `left_prefix` or `right_prefix` (e.g. `right_prefix: \"right_\"`)"),
        )
    })?;
    let mut out = FieldTypes::default();
    for n in left.names() {
        out.insert(&format!("{left_prefix}{n}"), left.get(n).flatten());
    }
    for n in right.names() {
        out.insert(&format!("{right_prefix}{n}"), right.get(n).flatten());
    }
    Ok(out)
}

/// The key fields of both sides, checked.
pub(crate) fn keys(
    p: &Pipeline,
    stage: &str,
    left_key: &KeyFields,
    right_key: Option<&KeyFields>,
    left: &Node,
    right: &Node,
) -> Result<KeyPair, PipelineError> {
    let l = left_key.fields();
    let r = right_key.map_or_else(|| l.clone(), KeyFields::fields);
    if l.is_empty() {
        return Err(p.error_at(&format!("{stage}.left_key"), "needs at least one field"));
    }
    if r.len() != l.len() {
        return Err(p.error_at(
            &format!("{stage}.right_key"),
            format!(
                "names {} field(s) but `left_key` names {}: they are matched in order",
                r.len(),
                l.len()
            ),
        ));
    }
    for (names, node, key) in [(&l, left, "left_key"), (&r, right, "right_key")] {
        if node.fields.is_dynamic() {
            continue;
        }
        for name in names {
            if node.fields.get(name).is_none() {
                let known: Vec<&str> = node.fields.names().collect();
                return Err(p.error_at(
                    &format!("{stage}.{key}"),
                    format!(
                        "unknown field `{name}`; the records of `{}` have: {}",
                        node.label,
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok((l.into(), r.into()))
}

/// The event-time field of a join's input.
fn time_of<'n>(
    p: &Pipeline,
    stage: &str,
    side: &str,
    node: &'n Node,
) -> Result<&'n str, PipelineError> {
    node.time.as_deref().ok_or_else(|| {
        p.error_at(
            &format!("{stage}.{side}"),
            format!(
                "`{}` has no event time: a join pairs records by event time; set `event_time: {{ field: ... }}` on its source",
                node.label
            ),
        )
    })
}

impl JoinPlan<'_> {
    pub(crate) fn late_policy(
        &self,
        late: Option<LatePolicy>,
    ) -> Result<LatePolicy, PipelineError> {
        let late = late.unwrap_or_default();
        if late == LatePolicy::DeadLetter && !self.route_errors {
            return Err(self.pipeline.error_at(
                &self.stage,
                "late events go to the dead-letter output, but the pipeline has no `dead_letter`: add one, or set `late: drop` to discard them",
            ));
        }
        Ok(late)
    }

    /// Both inputs timestamped and keyed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn sides(
        &mut self,
        left: &Node,
        right: &Node,
    ) -> Result<(Stream<Timestamped<Record>>, Stream<Timestamped<Record>>), PipelineError> {
        let p = self.pipeline;
        let stage = self.stage.clone();
        let lt = time_of(p, &stage, "left", left)?.to_string();
        let rt = time_of(p, &stage, "right", right)?.to_string();
        let l = timestamped(
            &left.stream,
            &lt,
            &format!("{stage}.left_time"),
            self.route_errors,
            self.dead,
        );
        let r = timestamped(
            &right.stream,
            &rt,
            &format!("{stage}.right_time"),
            self.route_errors,
            self.dead,
        );
        Ok((l, r))
    }

    /// Late events to the dead-letter output with the reason, or discarded.
    pub(crate) fn late(
        &mut self,
        late: Stream<Tagged<Record, Record>>,
        policy: LatePolicy,
        why: &str,
    ) {
        let stage = self.stage.clone();
        match policy {
            LatePolicy::DeadLetter => {
                let why: Arc<str> = why.into();
                let letters = late
                    .map(move |e: Tagged<Record, Record>| {
                        let (side, t) = match e {
                            Either::Left(t) => ("left", t),
                            Either::Right(t) => ("right", t),
                        };
                        Record::from_pairs([
                            ("stage", Value::from(&*stage)),
                            (
                                "error",
                                Value::from(format!(
                                    "late {side} event at {}: {why}",
                                    format_datetime(t.time)
                                )),
                            ),
                            ("record", Value::Json(Arc::new(t.item.to_json()))),
                        ])
                    })
                    .name(&format!("{}.late", self.stage));
                self.dead.push(letters);
            }
            LatePolicy::Drop => {
                late.for_each(drop)
                    .name(&format!("{}.late_dropped", self.stage));
            }
        }
    }

    /// Joined pairs on; pairs that cannot be joined (a field on both sides) to the dead-letter
    /// output, or the job fails.
    pub(crate) fn routed(&mut self, joined: Stream<Routed>) -> Stream<Record> {
        let (ok, failed) = joined.split_result();
        let stage = self.stage.clone();
        if self.route_errors {
            self.dead.push(
                failed
                    .map(move |mut r: Record| {
                        r.set("stage", Value::from(&*stage));
                        r
                    })
                    .name(&format!("{}.failed", self.stage)),
            );
        } else {
            failed
                .try_map(|r: Record| -> Result<Record, String> {
                    Err(r.get("error").map_or_else(String::new, |e| e.to_string()))
                })
                .for_each(drop)
                .name(&format!("{}.failed", self.stage));
        }
        ok
    }
}
