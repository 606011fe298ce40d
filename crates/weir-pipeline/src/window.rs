//! The `window` step: event-time windows over records, planned onto `weir-time`.
//!
//! ```yaml
//! - key_by: user
//! - window:
//!     type: tumbling            # tumbling | sliding | session
//!     size: 1s                  # tumbling, sliding; `slide` for sliding; `gap` for session
//!     time_field: ts            # int (ms since the epoch) or datetime
//!     watermark_delay: 100ms
//!     allowed_lateness: 0s
//!     idle_timeout: 5s          # optional
//!     late: dead_letter         # or `drop` (counted)
//!     aggregate: { clicks: count(), total: sum(amount) }
//! ```
//!
//! Output records: the key fields, `window_start`, `window_end` (datetimes), then the
//! aggregates. The plan: a step that reads each record's time and aggregate arguments (records
//! it cannot read go to the dead-letter output), the watermark generator, the key exchange,
//! the window operator, and a step that turns window results into records.

use crate::aggregate::{Acc, AggFn, Aggregation, argument};
use crate::steps::{Routed, dead_letter, reject};
use crate::{Pipeline, PipelineError};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weir_core::{ErrorKind, Operator, OperatorContext, OperatorError, Stream};
use weir_expr::FieldTypes;
use weir_time::prelude::*;
use weir_time::{JobBackend, MAX_WINDOWS_PER_EVENT, WindowSpec, WindowedStream};
use weir_types::{Record, Shape, Value, ValueKind, format_datetime, parse_datetime};

/// A `window` step, as written in the file. Which options apply to which `type` is checked
/// after parsing, so that every error keeps its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowStep {
    #[serde(rename = "type")]
    pub kind: WindowKind,
    /// tumbling, sliding: the window's length.
    pub size: Option<crate::duration::Duration>,
    /// sliding: how often a window starts.
    pub slide: Option<crate::duration::Duration>,
    /// session: the inactivity that ends a session.
    pub gap: Option<crate::duration::Duration>,
    /// The field holding each record's event time: an int (milliseconds since the epoch) or a
    /// datetime (also as text, e.g. `2024-05-01T12:00:00Z`).
    pub time_field: String,
    /// How far behind the newest event time an event may arrive and still be on time.
    pub watermark_delay: Option<crate::duration::Duration>,
    /// How long after a window closed a late event still updates it (an updated result).
    pub allowed_lateness: Option<crate::duration::Duration>,
    /// After this long without records, a source partition stops holding back event time.
    pub idle_timeout: Option<crate::duration::Duration>,
    /// Where events later than the allowed lateness go.
    pub late: Option<LatePolicy>,
    /// `name: function(expression)`, as in the `aggregate` step.
    pub aggregate: IndexMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Tumbling,
    Sliding,
    Session,
}

impl WindowKind {
    fn name(self) -> &'static str {
        match self {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Sliding => "sliding",
            WindowKind::Session => "session",
        }
    }

    fn accepted(self) -> &'static [&'static str] {
        match self {
            WindowKind::Tumbling => &["size"],
            WindowKind::Sliding => &["size", "slide"],
            WindowKind::Session => &["gap"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// To the dead-letter output, with the reason (the default).
    #[default]
    DeadLetter,
    /// Discarded, and counted in the metrics of the `<step>.late_dropped` sink.
    Drop,
}

/// A record on its way into a window: its aggregate arguments are evaluated once, before the
/// record's key is known to the window, so that a record that cannot be aggregated goes to the
/// dead-letter output on its own.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    record: Record,
    args: Vec<Option<Value>>,
    /// Position in the step's input, for dead letters.
    position: u64,
}

/// The first and last instants of the datetimes output records can hold (years 0000 to 9999,
/// as RFC 3339 writes them): the bounds of every window must be between them.
const FIRST_DATETIME: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
const LAST_DATETIME: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// Reads time and arguments; routes records without them to the dead-letter output.
struct Prepare {
    time_field: Arc<str>,
    /// How far a window of an event reaches from it: the size, or a session's gap.
    span: i64,
    aggregations: Arc<[Aggregation]>,
    stage: Arc<str>,
    route_errors: bool,
}

impl Prepare {
    fn time(&self, record: &Record) -> Result<i64, String> {
        let time = self.read_time(record)?;
        // The windows of an event start after `time - span` and end by `time + span`.
        if time.saturating_sub(self.span) < FIRST_DATETIME
            || time.saturating_add(self.span) > LAST_DATETIME
        {
            return Err(format!(
                "the time field `{}` holds {time} (milliseconds since the epoch), which puts its window outside the datetimes {} to {}",
                self.time_field,
                format_datetime(FIRST_DATETIME),
                format_datetime(LAST_DATETIME)
            ));
        }
        Ok(time)
    }

    fn read_time(&self, record: &Record) -> Result<i64, String> {
        let field = &self.time_field;
        match record.get(field) {
            None | Some(Value::Null) => Err(format!("the time field `{field}` is missing")),
            Some(Value::Int(ms) | Value::Timestamp(ms)) => Ok(*ms),
            Some(Value::Str(text)) => parse_datetime(text).ok_or_else(|| {
                format!("the time field `{field}` holds `{text}`, which is not a datetime")
            }),
            Some(other) => Err(format!(
                "the time field `{field}` must be an int (milliseconds since the epoch) or a datetime, found {}",
                other.kind()
            )),
        }
    }

    fn row(&self, record: Record, position: u64) -> Result<Timestamped<Row>, (String, Record)> {
        let time = match self.time(&record) {
            Ok(t) => t,
            Err(e) => return Err((e, record)),
        };
        let mut args = Vec::with_capacity(self.aggregations.len());
        for agg in self.aggregations.iter() {
            let arg = match argument(agg, &record) {
                Ok(arg) => arg,
                Err(e) => return Err((format!("{}: {e}", agg.name), record)),
            };
            if let Some(v) = &arg
                && let Err(e) = check_argument(agg.func, v)
            {
                return Err((format!("{}: {e}", agg.name), record));
            }
            args.push(arg);
        }
        Ok(Timestamped::new(
            time,
            Row {
                record,
                args,
                position,
            },
        ))
    }
}

/// The kinds an aggregate function accepts (null is skipped by every function).
fn check_argument(func: AggFn, value: &Value) -> Result<(), String> {
    let ok = match func {
        AggFn::Sum | AggFn::Avg => matches!(value, Value::Null | Value::Int(_) | Value::Float(_)),
        AggFn::Min | AggFn::Max => !matches!(value, Value::Json(_)),
        AggFn::Count | AggFn::First | AggFn::Last => true,
    };
    if ok {
        return Ok(());
    }
    let what = match func {
        AggFn::Sum => "sum needs numbers",
        AggFn::Avg => "avg needs numbers",
        _ => "min and max need comparable values",
    };
    Err(format!("{what}, found {}", value.kind()))
}

impl Operator<Record, Result<Timestamped<Row>, Record>> for Prepare {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Result<Timestamped<Row>, Record>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for (i, record) in input.drain(..).enumerate() {
            let position = ctx.position() + i as u64;
            match self.row(record, position) {
                Ok(row) => out.push(Ok(row)),
                Err((error, record)) => {
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
}

/// The accumulators of one key's window. An aggregation that fails inside a window (`min` of a
/// number and a string) poisons that window's result: it goes to the dead-letter output
/// instead of a wrong value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WindowAccs {
    accs: Vec<Acc>,
    error: Option<String>,
}

/// The `aggregate` functions of a window step as one [`Aggregator`].
#[derive(Clone)]
struct RecordAggregator {
    aggregations: Arc<[Aggregation]>,
}

impl RecordAggregator {
    fn fail(&self, acc: &mut WindowAccs, i: usize, error: String) {
        if acc.error.is_none() {
            acc.error = Some(format!("{}: {error}", self.aggregations[i].name));
        }
    }
}

impl Aggregator<Row> for RecordAggregator {
    type Acc = WindowAccs;
    type Out = Result<Vec<Value>, String>;

    fn init(&self) -> WindowAccs {
        WindowAccs {
            accs: self.aggregations.iter().map(Aggregation::init).collect(),
            error: None,
        }
    }

    fn add(&self, acc: &mut WindowAccs, row: &Row) {
        for i in 0..acc.accs.len() {
            let arg = row.args.get(i).cloned().flatten();
            if let Err(e) = acc.accs[i].add(arg) {
                self.fail(acc, i, e);
            }
        }
    }

    fn merge(&self, acc: &mut WindowAccs, other: &WindowAccs) {
        if let Some(e) = &other.error
            && acc.error.is_none()
        {
            acc.error = Some(e.clone());
        }
        for i in 0..acc.accs.len().min(other.accs.len()) {
            if let Err(e) = acc.accs[i].merge(&other.accs[i]) {
                self.fail(acc, i, e);
            }
        }
    }

    fn result(&self, acc: &WindowAccs) -> Result<Vec<Value>, String> {
        match &acc.error {
            Some(e) => Err(e.clone()),
            None => Ok(acc.accs.iter().map(Acc::result).collect()),
        }
    }
}

type Windowed = WindowResult<crate::steps::Key, Result<Vec<Value>, String>>;

/// Turns window results into records: key fields, `window_start`, `window_end`, aggregates.
struct Output {
    shape: Arc<Shape>,
    key_fields: Arc<[String]>,
    stage: Arc<str>,
    route_errors: bool,
}

impl Operator<Windowed, Routed> for Output {
    fn process(
        &mut self,
        input: &mut Vec<Windowed>,
        out: &mut Vec<Routed>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for result in input.drain(..) {
            let mut values = Vec::with_capacity(self.shape.len());
            values.extend(result.key.into_values());
            values.push(Value::Timestamp(result.window.start));
            values.push(Value::Timestamp(result.window.end));
            match result.value {
                Ok(aggregates) => {
                    values.extend(aggregates);
                    let record = Record::with_shape(self.shape.clone(), values)
                        .map_err(|e| OperatorError::new(ErrorKind::Internal, e.to_string()))?;
                    out.push(Ok(record));
                }
                Err(error) => {
                    let message = format!(
                        "window [{}, {}): {error}",
                        format_datetime(result.window.start),
                        format_datetime(result.window.end)
                    );
                    if !self.route_errors {
                        return Err(OperatorError::user(message));
                    }
                    ctx.count_errors(1);
                    let mut window = Record::new();
                    for (name, value) in self.key_fields.iter().zip(values) {
                        window.set(name, value);
                    }
                    window.set("window_start", Value::Timestamp(result.window.start));
                    window.set("window_end", Value::Timestamp(result.window.end));
                    out.push(Err(Record::from_pairs([
                        ("stage", Value::from(&*self.stage)),
                        ("error", Value::from(message)),
                        ("window", Value::Json(Arc::new(window.to_json()))),
                    ])));
                }
            }
        }
        Ok(())
    }
}

fn positive(
    p: &Pipeline,
    key: &str,
    given: Option<crate::duration::Duration>,
    kind: WindowKind,
) -> Result<Duration, PipelineError> {
    let name = key.rsplit('.').next().unwrap_or(key);
    match given {
        None => Err(p.error_at(
            key.rsplit_once('.').map_or(key, |(parent, _)| parent),
            format!("a {} window needs `{name}`", kind.name()),
        )),
        Some(d) if d.get().as_millis() == 0 => {
            Err(p.error_at(key, format!("must be at least 1ms, found `{}`", d.text())))
        }
        Some(d) => Ok(d.get()),
    }
}

/// What the window step needs from the planner of the whole pipeline.
pub(crate) struct WindowPlan<'a> {
    pub(crate) pipeline: &'a Pipeline,
    /// `steps[i].window`
    pub(crate) stage: Arc<str>,
    pub(crate) key_fields: Vec<String>,
    pub(crate) fields: &'a FieldTypes,
    pub(crate) route_errors: bool,
    pub(crate) dead: &'a mut Vec<Stream<Record>>,
}

impl WindowPlan<'_> {
    /// Adds the window step after `stream`; returns its output and the output's fields.
    pub(crate) fn plan(
        self,
        step: &WindowStep,
        stream: &Stream<Record>,
    ) -> Result<(Stream<Record>, FieldTypes), PipelineError> {
        let p = self.pipeline;
        let stage = self.stage.clone();
        let at = |key: &str| format!("{stage}.{key}");
        for (option, given) in [
            ("size", step.size.is_some()),
            ("slide", step.slide.is_some()),
            ("gap", step.gap.is_some()),
        ] {
            if given && !step.kind.accepted().contains(&option) {
                return Err(p.error_at(
                    &at(option),
                    format!(
                        "`{option}` is not an option of a {} window; its options are: {}",
                        step.kind.name(),
                        step.kind.accepted().join(", ")
                    ),
                ));
            }
        }
        let spec = match step.kind {
            WindowKind::Tumbling => Tumbling::of(positive(p, &at("size"), step.size, step.kind)?),
            WindowKind::Sliding => {
                let size = positive(p, &at("size"), step.size, step.kind)?;
                let slide = positive(p, &at("slide"), step.slide, step.kind)?;
                if slide > size {
                    return Err(p.error_at(
                        &at("slide"),
                        "must not be longer than `size` (events would fall between windows)",
                    ));
                }
                let spec = Sliding::of(size, slide);
                if spec.check().is_err() {
                    // Each window of an event emits a result: a few records would take
                    // unbounded memory and time.
                    let min_slide = Duration::from_millis(
                        (size.as_millis() as u64).div_ceil(MAX_WINDOWS_PER_EVENT),
                    );
                    return Err(p.error_at(
                        &at("slide"),
                        format!(
                            "`size: {}` with `slide: {}` puts each event in {} windows (a result each); at most {MAX_WINDOWS_PER_EVENT} windows per event are allowed: use a `slide` of at least {}",
                            step.size.as_ref().map_or("", |d| d.text()),
                            step.slide.as_ref().map_or("", |d| d.text()),
                            spec.windows_per_event(),
                            humantime::format_duration(min_slide)
                        ),
                    ));
                }
                spec
            }
            WindowKind::Session => Session::with_gap(positive(p, &at("gap"), step.gap, step.kind)?),
        };
        let delay = step.watermark_delay.map(|d| d.get()).unwrap_or_default();
        let lateness = step.allowed_lateness.map(|d| d.get()).unwrap_or_default();
        let mut watermarks = Watermarks::bounded(delay);
        if let Some(idle) = step.idle_timeout {
            watermarks = watermarks.idle_after(idle.get());
        }
        let late = step.late.unwrap_or_default();
        if late == LatePolicy::DeadLetter && !self.route_errors {
            return Err(p.error_at(
                &stage,
                "late events go to the dead-letter output, but the pipeline has no \
                 `dead_letter`: add one, or set `late: drop` to count and discard them",
            ));
        }

        // The time field must exist when the fields are known (`key_by` checked the keys).
        let fields = self.fields;
        if let Some(name) = self
            .key_fields
            .iter()
            .find(|k| *k == "window_start" || *k == "window_end")
        {
            return Err(p.error_at(
                &stage,
                format!("the key field `{name}` would clash with the window's own `{name}`: rename it first"),
            ));
        }
        if !fields.is_dynamic() {
            if fields.get(&step.time_field).is_none() {
                let known: Vec<&str> = fields.names().collect();
                return Err(p.error_at(
                    &at("time_field"),
                    format!(
                        "unknown field `{}`; the records here have: {}",
                        step.time_field,
                        known.join(", ")
                    ),
                ));
            }
            if let Some(Some(kind)) = fields.get(&step.time_field)
                && !matches!(kind, ValueKind::Int | ValueKind::Timestamp | ValueKind::Str)
            {
                return Err(p.error_at(
                    &at("time_field"),
                    format!(
                        "`{}` is a {kind}: the time field must be an int (milliseconds since the epoch) or a datetime",
                        step.time_field
                    ),
                ));
            }
        }
        if step.aggregate.is_empty() {
            return Err(p.error_at(
                &at("aggregate"),
                "needs at least one `name: function(expression)`",
            ));
        }
        let mut aggregations = Vec::new();
        let mut out_fields = FieldTypes::default();
        for k in &self.key_fields {
            out_fields.insert(k, fields.get(k).flatten());
        }
        out_fields.insert("window_start", Some(ValueKind::Timestamp));
        out_fields.insert("window_end", Some(ValueKind::Timestamp));
        for (name, source) in &step.aggregate {
            let key = at(&format!("aggregate.{name}"));
            if out_fields.get(name).is_some() {
                return Err(p.error_at(
                    &key,
                    format!("`{name}` is already an output field (a key field, `window_start` or `window_end`)"),
                ));
            }
            let agg = Aggregation::parse(name, source, fields).map_err(|m| p.error_at(&key, m))?;
            let kind = Acc::result_kind(agg.func, agg.arg.as_ref().and_then(|a| a.result_kind()));
            out_fields.insert(name, kind);
            aggregations.push(agg);
        }
        let shape = Arc::new(Shape::new(out_fields.names()));
        let aggregations: Arc<[Aggregation]> = aggregations.into();

        // Time and arguments.
        let (time_field, aggs, st, route) = (
            Arc::<str>::from(step.time_field.as_str()),
            aggregations.clone(),
            stage.clone(),
            self.route_errors,
        );
        let span = match spec {
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => size,
            WindowSpec::Session { gap } => gap,
        };
        let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        let prepared = stream.transform(&format!("{stage}.time"), move || Prepare {
            span,
            time_field: time_field.clone(),
            aggregations: aggs.clone(),
            stage: st.clone(),
            route_errors: route,
        });
        let (rows, failed) = prepared.split_result();
        if self.route_errors {
            self.dead.push(failed);
        }

        // Watermarks, key exchange, windows.
        let key_fields: Arc<[String]> = self.key_fields.into();
        let kf = key_fields.clone();
        let windowed: WindowedStream<_, Row, _, JobBackend> = rows
            .with_watermarks(watermarks)
            .name(&format!("{stage}.watermarks"))
            .key_by(move |row: &Timestamped<Row>| crate::steps::key_of(&kf, &row.record))
            .window(spec)
            .allowed_lateness(lateness)
            .name(&stage)
            // Windows keep their panes and sessions on the job's backend (`settings.state`).
            .backend::<JobBackend>();
        let out = windowed.aggregate(RecordAggregator { aggregations });

        // Late events.
        match late {
            LatePolicy::DeadLetter => {
                let st = stage.clone();
                let late_letters = out
                    .late
                    .map(move |row: Timestamped<Row>| {
                        let error = format!(
                            "late event at {}: its window closed more than the allowed lateness ({}) ago",
                            format_datetime(row.time),
                            humantime::format_duration(lateness)
                        );
                        dead_letter(&st, error, &row.item.record, row.item.position)
                    })
                    .name(&format!("{stage}.late"));
                self.dead.push(late_letters);
            }
            LatePolicy::Drop => {
                out.late
                    .for_each(drop)
                    .name(&format!("{stage}.late_dropped"));
            }
        }

        // Results as records.
        let (st, route) = (stage.clone(), self.route_errors);
        let routed = out
            .results
            .transform(&format!("{stage}.output"), move || Output {
                shape: shape.clone(),
                key_fields: key_fields.clone(),
                stage: st.clone(),
                route_errors: route,
            });
        let (records, failed) = routed.split_result();
        if self.route_errors {
            self.dead.push(failed);
        }
        Ok((records, out_fields))
    }
}

#[cfg(test)]
mod tests {
    use crate::Pipeline;

    fn pipeline(window: &str, dead_letter: bool, fields: &str) -> String {
        let dead = if dead_letter {
            "dead_letter:\n  type: discard\n"
        } else {
            ""
        };
        format!(
            "name: t\n{fields}source:\n  type: generator\n  count: 10\n  fields:\n    id: id\n    ts: \"id * 100\"\n    amount: \"id * 2\"\nsteps:\n  - key_by: id\n  - window:\n{window}sink:\n  type: discard\n{dead}"
        )
    }

    /// The validation error of a window step, as `line: key: message`.
    fn error(window: &str, dead_letter: bool) -> String {
        let text = pipeline(window, dead_letter, "");
        // Bad durations are refused while parsing, the rest while planning.
        let e = match Pipeline::parse(&text, "p.yaml") {
            Ok(p) => p.validate().err().unwrap(),
            Err(e) => e,
        };
        format!(
            "{}: {}: {}",
            e.line.unwrap_or(0),
            e.key.unwrap_or_default(),
            e.message
        )
    }

    const OK: &str = "      type: tumbling\n      size: 1s\n      time_field: ts\n      aggregate: { n: count() }\n";

    #[test]
    fn a_valid_window_step_plans() {
        let text = pipeline(OK, true, "");
        let described = Pipeline::parse(&text, "p.yaml")
            .unwrap()
            .validate()
            .unwrap();
        assert!(described.contains("2 steps"), "{described}");
    }

    #[test]
    fn options_of_another_window_type_are_refused_with_their_line() {
        let e = error(
            "      type: tumbling\n      size: 1s\n      gap: 5s\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert_eq!(
            e,
            "14: steps[1].window.gap: `gap` is not an option of a tumbling window; its options are: size"
        );
    }

    #[test]
    fn missing_and_bad_durations_are_explained() {
        let e = error(
            "      type: session\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert_eq!(e, "11: steps[1].window: a session window needs `gap`");
        let e = error(
            "      type: tumbling\n      size: soon\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert!(
            e.starts_with(
                "13: steps[1].window.size: expected a duration such as 5ms|2s|1m|1h, found `soon`"
            ),
            "{e}"
        );
        let e = error(
            "      type: tumbling\n      size: 0s\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert_eq!(
            e,
            "13: steps[1].window.size: must be at least 1ms, found `0s`"
        );
        let e = error(
            "      type: sliding\n      size: 1s\n      slide: 2s\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert!(
            e.starts_with("14: steps[1].window.slide: must not be longer than `size`"),
            "{e}"
        );
        let e = error(
            &OK.replace(
                "time_field: ts\n",
                "time_field: ts\n      idle_timeout: x\n",
            ),
            true,
        );
        assert!(
            e.starts_with("15: steps[1].window.idle_timeout: expected a duration"),
            "{e}"
        );
    }

    /// Issue 11, item 8: `size: 1d, slide: 1ms` passed validation and grew memory at about
    /// 190 MB/s from 6 records.
    #[test]
    fn sliding_windows_with_too_many_windows_per_event_are_refused() {
        let e = error(
            "      type: sliding\n      size: 1d\n      slide: 1ms\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
        );
        assert_eq!(
            e,
            "14: steps[1].window.slide: `size: 1d` with `slide: 1ms` puts each event in 86400000 windows (a result each); at most 10000 windows per event are allowed: use a `slide` of at least 8s 640ms"
        );
        let at_the_limit = pipeline(
            "      type: sliding\n      size: 10s\n      slide: 1ms\n      time_field: ts\n      aggregate: { n: count() }\n",
            true,
            "",
        );
        assert!(
            Pipeline::parse(&at_the_limit, "p.yaml")
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn late_events_need_a_dead_letter_output_or_an_explicit_drop() {
        let e = error(OK, false);
        assert!(
            e.contains(
                "late events go to the dead-letter output, but the pipeline has no `dead_letter`"
            ),
            "{e}"
        );
        let dropping = pipeline(
            &OK.replace("size: 1s\n", "size: 1s\n      late: drop\n"),
            false,
            "",
        );
        assert!(
            Pipeline::parse(&dropping, "p.yaml")
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn unknown_keys_and_missing_time_fields_are_refused() {
        let text = pipeline(
            &OK.replace("size: 1s", "size: 1s\n      sise: 2s"),
            true,
            "",
        );
        let e = Pipeline::parse(&text, "p.yaml").err().unwrap();
        assert!(e.message.contains("unknown field `sise`"), "{}", e.message);
        let text = pipeline(&OK.replace("      time_field: ts\n", ""), true, "");
        let e = Pipeline::parse(&text, "p.yaml").err().unwrap();
        assert!(
            e.message.contains("missing field `time_field`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_time_field_must_exist_and_hold_a_time() {
        let e = error(&OK.replace("time_field: ts", "time_field: when"), true);
        assert!(
            e.contains("steps[1].window.time_field: unknown field `when`; the records here have: id, ts, amount"),
            "{e}"
        );
        let declared = pipeline(OK, true, "");
        let declared = declared.replace("    ts: \"id * 100\"", "    ts: \"double(id) * 100.0\"");
        let e = Pipeline::parse(&declared, "p.yaml")
            .unwrap()
            .validate()
            .err()
            .unwrap();
        assert!(
            e.message
                .contains("`ts` is a float: the time field must be an int"),
            "{}",
            e.message
        );
    }

    #[test]
    fn dropped_late_events_are_counted() {
        let text = "settings:\n  batch_size: 1\nsource:\n  type: generator\n  count: 3\n  fields:\n    ts: \"id == 2 ? 0 : id * 5000\"\nsteps:\n  - window:\n      type: tumbling\n      size: 1s\n      time_field: ts\n      late: drop\n      aggregate: { n: count() }\nsink:\n  type: discard\n";
        let p = Pipeline::parse(text, "p.yaml").unwrap();
        let env = weir_core::Environment::with_config(p.config());
        p.build(&env).unwrap();
        let result = env.execute().unwrap();
        let dropped = result.operator("steps[0].window.late_dropped").unwrap();
        assert_eq!(dropped.records_in, 1, "the event at 0 after 5000");
        assert_eq!(result.operator("sink").unwrap().records_in, 2);
    }

    /// Issue 11, item 16: a time far before year 0 gave `window_start` as a bare number.
    #[test]
    fn times_whose_windows_are_not_datetimes_go_to_the_dead_letter_output() {
        let text = "source:\n  type: generator\n  count: 3\n  fields:\n    ts: \"id == 1 ? -100000000000000000 : (id == 2 ? 253402300799000 : id * 1000)\"\nsteps:\n  - window:\n      type: tumbling\n      size: 1s\n      time_field: ts\n      aggregate: { n: count() }\nsink:\n  type: discard\ndead_letter:\n  type: discard\n";
        let p = Pipeline::parse(text, "p.yaml").unwrap();
        let env = weir_core::Environment::with_config(p.config());
        p.build(&env).unwrap();
        let result = env.execute().unwrap();
        assert_eq!(
            result.operator("sink").unwrap().records_in,
            1,
            "only the event at 0"
        );
        assert_eq!(result.operator("dead_letter").unwrap().records_in, 2);
    }

    #[test]
    fn a_key_field_may_not_clash_with_the_window_bounds() {
        let text = pipeline(OK, true, "").replace("key_by: id", "key_by: window_end");
        let text = text.replace(
            "    amount: \"id * 2\"",
            "    amount: \"id * 2\"\n    window_end: id",
        );
        let e = Pipeline::parse(&text, "p.yaml")
            .unwrap()
            .validate()
            .err()
            .unwrap();
        assert!(
            e.message
                .contains("would clash with the window's own `window_end`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn aggregates_are_checked_like_the_aggregate_step() {
        let e = error(&OK.replace("n: count()", "window_end: count()"), true);
        assert!(e.contains("`window_end` is already an output field"), "{e}");
        let e = error(&OK.replace("n: count()", "n: median(amount)"), true);
        assert!(e.contains("unknown aggregate function `median`"), "{e}");
        let e = error(
            &OK.replace("aggregate: { n: count() }", "aggregate: {}"),
            true,
        );
        assert!(
            e.contains("needs at least one `name: function(expression)`"),
            "{e}"
        );
    }
}
