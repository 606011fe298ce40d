//! Event time of named streams: a source's `event_time` reads each record's time and emits
//! the source's watermarks; the watermarks then travel with the records through the steps
//! (each task forwards the minimum over its inputs), and the time-based multi-input steps
//! (joins) read the time field again where they need it.

use crate::graph::EventTimeSpec;
use crate::steps::reject;
use crate::{Pipeline, PipelineError};
use std::sync::Arc;
use weir_core::{Operator, OperatorContext, OperatorError, Stream};
use weir_expr::FieldTypes;
use weir_time::prelude::*;
use weir_types::{Record, Value, ValueKind, parse_datetime};

/// A record's event time from `field`: an int (milliseconds since the epoch) or a datetime
/// (also as text).
pub(crate) fn read_time(record: &Record, field: &str) -> Result<i64, String> {
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

/// Checks that a time field exists and has a time's type when the fields are known.
pub(crate) fn check_time_field(
    p: &Pipeline,
    at: &str,
    field: &str,
    fields: &FieldTypes,
) -> Result<(), PipelineError> {
    if fields.is_dynamic() {
        return Ok(());
    }
    match fields.get(field) {
        None => {
            let known: Vec<&str> = fields.names().collect();
            Err(p.error_at(
                at,
                format!(
                    "unknown field `{field}`; the records here have: {}",
                    known.join(", ")
                ),
            ))
        }
        Some(Some(kind))
            if !matches!(kind, ValueKind::Int | ValueKind::Timestamp | ValueKind::Str) =>
        {
            Err(p.error_at(
                at,
                format!(
                    "`{field}` is a {kind}: the time field must be an int (milliseconds since the epoch) or a datetime"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Timestamps records from their time field; records without a readable time are rejected
/// (the dead-letter output, or the job fails).
pub(crate) struct ReadTime {
    pub field: Arc<str>,
    pub stage: Arc<str>,
    pub route_errors: bool,
}

impl Operator<Record, Result<Timestamped<Record>, Record>> for ReadTime {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Result<Timestamped<Record>, Record>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let start = ctx.position();
        for (i, record) in input.drain(..).enumerate() {
            match read_time(&record, &self.field) {
                Ok(time) => out.push(Ok(Timestamped::new(time, record))),
                Err(error) => reject(
                    self.route_errors,
                    &self.stage,
                    error,
                    &record,
                    start + i as u64,
                    ctx,
                    out,
                )?,
            }
        }
        Ok(())
    }
}

/// Timestamps `stream` by `field` (at `stage`), sending records without a time to `dead`.
pub(crate) fn timestamped(
    stream: &Stream<Record>,
    field: &str,
    stage: &str,
    route_errors: bool,
    dead: &mut Vec<Stream<Record>>,
) -> Stream<Timestamped<Record>> {
    let (field, st): (Arc<str>, Arc<str>) = (field.into(), stage.into());
    let read = stream.transform(stage, move || ReadTime {
        field: field.clone(),
        stage: st.clone(),
        route_errors,
    });
    let (ok, failed) = read.split_result();
    if route_errors {
        dead.push(failed);
    }
    ok
}

/// A source's `event_time`: reads each record's time and emits the source's watermarks.
/// The records go on as they were; the watermarks go with them.
pub(crate) fn assign(
    p: &Pipeline,
    at: &str,
    spec: &EventTimeSpec,
    stream: &Stream<Record>,
    fields: &FieldTypes,
    route_errors: bool,
    dead: &mut Vec<Stream<Record>>,
) -> Result<Stream<Record>, PipelineError> {
    let at = format!("{at}.event_time");
    check_time_field(p, &format!("{at}.field"), &spec.field, fields)?;
    let mut watermarks =
        Watermarks::bounded(spec.watermark_delay.map(|d| d.get()).unwrap_or_default());
    if let Some(idle) = spec.idle_timeout {
        watermarks = watermarks.idle_after(idle.get());
    }
    let timed = timestamped(stream, &spec.field, &at, route_errors, dead);
    Ok(timed
        .with_watermarks(watermarks)
        .name(&format!("{at}.watermarks"))
        .map(|t: Timestamped<Record>| t.item)
        .name(&at))
}
