//! Session windows against a brute-force model (issue 11, item 7): random events, gaps,
//! watermark delays, batch sizes 1..1024 and parallelism 1..3 give exactly the sessions of
//! sorting each key's events and cutting where two are more than `gap` apart.
//!
//! Events are out of order by at most the watermark delay, so none is late and the model is
//! exact. (The bounded queue is checked by the operator's unit tests, which can see it.)

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weir_connectors::SourceExt;
use weir_core::{Config, Environment};
use weir_time::prelude::*;

/// (key, value, event time)
type Event = (u8, i64, i64);
/// (key, start, end, count, sum)
type Row = (u8, i64, i64, u64, i64);

/// Each key's events sorted by time, cut where the next is more than `gap` after the previous.
fn model(events: &[Event], gap: i64) -> Vec<Row> {
    let mut by_key: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
    for &(k, v, t) in events {
        by_key.entry(k).or_default().push((t, v));
    }
    let mut rows = Vec::new();
    for (k, mut evs) in by_key {
        evs.sort();
        let mut current: Option<Row> = None;
        for (t, v) in evs {
            match &mut current {
                Some(row) if t <= row.2 => {
                    row.2 = row.2.max(t + gap);
                    row.3 += 1;
                    row.4 += v;
                }
                _ => {
                    rows.extend(current.take());
                    current = Some((k, t, t + gap, 1, v));
                }
            }
        }
        rows.extend(current);
    }
    rows.sort();
    rows
}

/// Events whose times run forward in random steps and lag by at most `delay` behind the
/// newest time so far (so none is behind a `bounded(delay)` watermark).
fn events(delay: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0u8..4, -5i64..20, 0i64..200, 0..=delay), 1..400).prop_map(|raw| {
        let mut clock = 1_000_000;
        raw.into_iter()
            .map(|(k, v, step, lag)| {
                clock += step;
                (k, v, clock - lag)
            })
            .collect()
    })
}

fn run(
    events: Arc<Vec<Event>>,
    gap: i64,
    delay: i64,
    batch: usize,
    parallelism: usize,
) -> (Vec<Row>, usize) {
    let env = Environment::with_config(Config {
        parallelism,
        batch_size: batch,
        ..Config::default()
    });
    let n = events.len() as u64;
    let out = env
        .generate(n, move |id| events[id as usize])
        .assign_timestamps(
            |e| e.2,
            Watermarks::bounded(Duration::from_millis(delay as u64)),
        )
        .key_by(|e| e.0)
        .window(Session::with_gap(Duration::from_millis(gap as u64)))
        .aggregate((Count, Sum::of(|e: &Event| e.1)));
    let (results, late) = (out.results.collect(), out.late.collect());
    env.execute().expect("the job runs");
    let mut rows: Vec<Row> = results
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value.0, r.value.1))
        .collect();
    rows.sort();
    (rows, late.take().len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sessions_match_the_brute_force_model(
        (delay, events) in (0i64..200).prop_flat_map(|d| (Just(d), events(d))),
        gap in 1i64..80,
        batch in 1usize..=1024,
        parallelism in 1usize..=3,
    ) {
        let expected = model(&events, gap);
        let (got, late) = run(Arc::new(events), gap, delay, batch, parallelism);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(got, expected);
    }
}

/// The reproduction of the issue: one key, an event every 10 s, gap 3 s, watermark delay 10 s,
/// one record per batch; with two source partitions, whose watermarks differ. Before the fix
/// the fire queue doubled with every event.
#[test]
fn sparse_sessions_behind_a_long_watermark_delay_run() {
    let events: Vec<Event> = (0..20_000).map(|i| (0, 1, i * 10_000)).collect();
    let expected = model(&events, 3_000);
    let (got, late) = run(Arc::new(events), 3_000, 10_000, 1, 2);
    assert_eq!(late, 0);
    assert_eq!(got.len(), 20_000);
    assert_eq!(got, expected);
}
