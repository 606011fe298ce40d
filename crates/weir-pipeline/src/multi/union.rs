//! The `union` step: several streams with the same fields merged into one; its watermark is the minimum of its inputs' (the runtime forwards the minimum over a task's inputs).

use crate::build::Node;
use crate::{Pipeline, PipelineError};
use weir_core::Stream;
use weir_expr::FieldTypes;
use weir_types::Record;

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
