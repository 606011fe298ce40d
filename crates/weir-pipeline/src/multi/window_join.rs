//! The `window_join` step: the left and right records of a key whose event times fall into the same tumbling or sliding window, paired when the window closes.

use super::{JoinPlan, PairShapes, joined_fields, keys};
use crate::PipelineError;
use crate::build::Node;
use crate::duration::Duration;
use crate::spec::KeyFields;
use crate::steps::{Routed, key_of};
use crate::window::LatePolicy;
use serde::Deserialize;
use weir_time::prelude::*;
use weir_time::{Tagged, WindowSpec};
use weir_types::Record;

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

impl JoinPlan<'_> {
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
}
