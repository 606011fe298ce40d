//! The `lookup_join` step: each left record with the latest right record of its key at or before its event time (a versioned table).

use super::pair_letter;
use super::{JoinPlan, PairShapes, joined_fields, keys};
use crate::PipelineError;
use crate::build::Node;
use crate::spec::KeyFields;
use crate::steps::key_of;
use crate::window::LatePolicy;
use serde::Deserialize;
use std::sync::Arc;
use weir_time::prelude::*;
use weir_types::Record;
use weir_types::{Shape, Value};

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

impl JoinPlan<'_> {
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
