//! The steps that read several streams: `union`, `window_join`, `interval_join` and
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

use crate::build::Node;
use crate::duration::{Duration, SignedDuration};
use crate::event_time::timestamped;
use crate::spec::KeyFields;
use crate::steps::{Routed, key_of};
use crate::window::LatePolicy;
use crate::{Pipeline, PipelineError};
use serde::Deserialize;
use std::sync::Arc;
use weir_core::Stream;
use weir_expr::FieldTypes;
use weir_time::prelude::*;
use weir_time::{Tagged, WindowSpec};
use weir_types::{Record, Shape, Value, format_datetime};

/// The inputs a two-input step names.
pub(crate) trait TwoInputs {
    /// `None`: the previous step's output.
    fn left(&self) -> Option<&str>;
    fn right(&self) -> &str;
}

/// Options every two-stream join has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSides {
    pub left: Option<String>,
    pub right: String,
    /// The left records' key field(s).
    pub left_key: KeyFields,
    /// The right records' key field(s), matched in order (default: `left_key`'s names).
    pub right_key: Option<KeyFields>,
}

/// A `window_join` step, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowJoinSpec {
    pub left: Option<String>,
    pub right: String,
    pub left_key: KeyFields,
    pub right_key: Option<KeyFields>,
    /// `{ type: tumbling, size: 1m }` or `{ type: sliding, size: 1m, slide: 10s }`.
    pub window: JoinWindow,
    /// Put before every left field's name in the output (default none).
    #[serde(default)]
    pub left_prefix: String,
    /// Put before every right field's name in the output (default none).
    #[serde(default)]
    pub right_prefix: String,
    pub late: Option<LatePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinWindow {
    #[serde(rename = "type")]
    pub kind: JoinWindowKind,
    pub size: Duration,
    pub slide: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinWindowKind {
    Tumbling,
    Sliding,
}

/// An `interval_join` step, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalJoinSpec {
    pub left: Option<String>,
    pub right: String,
    pub left_key: KeyFields,
    pub right_key: Option<KeyFields>,
    /// A right record meets a left one at `t` when its time is in `[t + lower, t + upper]`.
    pub lower: SignedDuration,
    pub upper: SignedDuration,
    #[serde(default)]
    pub left_prefix: String,
    #[serde(default)]
    pub right_prefix: String,
    pub late: Option<LatePolicy>,
}

/// A `lookup_join` step: each left record joined with the latest right record of its key at
/// or before the left record's event time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupJoinSpec {
    pub left: Option<String>,
    /// The stream of versions (e.g. prices, a changelog of users).
    pub right: String,
    pub left_key: KeyFields,
    pub right_key: Option<KeyFields>,
    /// `left` (default): records without a version go on with the right fields null (when
    /// they are known); `inner`: they are left out.
    pub kind: Option<JoinKind>,
    #[serde(default)]
    pub left_prefix: String,
    #[serde(default)]
    pub right_prefix: String,
    pub late: Option<LatePolicy>,
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
type KeyPair = (Arc<[String]>, Arc<[String]>);

/// The output shape of a pair of input shapes, or the name both sides have.
#[derive(Clone)]
struct PairShapes {
    left_prefix: Arc<str>,
    right_prefix: Arc<str>,
    last: Option<(Arc<Shape>, Arc<Shape>, PairShape)>,
}

impl PairShapes {
    fn new(left_prefix: &str, right_prefix: &str) -> Self {
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
    fn join(&mut self, left: &Record, right: &Record) -> Routed {
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
fn output_names<'a>(
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
fn pair_letter(error: &str, left: &Record, right: &Record) -> Record {
    Record::from_pairs([
        ("error", Value::from(error)),
        ("left", Value::Json(Arc::new(left.to_json()))),
        ("right", Value::Json(Arc::new(right.to_json()))),
    ])
}

/// The output fields of a join when both sides' fields are known.
fn joined_fields(
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
fn keys(
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
    fn late_policy(&self, late: Option<LatePolicy>) -> Result<LatePolicy, PipelineError> {
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
    fn sides(
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
    fn late(&mut self, late: Stream<Tagged<Record, Record>>, policy: LatePolicy, why: &str) {
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
    fn routed(&mut self, joined: Stream<Routed>) -> Stream<Record> {
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

    pub(crate) fn interval(
        mut self,
        spec: &IntervalJoinSpec,
        left: &Node,
        right: &Node,
    ) -> Result<Node, PipelineError> {
        let p = self.pipeline;
        let stage = self.stage.clone();
        let (lk, rk) = keys(
            p,
            &stage,
            &spec.left_key,
            spec.right_key.as_ref(),
            left,
            right,
        )?;
        let (lower, upper) = (spec.lower.millis(), spec.upper.millis());
        if lower > upper {
            return Err(p.error_at(
                &format!("{stage}.lower"),
                format!(
                    "`lower` ({}) is after `upper` ({}): no record would ever meet",
                    spec.lower, spec.upper
                ),
            ));
        }
        let late = self.late_policy(spec.late)?;
        let fields = joined_fields(
            p,
            &stage,
            &left.fields,
            &right.fields,
            &spec.left_prefix,
            &spec.right_prefix,
        )?;
        let (l, r) = self.sides(left, right)?;
        let l = l.key_by(move |t: &Timestamped<Record>| key_of(&lk, &t.item));
        let r = r.key_by(move |t: &Timestamped<Record>| key_of(&rk, &t.item));
        let mut shapes = PairShapes::new(&spec.left_prefix, &spec.right_prefix);
        let out = l.interval_join_between(&r, lower, upper, move |a: &Record, b: &Record| {
            shapes.join(a, b)
        });
        self.late(
            out.late,
            late,
            "the watermark had passed it, so the records it would meet may be gone",
        );
        let joined = out.joined.name(&stage);
        Ok(Node {
            stream: self.routed(joined),
            fields,
            key: None,
            time: None,
            label: stage.to_string(),
        })
    }

    pub(crate) fn window(
        mut self,
        spec: &WindowJoinSpec,
        left: &Node,
        right: &Node,
    ) -> Result<Node, PipelineError> {
        let p = self.pipeline;
        let stage = self.stage.clone();
        let (lk, rk) = keys(
            p,
            &stage,
            &spec.left_key,
            spec.right_key.as_ref(),
            left,
            right,
        )?;
        let window = &spec.window;
        if window.size.millis() == 0 {
            return Err(p.error_at(&format!("{stage}.window.size"), "must be at least 1ms"));
        }
        let windows = match (window.kind, window.slide) {
            (JoinWindowKind::Tumbling, None) => Tumbling::of(window.size.get()),
            (JoinWindowKind::Tumbling, Some(_)) => {
                return Err(p.error_at(
                    &format!("{stage}.window.slide"),
                    "`slide` is an option of a sliding window, not a tumbling one",
                ));
            }
            (JoinWindowKind::Sliding, None) => {
                return Err(
                    p.error_at(&format!("{stage}.window"), "a sliding window needs `slide`")
                );
            }
            (JoinWindowKind::Sliding, Some(slide)) => {
                if slide.millis() == 0 || slide > window.size {
                    return Err(p.error_at(
                        &format!("{stage}.window.slide"),
                        "must be at least 1ms and not longer than `size`",
                    ));
                }
                let s = Sliding::of(window.size.get(), slide.get());
                if s.check().is_err() {
                    return Err(p.error_at(
                        &format!("{stage}.window.slide"),
                        format!(
                            "puts each event in {} windows; at most {} are allowed: use a longer `slide`",
                            s.windows_per_event(),
                            weir_time::MAX_WINDOWS_PER_EVENT
                        ),
                    ));
                }
                s
            }
        };
        let late = self.late_policy(spec.late)?;
        let fields = joined_fields(
            p,
            &stage,
            &left.fields,
            &right.fields,
            &spec.left_prefix,
            &spec.right_prefix,
        )?;
        let (l, r) = self.sides(left, right)?;
        let l = l.key_by(move |t: &Timestamped<Record>| key_of(&lk, &t.item));
        let r = r.key_by(move |t: &Timestamped<Record>| key_of(&rk, &t.item));
        let mut shapes = PairShapes::new(&spec.left_prefix, &spec.right_prefix);
        let out: weir_time::JoinOutput<Routed, Tagged<Record, Record>> =
            l.window_join(&r, windows, move |a: &Record, b: &Record| shapes.join(a, b));
        self.late(out.late, late, "its window had closed");
        let joined = out.joined.name(&stage);
        let _: WindowSpec = windows;
        Ok(Node {
            stream: self.routed(joined),
            fields,
            key: None,
            time: None,
            label: stage.to_string(),
        })
    }

    pub(crate) fn lookup(
        mut self,
        spec: &LookupJoinSpec,
        left: &Node,
        right: &Node,
    ) -> Result<Node, PipelineError> {
        let p = self.pipeline;
        let stage = self.stage.clone();
        let (lk, rk) = keys(
            p,
            &stage,
            &spec.left_key,
            spec.right_key.as_ref(),
            left,
            right,
        )?;
        let late = self.late_policy(spec.late)?;
        let kind = spec.kind.unwrap_or(JoinKind::Left);
        let fields = joined_fields(
            p,
            &stage,
            &left.fields,
            &right.fields,
            &spec.left_prefix,
            &spec.right_prefix,
        )?;
        // Without a version, the right fields are null when they are known.
        let absent: Option<Arc<Shape>> =
            (!right.fields.is_dynamic()).then(|| Arc::new(Shape::new(right.fields.names())));
        let (l, r) = self.sides(left, right)?;
        let l = l.key_by(move |t: &Timestamped<Record>| key_of(&lk, &t.item));
        let r = r.key_by(move |t: &Timestamped<Record>| key_of(&rk, &t.item));
        let mut shapes = PairShapes::new(&spec.left_prefix, &spec.right_prefix);
        let out = l.enrich_latest(&r, kind, move |a: Record, b: Option<&Record>| match b {
            Some(b) => shapes.join(&a, b),
            None => match &absent {
                Some(shape) => {
                    let nulls = Record::with_shape(shape.clone(), vec![Value::Null; shape.len()])
                        .map_err(|e| pair_letter(&e.to_string(), &a, &Record::new()))?;
                    shapes.join(&a, &nulls)
                }
                None if shapes.left_prefix.is_empty() => Ok(a),
                None => {
                    let nothing = Record::new();
                    shapes.join(&a, &nothing)
                }
            },
        });
        let late_left = out
            .late
            .map(Either::<Timestamped<Record>, Timestamped<Record>>::Left)
            .name(&format!("{stage}.late_left"));
        self.late(late_left, late, "the watermark had passed it");
        let joined = out.joined.name(&stage);
        Ok(Node {
            stream: self.routed(joined),
            fields,
            key: None,
            time: None,
            label: stage.to_string(),
        })
    }
}

/// A `union` step: the inputs merged; they must have the same fields when those are known,
/// and either all or none have event time.
pub(crate) fn union(p: &Pipeline, stage: &str, inputs: &[&Node]) -> Result<Node, PipelineError> {
    let at: &str = stage;
    let first = inputs[0];
    for other in &inputs[1..] {
        if first.time.is_some() != other.time.is_some() {
            let (with, without) = if first.time.is_some() {
                (first, *other)
            } else {
                (*other, first)
            };
            return Err(p.error_at(
                at,
                format!(
                    "`{}` has event time but `{}` has none: the union's watermark would never advance; set `event_time` on both sources",
                    with.label, without.label
                ),
            ));
        }
        if first.time != other.time {
            return Err(p.error_at(
                at,
                format!(
                    "`{}` takes event time from `{}` but `{}` from `{}`: rename one with a `rename` step first, so the union's records have one time field",
                    first.label,
                    first.time.as_deref().unwrap_or(""),
                    other.label,
                    other.time.as_deref().unwrap_or("")
                ),
            ));
        }
        if !first.fields.is_dynamic() && !other.fields.is_dynamic() {
            let a: Vec<&str> = first.fields.names().collect();
            let b: Vec<&str> = other.fields.names().collect();
            let (mut sa, mut sb) = (a.clone(), b.clone());
            sa.sort_unstable();
            sb.sort_unstable();
            if sa != sb {
                return Err(p.error_at(
                    at,
                    format!(
                        "the inputs of a union need the same fields: `{}` has {} but `{}` has {}",
                        first.label,
                        a.join(", "),
                        other.label,
                        b.join(", ")
                    ),
                ));
            }
        }
    }
    let rest: Vec<Stream<Record>> = inputs[1..].iter().map(|n| n.stream.clone()).collect();
    let fields = if inputs.iter().any(|n| n.fields.is_dynamic()) {
        FieldTypes::dynamic()
    } else {
        first.fields.clone()
    };
    Ok(Node {
        stream: first.stream.union(&rest).name(stage),
        fields,
        key: None,
        time: first.time.clone(),
        label: stage.to_string(),
    })
}
