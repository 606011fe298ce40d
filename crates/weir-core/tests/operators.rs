//! Semantics of every stream operator, on the real runtime.

use std::collections::BTreeMap;
use weir_connectors::SourceExt;
use weir_core::{Config, Environment, JobError};

fn env_with_parallelism(p: usize) -> Environment {
    Environment::with_config(Config {
        parallelism: p,
        batch_size: 7, // small batches exercise batch boundaries
        ..Config::default()
    })
}

#[test]
fn map_filter_flat_map_inspect() {
    let env = env_with_parallelism(1);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    let out = env
        .from_iter(0..20u64)
        .filter(|x| x % 3 == 0)
        .map(|x| x * 10)
        .inspect(move |_| {
            seen2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .flat_map(|x| vec![x, x + 1])
        .collect();
    let result = env.execute().unwrap();
    assert_eq!(
        out.take(),
        vec![0, 1, 30, 31, 60, 61, 90, 91, 120, 121, 150, 151, 180, 181]
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 7);
    let filter = result.operator("filter").unwrap();
    assert_eq!((filter.records_in, filter.records_out), (20, 7));
    assert_eq!(result.operator("flat_map").unwrap().records_out, 14);
}

#[test]
fn batch_groups_and_flushes_the_remainder() {
    let env = env_with_parallelism(1);
    let out = env.from_iter(1..=10).batch(4).collect();
    env.execute().unwrap();
    assert_eq!(
        out.take(),
        vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]
    );
}

#[test]
fn key_by_reduce_is_rolling_per_key() {
    let env = env_with_parallelism(1);
    let out = env
        .from_iter(vec![('a', 1), ('b', 10), ('a', 2), ('a', 3), ('b', 20)])
        .key_by(|(k, _)| *k)
        .reduce(|acc, x| (acc.0, acc.1 + x.1))
        .collect();
    env.execute().unwrap();
    assert_eq!(
        out.take(),
        vec![('a', 1), ('b', 10), ('a', 3), ('a', 6), ('b', 30)]
    );
}

#[test]
fn keyed_aggregate_and_count_emit_once_per_key_in_parallel() {
    let env = env_with_parallelism(3);
    let sums = env
        .generate(10_000, |i| (i % 7, i))
        .key_by(|(k, _)| *k)
        .aggregate(|| 0u64, |s, (_, v)| *s += v)
        .collect();
    let counts = env
        .generate(1_000, |i| i % 5)
        .key_by(|k| *k)
        .count()
        .collect();
    env.execute().unwrap();
    let sums: BTreeMap<u64, u64> = sums.take().into_iter().collect();
    let expected: BTreeMap<u64, u64> = (0..7)
        .map(|k| (k, (0..10_000).filter(|i| i % 7 == k).sum()))
        .collect();
    assert_eq!(sums, expected);
    let mut counts = counts.take();
    counts.sort();
    assert_eq!(counts, (0..5).map(|k| (k, 200)).collect::<Vec<_>>());
}

#[test]
fn keyed_fold_emits_after_every_record() {
    let env = env_with_parallelism(2);
    let out = env
        .from_iter(vec![1u32, 1, 2, 1])
        .key_by(|x| *x)
        .fold(Vec::new, |acc: &mut Vec<u32>, x| acc.push(x))
        .collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, vec![1]),
            (1, vec![1, 1]),
            (1, vec![1, 1, 1]),
            (2, vec![2])
        ]
    );
}

#[test]
fn split_routes_each_record_once() {
    let env = env_with_parallelism(1);
    let parts = env.from_iter(0..30u32).split(3, |x| (*x % 3) as usize);
    let collected: Vec<_> = parts.iter().map(|s| s.collect()).collect();
    env.execute().unwrap();
    for (i, c) in collected.iter().enumerate() {
        let got = c.take();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|x| *x as usize % 3 == i));
    }
}

#[test]
fn union_merges_streams_of_different_parallelism() {
    let env = env_with_parallelism(2);
    let a = env.generate(1000, |i| i);
    let b = env.from_iter(1000..1500u64);
    let c = env.generate(500, |i| 1500 + i).parallelism(3);
    let out = a.union(&[b, c]).map(|x| x + 1).collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (1..=2000).collect::<Vec<_>>());
}

#[test]
fn one_stream_read_twice_gives_each_reader_everything() {
    let env = env_with_parallelism(1);
    let s = env.from_iter(0..100u32);
    let doubled = s.map(|x| x * 2).collect();
    let total = s.count();
    env.execute().unwrap();
    assert_eq!(doubled.take().len(), 100);
    assert_eq!(total.get(), 100);
}

#[test]
fn take_ends_a_job_over_an_endless_generator() {
    let env = env_with_parallelism(2);
    let out = env
        .generate_unbounded(|i| i)
        .map(|i| i % 1000)
        .take(1234)
        .collect();
    let result = env.execute().unwrap();
    let got = out.take();
    assert_eq!(got.len(), 1234);
    // Lazy: the sources stopped soon after the limit, far from endless.
    let read = result.operator("generator").unwrap().records_out;
    assert!(
        read < 1_000_000,
        "sources read {read} records for take(1234)"
    );
}

#[test]
fn parallelism_four_fed_by_four_sources_delivers_every_record() {
    let env = env_with_parallelism(4);
    let out = env
        .generate(100_000, |i| i)
        .rebalance()
        .map(|x| x + 1)
        .parallelism(4)
        .collect();
    let result = env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (1..=100_000).collect::<Vec<_>>());
    assert_eq!(result.operator("map").unwrap().parallelism, 4);
    assert_eq!(result.operator("generator").unwrap().parallelism, 4);
}

#[test]
fn a_keyed_operator_waits_for_the_end_of_every_upstream_instance() {
    // SAGE Kernel ended the stream when the first upstream instance finished. Here one
    // instance ends immediately and another produces slowly: nothing may be lost.
    let env = env_with_parallelism(4);
    let out = env
        .generate(4000, |i| i)
        .map(|i| {
            if i >= 3000 && i % 100 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            i
        })
        .key_by(|i| i % 13)
        .count()
        .collect();
    env.execute().unwrap();
    let total: u64 = out.take().iter().map(|(_, c)| c).sum();
    assert_eq!(total, 4000);
}

#[test]
fn a_failing_user_function_fails_the_job_with_operator_and_position() {
    let env = env_with_parallelism(1);
    env.from_iter(0..100u32)
        .try_map(|x| {
            if x == 42 {
                Err(format!("bad value {x}"))
            } else {
                Ok(x)
            }
        })
        .name("parse")
        .count();
    let err = env.execute().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("'parse'"), "{text}");
    assert!(text.contains("at record 42"), "{text}");
    assert!(text.contains("bad value 42"), "{text}");
}

#[test]
fn a_panicking_user_function_fails_the_job_with_the_operator_name() {
    let env = env_with_parallelism(2);
    env.generate(1000, |i| i)
        .map(|x| {
            if x == 777 {
                panic!("boom at {x}");
            }
            x
        })
        .name("explode")
        .count();
    let err = env.execute().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("'explode'"), "{text}");
    assert!(text.contains("panicked: boom at 777"), "{text}");
    assert!(matches!(err, JobError::Operator { .. }));
}

#[test]
fn errors_routed_to_a_side_output_do_not_fail_the_job() {
    let env = env_with_parallelism(1);
    let (ok, failed) = env.from_iter(0..10i32).try_map_split(|x| {
        if x % 4 == 0 {
            Err(format!("{x} is a multiple of 4"))
        } else {
            Ok(x * 2)
        }
    });
    let ok = ok.collect();
    let failed = failed.collect();
    let result = env.execute().unwrap();
    assert_eq!(ok.take(), vec![2, 4, 6, 10, 12, 14, 18]);
    let failed = failed.take();
    assert_eq!(
        failed.iter().map(|f| f.position).collect::<Vec<_>>(),
        vec![0, 4, 8]
    );
    assert_eq!(failed[1].error, "4 is a multiple of 4");
    assert_eq!(&*failed[1].operator, "try_map");
    assert_eq!(result.operator("try_map").unwrap().errors, 3);
}

#[test]
fn a_job_without_a_sink_is_refused() {
    let env = Environment::local();
    let _ = env.from_iter(0..3).map(|x| x + 1);
    let err = env.execute().unwrap_err();
    assert!(err.to_string().contains("no sink"), "{err}");
}
