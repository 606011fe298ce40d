//! `GET /v1/events`: the live feed of the dashboard. A Server-Sent Events stream that pushes,
//! about once a second, a compact snapshot of every pipeline: its status and its counters,
//! per operator (records in/out, busy time, errors, input-channel fill) and its checkpoints.
//! Read from the manager's list and the metrics registry (the same counters as `/metrics`), so
//! the page never polls.

use crate::App;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{MethodRouter, get};
use futures::Stream;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often a snapshot is pushed.
const PERIOD: Duration = Duration::from_secs(1);

/// The route's handler, for the route table.
pub fn route() -> MethodRouter<Arc<App>> {
    get(events)
}

async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold((app, tick), |(app, mut tick)| async move {
        tick.tick().await;
        let event = Event::default()
            .event("snapshot")
            .data(snapshot(&app).to_string());
        Some((Ok(event), (app, tick)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Every pipeline now: `{t, pipelines: [{name, status, in, out, lag, dead, ops, cp}]}`.
/// `t` is the server's clock in milliseconds (rates are counter deltas over `t` deltas);
/// `ops` is one object per operator `{n: name, k: kind, i: in, o: out, b: busy seconds,
/// e: errors, d: dropped, f: input-channel fill 0..1 or null}`, empty while the pipeline has no
/// live job; `cp` is `{completed, failed, duration_sum, last_size}` or null.
pub fn snapshot(app: &App) -> Value {
    let listed = app.manager.list();
    let empty = Vec::new();
    let pipelines: Vec<Value> = listed["pipelines"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default();
            let mut out = json!({
                "name": name,
                "status": p["status"],
                "in": p["records_in"],
                "out": p["records_out"],
                "lag": Value::Null,
                "dead": 0,
                "ops": [],
                "cp": Value::Null,
            });
            if let Some(job) = app.metrics.job(name) {
                let totals = weir_telemetry::Totals::of(&job);
                out["lag"] = json!(totals.consumer_lag);
                out["dead"] = json!(totals.dead_letters);
                let ops: Vec<Value> = job
                    .operators()
                    .iter()
                    .map(|op| {
                        let kind = op.kind();
                        let (mut i, mut o, mut b, mut e, mut d) = (0u64, 0u64, 0f64, 0u64, 0u64);
                        let mut fill: Option<f64> = None;
                        for inst in op.instances() {
                            i += if kind == "source" {
                                inst.records_out
                            } else {
                                inst.records_in
                            };
                            o += if kind == "sink" {
                                inst.records_in
                            } else {
                                inst.records_out
                            };
                            b += inst.busy.as_secs_f64();
                            e += inst.errors;
                            d += inst.dropped;
                            if let Some((queued, capacity)) = inst.input_channel {
                                let ratio = (queued as f64 / capacity.max(1) as f64).min(1.0);
                                fill = Some(fill.map_or(ratio, |f| f.max(ratio)));
                            }
                        }
                        json!({"n": op.name(), "k": kind, "i": i, "o": o, "b": b, "e": e, "d": d, "f": fill})
                    })
                    .collect();
                out["ops"] = Value::Array(ops);
                if let Some(c) = job.checkpoints() {
                    out["cp"] = json!({
                        "completed": c.completed,
                        "failed": c.failed,
                        "duration_sum": c.duration_sum,
                        "last_size": c.last_size_bytes,
                    });
                }
            }
            out
        })
        .collect();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({ "t": t, "pipelines": pipelines })
}
