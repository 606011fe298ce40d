//! Helpers shared by the integration tests that drive the `weir` binary against the services.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use weir_connectors::{RedisStreamWriter, RedisStreamWriterConfig, block_on};
use weir_types::{Record, Value};

/// The `weir` binary under test.
pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// The repository's root (examples, README).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// StreamHouse page view `i`: one per second of event time from 12:00:00, nine pages. With
/// `invalid_every_100`, every 100th (i % 100 == 42) has text where the schema wants an int.
pub fn pageview(i: u64, invalid_every_100: bool) -> Record {
    let ms = if invalid_every_100 && i % 100 == 42 {
        Value::from("slow")
    } else {
        Value::Int((i % 900) as i64)
    };
    Record::from_pairs([
        ("id", Value::Int(i as i64)),
        ("user_id", Value::from(format!("u{}", i % 97))),
        (
            "ts",
            Value::from(format!("2024-05-01 12:{:02}:{:02}", (i / 60) % 60, i % 60)),
        ),
        ("page", Value::from(format!("/p/{}", i % 9))),
        ("ms", ms),
        ("email", Value::from(format!("u{}@example.com", i % 97))),
        ("ip", Value::from("10.1.2.3")),
    ])
}

/// An integer field of a ClickHouse row (ClickHouse's JSON gives 64-bit integers as strings).
pub fn int(r: &Record, field: &str) -> i64 {
    let v = r
        .get(field)
        .unwrap_or_else(|| panic!("{field} missing in {r:?}"));
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{field}: {v:?}"))
}

/// Appends `records` to a Redis stream (XADD, in the producer client's `data` format).
pub fn xadd(redis: &str, stream: &str, records: impl Iterator<Item = Record>) {
    let records: Vec<Record> = records.collect();
    block_on(async {
        let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(redis, stream))
            .await
            .unwrap();
        for chunk in records.chunks(2000) {
            writer.write(chunk).await.unwrap();
        }
    });
}

/// Deletes a Redis stream (nothing happens when it does not exist).
pub fn redis_del(redis: &str, stream: &str) {
    block_on(async {
        let client = redis::Client::open(redis).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap();
    });
}
