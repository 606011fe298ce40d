//! Joins in running jobs, with keys that do and do not match.

use std::time::Duration;
use weir_core::{Config, Environment};
use weir_time::prelude::*;

fn env(parallelism: usize) -> Environment {
    Environment::with_config(Config {
        parallelism,
        batch_size: 1,
        ..Config::default()
    })
}

/// (user, event time)
type Click = (u32, i64);
/// (user, page, event time)
type View = (u32, char, i64);

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn window_join_pairs_each_key_within_each_window() {
    for p in [1, 2] {
        let env = env(p);
        let clicks = env
            .from_iter(vec![(1, 100), (1, 200), (2, 300), (4, 400), (1, 1_100)])
            .assign_timestamps(|c: &Click| c.1, Watermarks::ascending())
            .key_by(|c| c.0);
        let views = env
            .from_iter(vec![
                (1, 'a', 50),
                (1, 'b', 950),
                (3, 'c', 60),
                (1, 'd', 1_000),
            ])
            .assign_timestamps(|v: &View| v.2, Watermarks::ascending())
            .key_by(|v| v.0);
        let out = clicks.window_join(&views, Tumbling::of(Duration::from_secs(1)), |c, v| {
            (c.0, c.1, v.1)
        });
        let joined = out.joined.collect();
        env.execute().unwrap();
        // User 1: two clicks × two views in [0, 1000), one click × one view in [1000, 2000).
        // Users 2 and 4 have no views, user 3 no clicks: nothing.
        assert_eq!(
            sorted(joined.take()),
            vec![
                (1, 100, 'a'),
                (1, 100, 'b'),
                (1, 200, 'a'),
                (1, 200, 'b'),
                (1, 1_100, 'd'),
            ],
            "parallelism {p}"
        );
    }
}

#[test]
fn interval_join_matches_both_arrival_orders_and_bounds() {
    for p in [1, 2] {
        let env = env(p);
        // (order id, event time) and (order id, amount, event time)
        let orders = env
            .from_iter(vec![(1u32, 1_000i64), (2, 2_000), (3, 3_000), (4, 4_000)])
            .assign_timestamps(
                |o: &(u32, i64)| o.1,
                Watermarks::bounded(Duration::from_secs(10)),
            )
            .key_by(|o| o.0);
        let payments = env
            .from_iter(vec![
                (1u32, 10i64, 900i64), // 100 ms before the order: within `before`
                (2, 20, 2_500),        // 500 ms after: within `after`
                (2, 21, 2_501),        // 501 ms after: too late
                (3, 30, 2_799),        // 201 ms before: too early
                (5, 50, 5_000),        // no such order
            ])
            .assign_timestamps(
                |p: &(u32, i64, i64)| p.2,
                Watermarks::bounded(Duration::from_secs(10)),
            )
            .key_by(|p| p.0);
        let out = orders.interval_join(
            &payments,
            Duration::from_millis(200),
            Duration::from_millis(500),
            |o, pay| (o.0, pay.1),
        );
        let (joined, late) = (out.joined.collect(), out.late.collect());
        env.execute().unwrap();
        assert_eq!(
            sorted(joined.take()),
            vec![(1, 10), (2, 20)],
            "parallelism {p}"
        );
        assert!(late.take().is_empty());
    }
}

#[test]
fn enrichment_from_a_json_lines_table_with_left_and_inner_joins() {
    #[derive(serde::Deserialize)]
    struct User {
        id: u32,
        plan: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.jsonl");
    std::fs::write(
        &path,
        "{\"id\": 1, \"plan\": \"free\"}\n{\"id\": 2, \"plan\": \"pro\"}\n",
    )
    .unwrap();
    let users = Table::load_json_lines(&path, |u: &User| Some(u.id)).unwrap();
    let env = Environment::local();
    let views = env.from_iter(vec![(1u32, 'a'), (3, 'b'), (2, 'c')]);
    let plan = |v: (u32, char), u: Option<&User>| (v.1, u.map(|u| u.plan.clone()));
    let left = views
        .enrich(&users, |v| v.0, JoinKind::Left, plan)
        .collect();
    let inner = views
        .enrich(&users, |v| v.0, JoinKind::Inner, plan)
        .collect();
    env.execute().unwrap();
    assert_eq!(
        left.take(),
        vec![
            ('a', Some("free".to_string())),
            ('b', None),
            ('c', Some("pro".to_string()))
        ]
    );
    assert_eq!(
        inner.take(),
        vec![
            ('a', Some("free".to_string())),
            ('c', Some("pro".to_string()))
        ]
    );
}

#[test]
fn enrichment_from_a_keyed_stream_sees_the_value_as_of_each_record() {
    for p in [1, 2] {
        let env = env(p);
        // (user, plan, event time): user 1 upgrades at 1000; user 2 appears at 500.
        let plans = env
            .from_iter(vec![(1u32, 'f', 0i64), (2, 'p', 500), (1, 'p', 1_000)])
            .assign_timestamps(|u: &(u32, char, i64)| u.2, Watermarks::ascending())
            .key_by(|u| u.0);
        let views = env
            .from_iter(vec![
                (1u32, 100i64),
                (2, 100),
                (1, 999),
                (1, 1_000),
                (2, 2_000),
                (3, 2_500),
            ])
            .assign_timestamps(|v: &(u32, i64)| v.1, Watermarks::ascending())
            .key_by(|v| v.0);
        let left = views
            .enrich_latest(&plans, JoinKind::Left, |v, plan| {
                (v.0, v.1, plan.map(|p| p.1))
            })
            .joined
            .collect();
        let inner = views
            .enrich_latest(&plans, JoinKind::Inner, |v, plan| {
                (v.0, v.1, plan.map(|p| p.1))
            })
            .joined
            .collect();
        env.execute().unwrap();
        assert_eq!(
            sorted(left.take()),
            vec![
                (1, 100, Some('f')),
                (1, 999, Some('f')),
                (1, 1_000, Some('p')),
                (2, 100, None),
                (2, 2_000, Some('p')),
                (3, 2_500, None),
            ],
            "parallelism {p}"
        );
        assert_eq!(
            sorted(inner.take()),
            vec![
                (1, 100, Some('f')),
                (1, 999, Some('f')),
                (1, 1_000, Some('p')),
                (2, 2_000, Some('p')),
            ],
            "parallelism {p}"
        );
    }
}
