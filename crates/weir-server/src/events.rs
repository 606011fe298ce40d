//! `GET /v1/events`: the live feed of the dashboard. A Server-Sent Events stream that pushes,
//! about once a second, a compact snapshot of the pipelines: their status and counters, per
//! operator (records in/out, busy time, errors, input-channel fill) and their checkpoints.
//! Read from the manager's list and the metrics registry (the same counters as `/metrics`), so
//! the page never polls.
//!
//! What a connection is sent is proportional to what changed: its first event holds every
//! pipeline (`full: true`); each later one only the pipelines whose entry differs from what
//! this connection was last sent, and the names of those that are gone. A pipeline left out
//! did not change (its counters stood still: its rates are zero).

use crate::App;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{MethodRouter, get};
use futures::Stream;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
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
    let stream = futures::stream::unfold(
        (app, tick, Sent::default()),
        |(app, mut tick, mut sent)| async move {
            tick.tick().await;
            let event = Event::default()
                .event("snapshot")
                .data(sent.next(snapshot(&app)).to_string());
            Some((Ok(event), (app, tick, sent)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What one connection was sent last, per pipeline (`None`: nothing yet).
#[derive(Default)]
struct Sent {
    last: Option<HashMap<String, Value>>,
}

impl Sent {
    /// The event for `now` (a [`snapshot`]): all of it the first time, then the changes:
    /// `{t, full: false, pipelines: [changed], gone: [names]}`.
    fn next(&mut self, mut now: Value) -> Value {
        let pipelines = match now["pipelines"].take() {
            Value::Array(all) => all,
            _ => Vec::new(),
        };
        let named = |p: &Value| p["name"].as_str().unwrap_or_default().to_string();
        let Some(last) = &mut self.last else {
            self.last = Some(pipelines.iter().map(|p| (named(p), p.clone())).collect());
            return json!({ "t": now["t"], "full": true, "pipelines": pipelines, "gone": [] });
        };
        let mut changed = Vec::new();
        let mut present = HashSet::with_capacity(pipelines.len());
        for p in pipelines {
            let name = named(&p);
            present.insert(name.clone());
            if last.get(&name) != Some(&p) {
                last.insert(name, p.clone());
                changed.push(p);
            }
        }
        let mut gone: Vec<String> = last
            .keys()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect();
        gone.sort();
        for name in &gone {
            last.remove(name);
        }
        json!({ "t": now["t"], "full": false, "pipelines": changed, "gone": gone })
    }
}

/// Every pipeline now: `{t, pipelines: [{name, status, in, out, lag, dead, ops, cp}]}`, sorted
/// by name. `t` is the server's clock in milliseconds (rates are counter deltas over `t`
/// deltas); `ops` is one object per operator `{n: name, k: kind, i: in, o: out, b: busy
/// seconds, e: errors, d: dropped, f: input-channel fill 0..1 or null}`, empty while the
/// pipeline has no live job; `cp` is `{completed, failed, duration_sum, last_size}` or null.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, records: u64) -> Value {
        json!({"name": name, "status": "running", "in": records, "out": records, "ops": []})
    }

    #[test]
    fn a_connection_gets_everything_once_then_only_what_changed() {
        let mut sent = Sent::default();
        let first = sent.next(json!({"t": 1, "pipelines": [pipeline("a", 1), pipeline("b", 1)]}));
        assert_eq!(first["full"], true);
        assert_eq!(first["pipelines"].as_array().map(Vec::len), Some(2));
        // Only `b` moved; `a` is left out.
        let second = sent.next(json!({"t": 2, "pipelines": [pipeline("a", 1), pipeline("b", 5)]}));
        assert_eq!(second["full"], false);
        assert_eq!(second["pipelines"], json!([pipeline("b", 5)]));
        assert_eq!(second["gone"], json!([]));
        assert_eq!(second["t"], 2);
        // Nothing moved: nothing but the clock.
        let idle = sent.next(json!({"t": 3, "pipelines": [pipeline("a", 1), pipeline("b", 5)]}));
        assert_eq!(idle["pipelines"], json!([]));
        // `a` deleted, `c` new.
        let third = sent.next(json!({"t": 4, "pipelines": [pipeline("b", 5), pipeline("c", 0)]}));
        assert_eq!(third["pipelines"], json!([pipeline("c", 0)]));
        assert_eq!(third["gone"], json!(["a"]));
        // A new connection starts over with everything.
        let mut other = Sent::default();
        let full = other.next(json!({"t": 5, "pipelines": [pipeline("b", 5), pipeline("c", 0)]}));
        assert_eq!(full["full"], true);
        assert_eq!(full["pipelines"].as_array().map(Vec::len), Some(2));
    }
}
