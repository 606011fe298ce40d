//! Buffer policies on a full channel: block loses nothing, the drop policies drop and count.

use std::time::Duration;
use weir_connectors::SourceExt;
use weir_core::{BufferPolicy, Config, Environment};

const N: u64 = 20_000;

fn run(policy: BufferPolicy) -> (u64, u64) {
    let env = Environment::with_config(Config {
        batch_size: 100,
        ..Config::default()
    });
    let delivered = env
        .generate(N, |i| i)
        .map(|i| i)
        .name("fast")
        .for_each(|_| std::thread::sleep(Duration::from_micros(20)))
        .name("slow_sink")
        .buffer(500, policy);
    let _ = delivered;
    let result = env.execute().unwrap();
    let sink = result.operator("slow_sink").unwrap();
    (sink.records_in, sink.dropped)
}

#[test]
fn block_with_a_slow_sink_loses_nothing() {
    let (delivered, dropped) = run(BufferPolicy::Block);
    assert_eq!(delivered, N);
    assert_eq!(dropped, 0);
}

#[test]
fn drop_newest_drops_and_counts() {
    let (delivered, dropped) = run(BufferPolicy::DropNewest);
    assert!(
        dropped > 0,
        "a slow sink behind a 500-record buffer must drop"
    );
    assert_eq!(
        delivered + dropped,
        N,
        "every record is delivered or counted"
    );
}

#[test]
fn drop_oldest_drops_and_counts() {
    let (delivered, dropped) = run(BufferPolicy::DropOldest);
    assert!(
        dropped > 0,
        "a slow sink behind a 500-record buffer must drop"
    );
    assert_eq!(
        delivered + dropped,
        N,
        "every record is delivered or counted"
    );
}

#[test]
fn drop_oldest_keeps_the_newest_records() {
    let env = Environment::with_config(Config {
        batch_size: 100,
        ..Config::default()
    });
    let out = env
        .generate(N, |i| i)
        .map(|i| {
            std::thread::sleep(Duration::from_micros(20));
            i
        })
        .name("slow")
        .buffer(200, BufferPolicy::DropOldest)
        .collect();
    let result = env.execute().unwrap();
    let slow = result.operator("slow").unwrap();
    assert!(slow.dropped > 0);
    assert_eq!(slow.records_in + slow.dropped, N);
    let got = out.take();
    assert_eq!(got.len() as u64, slow.records_in);
    assert_eq!(got.last(), Some(&(N - 1)), "the newest record survives");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order is kept");
}
