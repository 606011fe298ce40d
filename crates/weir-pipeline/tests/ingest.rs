//! Redis Streams → validate → mask → ClickHouse, with a dead-letter file, against the real
//! services started by `scripts/services.sh`.

use std::path::Path;
use weir_connectors::{
    ClickHouseClient, ClickHouseConfig, RedisStreamWriter, RedisStreamWriterConfig, block_on,
    testing,
};
use weir_core::Environment;
use weir_pipeline::Pipeline;
use weir_types::{Record, Value};

const SCHEMA: &str = r#"
name: analytics.pageview
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true, indexed: true }
  - { name: page, type: string, required: true }
  - { name: ms, type: int, default: 0 }
  - { name: email, type: string, sensitive: hash }
"#;

/// Event `i`; every 100th is invalid (a string where an int belongs).
pub fn event(i: u64) -> Record {
    let ms = if i % 100 == 99 {
        Value::from("slow")
    } else {
        Value::Int((i % 997) as i64)
    };
    Record::from_pairs([
        ("user_id", Value::from(format!("u{}", i % 50))),
        (
            "ts",
            Value::from(format!("2024-05-01 12:{:02}:{:02}", (i / 60) % 60, i % 60)),
        ),
        ("page", Value::from(format!("/p/{}", i % 7))),
        ("ms", ms),
        ("email", Value::from(format!("user{}@example.com", i % 50))),
    ])
}

fn produce(redis: &str, stream: &str, n: u64) {
    block_on(async {
        let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(redis, stream))
            .await
            .unwrap();
        let records: Vec<Record> = (0..n).map(event).collect();
        for chunk in records.chunks(1000) {
            writer.write(chunk).await.unwrap();
        }
    });
}

fn pipeline_yaml(dir: &Path, redis: &str, stream: &str, clickhouse: &str, table: &str) -> String {
    format!(
        r#"
name: ingest_test
schemas: {schemas}
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: loaders
  stop_after_idle: 1s
steps:
  - validate: analytics.pageview
  - mask: analytics.pageview
sink:
  type: clickhouse
  url: {clickhouse}
  table: {table}
  schema: analytics.pageview
  batch_rows: 2000
dead_letter:
  type: file
  path: {dead}
"#,
        schemas = dir.join("schemas").display(),
        dead = dir.join("dead.jsonl").display(),
    )
}

#[test]
fn redis_to_clickhouse_validates_masks_and_dead_letters() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let registry = weir_schema::Registry::open(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("pageview.yaml"), SCHEMA).unwrap();
    registry
        .register_file(dir.path().join("pageview.yaml"))
        .unwrap();

    let stream = testing::unique_name("pageviews");
    let table = testing::unique_name("pageviews");
    const N: u64 = 5_000;
    produce(&redis, &stream, N);

    let yaml = pipeline_yaml(dir.path(), &redis, &stream, &clickhouse, &table);
    let pipeline = Pipeline::parse(&yaml, "ingest.yaml").unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    env.execute().unwrap();

    let client = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)).unwrap();
    let rows = block_on(client.query_json(&format!(
        "SELECT count() AS n, uniqExact(email) AS emails, sum(ms) AS total FROM {table}"
    )))
    .unwrap();
    let invalid = N / 100;
    assert_eq!(
        rows[0].get("n").and_then(Value::as_i64),
        Some((N - invalid) as i64)
    );
    let expected_ms: i64 = (0..N)
        .filter(|i| i % 100 != 99)
        .map(|i| (i % 997) as i64)
        .sum();
    assert_eq!(
        rows[0].get("total").and_then(Value::as_i64),
        Some(expected_ms)
    );
    // Emails were hashed before they left the pipeline.
    let sample =
        block_on(client.query_json(&format!("SELECT email FROM {table} LIMIT 1"))).unwrap();
    let email = sample[0]
        .get("email")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    assert!(!email.contains('@'), "email not hashed: {email}");

    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len() as u64, invalid);
    assert!(dead.iter().all(|d| d["stage"] == "steps[0].validate"));
    assert!(
        dead[0]["error"].as_str().unwrap().contains("ms"),
        "{}",
        dead[0]
    );

    // Everything read was acknowledged.
    let pending: i64 = block_on(async {
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("loaders")
            .query_async(&mut conn)
            .await
            .unwrap();
        match reply {
            redis::Value::Array(parts) => match &parts[0] {
                redis::Value::Int(n) => *n,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(pending, 0);
}

#[test]
fn clickhouse_without_a_schema_writes_plain_json_rows_exactly_once() {
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = testing::unique_name("plain");
    let client = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)).unwrap();
    block_on(client.execute(&format!(
        "CREATE TABLE {table} (id Int64, meta String, _weir_batch String) ENGINE = MergeTree ORDER BY id"
    )))
    .unwrap();
    let lines: String = (0..5000)
        .map(|i| format!("{{\"id\":{i},\"meta\":{{\"n\":{i},\"tags\":[\"a\"]}}}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let yaml = format!(
        "source: {{ type: file, path: in.jsonl }}
settings: {{ checkpoint: {{ interval: 20ms }} }}
sink: {{ type: clickhouse, url: {clickhouse}, table: {table}, batch_rows: 700, create_table: false }}
"
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let pipeline = Pipeline::load(dir.path().join("p.yaml")).unwrap();
    let mut config = pipeline.config();
    config.checkpointing = pipeline
        .checkpoint_plan(&weir_pipeline::Resume::default())
        .unwrap()
        .map(|p| p.checkpointing);
    let env = Environment::with_config(config);
    pipeline.build(&env).unwrap();
    env.execute().unwrap();
    let rows = block_on(client.query_json(&format!(
        "SELECT count() AS n, uniqExact(id) AS ids, uniqExact(_weir_batch) AS batches, any(meta) AS meta FROM {table}"
    )))
    .unwrap();
    let int = |f: &str| {
        rows[0]
            .get(f)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
    };
    assert_eq!(int("n"), Some(5000));
    assert_eq!(int("ids"), Some(5000));
    assert!(int("batches").unwrap() >= 8, "batches of at most 700 rows");
    let meta = rows[0]
        .get("meta")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    assert!(
        meta.starts_with("{\"n\":") && meta.contains("\"tags\":[\"a\"]"),
        "{meta}"
    );
    let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {table}")));
}
