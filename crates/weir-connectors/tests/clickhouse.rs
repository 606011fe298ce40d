//! ClickHouse over HTTP against a real server (scripts/services.sh start: ClickHouse 18.16).

use std::time::Duration;
use weir_connectors::testing::{clickhouse_url, unique_name};
use weir_connectors::{
    BatchBuilder, BatchId, ClickHouseClient, ClickHouseConfig, CommitMode, ConnectorError,
    ExactlyOnceInserter, Fault, InsertBatch,
};
use weir_types::{Record, Value};

macro_rules! clickhouse_or_skip {
    () => {
        match clickhouse_url().await {
            Some(url) => ClickHouseClient::new(ClickHouseConfig::new(url)).unwrap(),
            None => return,
        }
    };
}

async fn count(client: &ClickHouseClient, sql: &str) -> i64 {
    let rows = client.query_json(sql).await.unwrap();
    rows[0].get("c").and_then(Value::as_i64).unwrap()
}

/// A table like the sink writes: data columns plus `_weir_batch`.
async fn sink_table(client: &ClickHouseClient, partitioned: bool) -> String {
    let table = unique_name("weir_sink");
    let partition = if partitioned {
        "PARTITION BY toYYYYMM(ts)"
    } else {
        ""
    };
    client
        .execute(&format!(
            "CREATE TABLE {table} (ts DateTime, id UInt64, name String, _weir_batch String) \
             ENGINE = MergeTree {partition} ORDER BY (id)"
        ))
        .await
        .unwrap();
    table
}

fn row(id: i64, month: u32) -> Record {
    Record::from_pairs([
        (
            "ts",
            Value::Timestamp(1_700_000_000_000 + i64::from(month) * 31 * 86_400_000 + id),
        ),
        ("id", Value::Int(id)),
        ("name", Value::from(format!("row {id}"))),
    ])
}

/// Batches of checkpoint `checkpoint`: `per_batch` rows each, ids continuing from `first_id`.
fn batches(checkpoint: u64, n: usize, per_batch: usize, first_id: i64) -> Vec<InsertBatch> {
    (0..n)
        .map(|seq| {
            let mut b = BatchBuilder::new(BatchId::new("job", "sink-0", checkpoint, seq as u64));
            for i in 0..per_batch {
                b.push(&row(first_id + (seq * per_batch + i) as i64, 0))
                    .unwrap();
            }
            b.finish()
        })
        .collect()
}

#[tokio::test]
async fn version_execute_insert_count_and_checksum() {
    let client = clickhouse_or_skip!();
    let version = client.version().await.unwrap();
    assert!(version.major >= 18, "{version:?}");

    let table = unique_name("weir_basic");
    client
        .execute(&format!(
            "CREATE TABLE {table} (ts DateTime, n UInt32, s String) ENGINE = MergeTree ORDER BY n"
        ))
        .await
        .unwrap();
    let mut rows = Vec::new();
    for n in 1..=100u32 {
        // Datetimes in every form the insert accepts: RFC 3339, SQL text, unix seconds.
        let ts = match n % 3 {
            0 => serde_json::json!("2024-05-01T12:00:00.250Z"),
            1 => serde_json::json!("2024-05-01 12:00:00"),
            _ => serde_json::json!(1_714_564_800),
        };
        rows.extend_from_slice(
            serde_json::json!({"ts": ts, "n": n, "s": format!("s{n}")})
                .to_string()
                .as_bytes(),
        );
        rows.push(b'\n');
    }
    client.insert_json_each_row(&table, &rows).await.unwrap();

    assert_eq!(
        count(&client, &format!("SELECT count() AS c FROM {table}")).await,
        100
    );
    let check = client
        .query_json(&format!(
            "SELECT sum(n) AS total, uniqExact(s) AS names, uniqExact(ts) AS times, \
             toString(min(ts)) AS first FROM {table}"
        ))
        .await
        .unwrap();
    assert_eq!(check.len(), 1);
    assert_eq!(check[0].get("total"), Some(&Value::Int(5050)));
    assert_eq!(check[0].get("names"), Some(&Value::Int(100)));
    assert_eq!(check[0].get("times"), Some(&Value::Int(1)));
    assert_eq!(
        check[0].get("first"),
        Some(&Value::from("2024-05-01 12:00:00"))
    );
}

#[tokio::test]
async fn gzip_inserts_arrive_intact() {
    let Some(url) = clickhouse_url().await else {
        return;
    };
    let mut config = ClickHouseConfig::new(url);
    config.gzip = true;
    let client = ClickHouseClient::new(config).unwrap();
    let table = unique_name("weir_gzip");
    client
        .execute(&format!(
            "CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n"
        ))
        .await
        .unwrap();
    let rows: String = (0..1000).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    client
        .insert_json_each_row(&table, rows.as_bytes())
        .await
        .unwrap();
    let sum = client
        .query_json(&format!("SELECT sum(n) AS c FROM {table}"))
        .await
        .unwrap();
    assert_eq!(sum[0].get("c"), Some(&Value::Int(499_500)));
}

#[tokio::test]
async fn errors_are_classified() {
    let client = clickhouse_or_skip!();

    let e = client.execute("SELEC 1").await.unwrap_err();
    assert_eq!(e.clickhouse_code(), Some(62), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(e.fault(), Fault::User);
    assert!(e.to_string().contains("Syntax error"), "{e}");
    assert!(e.to_string().contains("SELEC 1"), "{e}");

    let missing = unique_name("weir_missing");
    let e = client
        .insert_json_each_row(&missing, b"{\"n\":1}\n")
        .await
        .unwrap_err();
    assert_eq!(e.clickhouse_code(), Some(60), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&missing), "{e}");

    let e = client
        .query_json("SELECT nope FROM system.one")
        .await
        .unwrap_err();
    assert_eq!(e.clickhouse_code(), Some(47), "{e}");

    // Nothing listens on port 1: a connection error, retryable.
    let down = ClickHouseClient::new(ClickHouseConfig::new("http://127.0.0.1:1")).unwrap();
    let e = down.version().await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::ClickHouseConnection { .. }),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.fault(), Fault::External);

    // A query slower than the client's timeout.
    let mut config = ClickHouseConfig::new(client.url());
    config.timeout = Duration::from_millis(300);
    let impatient = ClickHouseClient::new(config).unwrap();
    let e = impatient
        .query_json("SELECT sleep(2) AS c")
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::ClickHouseTimeout { .. }), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn recovery_replay_inserts_each_row_once() {
    let client = clickhouse_or_skip!();
    let table = sink_table(&client, false).await;

    // Checkpoint 1 commits fully; checkpoint 2 "crashes" after its first two batches.
    let cp1 = batches(1, 3, 50, 0);
    let cp2 = batches(2, 4, 50, 150);
    let inserter = ExactlyOnceInserter::new(client.clone(), &table).with_max_block_rows(50);
    let r = inserter.commit(&cp1, CommitMode::Normal).await.unwrap();
    assert_eq!((r.inserted_batches, r.inserted_rows), (3, 150));
    inserter
        .commit(&cp2[..2], CommitMode::Normal)
        .await
        .unwrap();
    drop(inserter);

    // Recovery: a new inserter replays both checkpoints' batches.
    let recovered = ExactlyOnceInserter::new(client.clone(), &table).with_max_block_rows(50);
    let r = recovered.commit(&cp1, CommitMode::Recovery).await.unwrap();
    assert_eq!((r.skipped_batches, r.inserted_batches), (3, 0));
    let r = recovered.commit(&cp2, CommitMode::Recovery).await.unwrap();
    assert_eq!(
        (r.skipped_batches, r.inserted_batches, r.inserted_rows),
        (2, 2, 100)
    );
    assert_eq!(r.repaired_batches, 0);

    let totals = client
        .query_json(&format!(
            "SELECT count() AS c, uniqExact(id) AS ids, uniqExact(_weir_batch) AS batches, \
             sum(id) AS s FROM {table}"
        ))
        .await
        .unwrap();
    assert_eq!(totals[0].get("c"), Some(&Value::Int(350)));
    assert_eq!(totals[0].get("ids"), Some(&Value::Int(350)));
    assert_eq!(totals[0].get("batches"), Some(&Value::Int(7)));
    assert_eq!(totals[0].get("s"), Some(&Value::Int((0..350).sum())));

    // Without the recovery flag the inserter does not look: that is the caller's contract.
    let r = recovered
        .commit(&cp1[..1], CommitMode::Normal)
        .await
        .unwrap();
    assert_eq!(r.inserted_batches, 1);
    assert_eq!(
        count(&client, &format!("SELECT count() AS c FROM {table}")).await,
        400
    );
}

#[tokio::test]
async fn a_failed_insert_leaves_nothing_of_its_batch() {
    let client = clickhouse_or_skip!();
    let table = sink_table(&client, false).await;
    let inserter = ExactlyOnceInserter::new(client.clone(), &table);
    // 99 good rows and, last, one that does not parse (a string for a UInt64 column).
    let mut b = BatchBuilder::new(BatchId::new("job", "s", 1, 0));
    for id in 0..99 {
        b.push(&row(id, 0)).unwrap();
    }
    b.push(&Record::from_pairs([
        ("ts", Value::from("2024-01-01 00:00:00")),
        ("id", Value::from("not a number")),
        ("name", Value::from("bad")),
    ]))
    .unwrap();
    let e = inserter
        .commit(&[b.finish()], CommitMode::Normal)
        .await
        .unwrap_err();
    assert!(e.clickhouse_code().is_some(), "{e}");
    assert!(!e.is_retryable(), "{e}");
    // One insert is one block: the 99 good rows were not written either.
    assert_eq!(
        count(&client, &format!("SELECT count() AS c FROM {table}")).await,
        0
    );
}

#[tokio::test]
async fn a_partial_batch_is_repaired_on_recovery() {
    let client = clickhouse_or_skip!();
    let table = sink_table(&client, true).await;
    // One batch spanning three monthly partitions: ClickHouse writes one part per partition.
    let id = BatchId::new("job", "s", 5, 0);
    let mut full = BatchBuilder::new(id.clone());
    let mut first_partition_only = BatchBuilder::new(id.clone());
    for i in 0..30 {
        let month = (i % 3) as u32;
        full.push(&row(i, month)).unwrap();
        if month == 0 {
            first_partition_only.push(&row(i, month)).unwrap();
        }
    }
    // What a crash between two partitions' parts would leave behind.
    let partial = first_partition_only.finish();
    client
        .insert_json_each_row(&table, partial.rows())
        .await
        .unwrap();
    assert_eq!(
        count(&client, &format!("SELECT count() AS c FROM {table}")).await,
        10
    );

    let inserter = ExactlyOnceInserter::new(client.clone(), &table);
    let present = inserter.present_batches(&[full.finish()]).await.unwrap();
    assert_eq!(present.get(id.as_str()), Some(&10));

    let mut full = BatchBuilder::new(id.clone());
    for i in 0..30 {
        full.push(&row(i, (i % 3) as u32)).unwrap();
    }
    let r = inserter
        .commit(&[full.finish()], CommitMode::Recovery)
        .await
        .unwrap();
    assert_eq!(
        (r.repaired_batches, r.inserted_batches, r.inserted_rows),
        (1, 1, 30)
    );
    let totals = client
        .query_json(&format!(
            "SELECT count() AS c, uniqExact(id) AS ids FROM {table}"
        ))
        .await
        .unwrap();
    assert_eq!(totals[0].get("c"), Some(&Value::Int(30)));
    assert_eq!(totals[0].get("ids"), Some(&Value::Int(30)));
}

#[tokio::test]
async fn a_batch_larger_than_one_block_is_refused_before_anything_is_sent() {
    let client = clickhouse_or_skip!();
    let table = sink_table(&client, false).await;
    let inserter = ExactlyOnceInserter::new(client.clone(), &table).with_max_block_rows(10);
    let mut all = batches(1, 1, 5, 0);
    all.extend(batches(2, 1, 11, 100));
    let e = inserter.commit(&all, CommitMode::Normal).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Batch { .. }), "{e}");
    assert!(e.to_string().contains("job/sink-0/2/0"), "{e}");
    assert_eq!(e.fault(), Fault::User);
    assert_eq!(
        count(&client, &format!("SELECT count() AS c FROM {table}")).await,
        0
    );
}
