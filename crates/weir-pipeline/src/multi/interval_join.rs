//! The `interval_join` step: each left record with the right records of its key whose event times are in `[left + lower, left + upper]` (both included, as Flink).

use super::{JoinPlan, PairShapes, joined_fields, keys};
use crate::PipelineError;
use crate::build::Node;
use crate::duration::SignedDuration;
use crate::spec::KeyFields;
use crate::steps::key_of;
use crate::window::LatePolicy;
use serde::Deserialize;
use weir_time::prelude::*;
use weir_types::Record;

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

impl JoinPlan<'_> {
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
}
