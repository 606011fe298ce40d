//! Redis Streams against a real Redis (scripts/services.sh start).

use std::time::Duration;
use weir_connectors::testing::{redis_url, unique_name};
use weir_connectors::{
    ConnectorError, FieldEncoding, GroupStart, RedisStreamReader, RedisStreamReaderConfig,
    RedisStreamWriter, RedisStreamWriterConfig, StreamId,
};
use weir_types::{Record, Value};

macro_rules! redis_or_skip {
    () => {
        match redis_url().await {
            Some(url) => url,
            None => return,
        }
    };
}

fn record(n: i64) -> Record {
    Record::from_pairs([("n", Value::Int(n)), ("name", Value::from(format!("r{n}")))])
}

fn records(range: std::ops::Range<i64>) -> Vec<Record> {
    range.map(record).collect()
}

fn reader_config(url: &str, stream: &str, group: &str, consumer: &str) -> RedisStreamReaderConfig {
    let mut c = RedisStreamReaderConfig::new(url, stream, group, consumer);
    c.block = Duration::from_millis(100);
    c
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn ns(batch: &weir_connectors::StreamBatch) -> Vec<i64> {
    batch
        .entries
        .iter()
        .map(|e| e.record.get("n").and_then(Value::as_i64).unwrap())
        .collect()
}

#[tokio::test]
async fn group_is_created_once_and_starts_where_configured() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_group");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    // The reader creates the stream (MKSTREAM) when it does not exist yet.
    let mut from_start = RedisStreamReader::connect(reader_config(&url, &stream, "g_begin", "c1"))
        .await
        .unwrap();
    writer.write(&records(0..2)).await.unwrap();
    // Connecting again (group exists: BUSYGROUP) is fine.
    RedisStreamReader::connect(reader_config(&url, &stream, "g_begin", "c2"))
        .await
        .unwrap();
    let mut end_config = reader_config(&url, &stream, "g_end", "c1");
    end_config.start = GroupStart::End;
    let mut from_end = RedisStreamReader::connect(end_config).await.unwrap();

    assert_eq!(ns(&from_start.read_batch().await.unwrap()), vec![0, 1]);
    assert!(from_end.read_batch().await.unwrap().is_empty());
    writer.write(&records(2..3)).await.unwrap();
    assert_eq!(ns(&from_end.read_batch().await.unwrap()), vec![2]);

    let mut conn = raw(&url).await;
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(groups.len(), 2);
}

#[tokio::test]
async fn read_ack_and_lag() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_lag");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    let mut config = reader_config(&url, &stream, "g", "c1");
    config.batch_size = 4;
    let mut reader = RedisStreamReader::connect(config).await.unwrap();
    reader.ping().await.unwrap();
    writer.ping().await.unwrap();
    let ids = writer.write(&records(0..10)).await.unwrap();
    assert_eq!(ids.len(), 10);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let lag = reader.lag().await.unwrap();
    assert_eq!(
        (lag.undelivered, lag.pending, lag.estimated),
        (10, 0, false)
    );

    let batch = reader.read_batch().await.unwrap();
    assert_eq!(ns(&batch), vec![0, 1, 2, 3]);
    assert_eq!(batch.ids(), ids[..4].to_vec());
    assert_eq!(batch.entries[2].record, record(2));

    let lag = reader.lag().await.unwrap();
    assert_eq!((lag.undelivered, lag.pending), (6, 4));
    assert_eq!(lag.pending_by_consumer, vec![("c1".to_string(), 4)]);

    assert_eq!(reader.ack(&batch.ids()[..2]).await.unwrap(), 2);
    // Acknowledging again counts nothing: they are no longer pending.
    assert_eq!(reader.ack(&batch.ids()[..2]).await.unwrap(), 0);
    let lag = reader.lag().await.unwrap();
    assert_eq!((lag.undelivered, lag.pending), (6, 2));

    // The acker handle works from another task.
    let mut acker = reader.acker();
    let rest = batch.ids()[2..].to_vec();
    let acked = tokio::spawn(async move { acker.ack(&rest).await.unwrap() })
        .await
        .unwrap();
    assert_eq!(acked, 2);

    let mut all = Vec::new();
    loop {
        let batch = reader.read_batch().await.unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(ns(&batch));
        reader.ack(&batch.ids()).await.unwrap();
    }
    assert_eq!(all, (4..10).collect::<Vec<_>>());
    let lag = reader.lag().await.unwrap();
    assert_eq!((lag.undelivered, lag.pending), (0, 0));
}

#[tokio::test]
async fn a_dead_consumers_entries_are_claimed_by_another() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_claim");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    writer.write(&records(0..5)).await.unwrap();

    // Consumer A reads everything and dies without acknowledging.
    let mut a = RedisStreamReader::connect(reader_config(&url, &stream, "g", "a"))
        .await
        .unwrap();
    let taken = a.read_batch().await.unwrap();
    assert_eq!(ns(&taken), vec![0, 1, 2, 3, 4]);
    drop(a);

    let mut config = reader_config(&url, &stream, "g", "b");
    config.claim_idle = Duration::from_millis(200);
    config.batch_size = 2; // several XAUTOCLAIM rounds and calls
    let mut b = RedisStreamReader::connect(config).await.unwrap();
    // New entries: none; A's are pending, not new.
    assert!(b.read_batch().await.unwrap().is_empty());

    // Wait until A's entries have been idle long enough, then claim them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut claimed = Vec::new();
    for _ in 0..10 {
        let batch = b.claim_idle().await.unwrap();
        claimed.extend(ns(&batch));
        b.ack(&batch.ids()).await.unwrap();
        if claimed.len() == 5 {
            break;
        }
    }
    claimed.sort();
    assert_eq!(claimed, vec![0, 1, 2, 3, 4]);
    let lag = b.lag().await.unwrap();
    assert_eq!(lag.pending, 0);
    // Nothing is left to claim.
    assert!(b.claim_idle().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_restarted_consumer_rereads_its_own_pending_entries() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_pending");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    writer.write(&records(0..6)).await.unwrap();
    let mut config = reader_config(&url, &stream, "g", "c");
    config.batch_size = 4;
    let mut first = RedisStreamReader::connect(config.clone()).await.unwrap();
    let batch = first.read_batch().await.unwrap();
    first.ack(&batch.ids()[..1]).await.unwrap();
    drop(first);

    // One of the pending entries is deleted from the stream before the restart.
    let mut conn = raw(&url).await;
    let _: i64 = redis::cmd("XDEL")
        .arg(&stream)
        .arg(batch.ids()[2].to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    let mut restarted = RedisStreamReader::connect(config).await.unwrap();
    let mut seen = Vec::new();
    let mut deleted = Vec::new();
    let mut after = StreamId::ZERO;
    loop {
        let pending = restarted.read_own_pending(after).await.unwrap();
        if pending.is_empty() {
            break;
        }
        seen.extend(ns(&pending));
        deleted.extend(pending.deleted.iter().copied());
        after = pending.last_id().unwrap();
    }
    assert_eq!(seen, vec![1, 3]);
    assert_eq!(deleted, vec![batch.ids()[2]]);
    // The deleted entry left the pending list; the others stay until acknowledged.
    assert_eq!(restarted.lag().await.unwrap().pending, 2);
    // New entries are still delivered after the pending ones.
    assert_eq!(ns(&restarted.read_batch().await.unwrap()), vec![4, 5]);
}

#[tokio::test]
async fn idempotent_replays_write_nothing_twice() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_idem");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    assert_eq!(writer.last_id().await.unwrap(), None);

    let first = writer.write_idempotent(1, 0, &records(0..5)).await.unwrap();
    assert_eq!((first.written, first.skipped), (5, 0));
    // The whole batch again, as after a crash before the checkpoint completed.
    let replay = writer.write_idempotent(1, 0, &records(0..5)).await.unwrap();
    assert_eq!((replay.written, replay.skipped), (0, 5));
    // A replay that overlaps: seq 3 and 4 exist, 5 and 6 are new.
    let overlap = writer.write_idempotent(1, 3, &records(3..7)).await.unwrap();
    assert_eq!((overlap.written, overlap.skipped), (2, 2));
    let next_epoch = writer.write_idempotent(2, 0, &records(7..8)).await.unwrap();
    assert_eq!(next_epoch.written, 1);
    assert_eq!(writer.skipped_total(), 7);
    assert_eq!(writer.last_id().await.unwrap(), Some(StreamId::new(2, 0)));

    let mut reader = RedisStreamReader::connect(reader_config(&url, &stream, "g", "c"))
        .await
        .unwrap();
    let batch = reader.read_batch().await.unwrap();
    assert_eq!(ns(&batch), (0..8).collect::<Vec<_>>());
    let ids: Vec<String> = batch.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(
        ids,
        ["1-0", "1-1", "1-2", "1-3", "1-4", "1-5", "1-6", "2-0"]
    );

    let e = writer
        .write_idempotent(0, 0, &records(0..1))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidStreamId { .. }), "{e}");
}

#[tokio::test]
async fn other_xadd_errors_are_not_mistaken_for_replays() {
    let url = redis_or_skip!();
    let key = unique_name("weir_not_a_stream");
    let mut conn = raw(&url).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &key))
        .await
        .unwrap();
    let e = writer
        .write_idempotent(1, 0, &records(0..2))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(writer.skipped_total(), 0);
}

#[tokio::test]
async fn flat_and_invalid_entries() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_flat");
    let mut conn = raw(&url).await;
    for fields in [
        vec!["user", "7", "page", "/home"],
        vec!["user", "8", "page", "/cart"],
        vec!["data", "{not json"],
    ] {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*").arg(&fields);
        let _: String = cmd.query_async(&mut conn).await.unwrap();
    }
    let mut flat_config = reader_config(&url, &stream, "flat", "c");
    flat_config.encoding = FieldEncoding::Flat;
    let mut flat = RedisStreamReader::connect(flat_config).await.unwrap();
    let batch = flat.read_batch().await.unwrap();
    assert_eq!(batch.entries.len(), 3);
    assert_eq!(
        batch.entries[1].record.get("page"),
        Some(&Value::from("/cart"))
    );
    assert_eq!(batch.entries[0].record.get("user"), Some(&Value::from("7")));

    let mut json = RedisStreamReader::connect(reader_config(&url, &stream, "json", "c"))
        .await
        .unwrap();
    let batch = json.read_batch().await.unwrap();
    assert!(batch.entries.is_empty());
    assert_eq!(batch.invalid.len(), 3);
    assert!(batch.invalid[0].reason.contains("no field `data`"));
    assert!(batch.invalid[2].reason.contains("field `data`"));
    assert_eq!(batch.invalid[2].raw, "data={not json");
    // Invalid entries are acknowledged like the others (after going to a dead-letter output).
    assert_eq!(json.ack(&batch.ids()).await.unwrap(), 3);
}

#[tokio::test]
async fn max_len_trims_the_stream() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_trim");
    let mut config = RedisStreamWriterConfig::new(&url, &stream);
    config.max_len = Some(10);
    let mut writer = RedisStreamWriter::connect(config).await.unwrap();
    for chunk in 0..10 {
        writer
            .write(&records(chunk * 100..chunk * 100 + 100))
            .await
            .unwrap();
    }
    let mut conn = raw(&url).await;
    let len: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole macro-nodes (100 entries by default), so the length is near 10.
    assert!((10..1000).contains(&len), "XLEN {len}");
}

#[tokio::test]
async fn a_deleted_stream_and_group_are_recreated_by_the_reader() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_nogroup");
    let mut reader = RedisStreamReader::connect(reader_config(&url, &stream, "g", "c"))
        .await
        .unwrap();
    let mut conn = raw(&url).await;
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(reader.read_batch().await.unwrap().is_empty());
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    writer.write(&records(0..1)).await.unwrap();
    assert_eq!(ns(&reader.read_batch().await.unwrap()), vec![0]);
}

#[tokio::test]
async fn bad_configuration_names_the_key() {
    let url = redis_or_skip!();
    let mut config = reader_config(&url, "s", "g", "c");
    config.batch_size = 0;
    let e = RedisStreamReader::connect(config).await.unwrap_err();
    assert!(e.to_string().contains("`batch_size`"), "{e}");
    let e = RedisStreamReader::connect(reader_config("nope://x", "s", "g", "c"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`url`"), "{e}");
    assert_eq!(e.fault(), weir_connectors::Fault::User);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_retryable_connection_error() {
    // Nothing listens on port 1; no service needed.
    let e = RedisStreamWriter::connect(RedisStreamWriterConfig::new(
        "redis://:secret@127.0.0.1:1",
        "s",
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, ConnectorError::RedisConnect { .. }), "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[tokio::test]
async fn lag_is_an_upper_bound_when_redis_cannot_count() {
    let url = redis_or_skip!();
    let stream = unique_name("weir_lag_nil");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    let ids = writer.write(&records(0..5)).await.unwrap();
    let mut config = reader_config(&url, &stream, "g", "c");
    config.batch_size = 1;
    let mut reader = RedisStreamReader::connect(config).await.unwrap();
    reader.read_batch().await.unwrap();
    // A deletion after the group's position makes Redis 7 report `lag` as nil.
    let mut conn = raw(&url).await;
    let _: i64 = redis::cmd("XDEL")
        .arg(&stream)
        .arg(ids[2].to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let lag = reader.lag().await.unwrap();
    assert!(lag.estimated);
    // Three entries are undelivered; the stream length (4) bounds that from above.
    assert_eq!((lag.undelivered, lag.pending), (4, 1));
}
