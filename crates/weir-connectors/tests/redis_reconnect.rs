//! Connections dropped by the server are re-established. Its own test binary: it kills every
//! client connection of this process (CLIENT KILL), which would disturb concurrent tests.

use std::time::Duration;
use weir_connectors::testing::{redis_url, unique_name};
use weir_connectors::{
    RedisStreamReader, RedisStreamReaderConfig, RedisStreamWriter, RedisStreamWriterConfig,
};
use weir_types::{Record, Value};

/// Runs `op` until it succeeds (at most 20 tries); every failure must be retryable.
macro_rules! until_ok {
    ($op:expr) => {{
        let mut tries = 0;
        loop {
            match $op {
                Ok(v) => break v,
                Err(e) => {
                    assert!(e.is_retryable(), "not retryable: {e}");
                    tries += 1;
                    assert!(tries < 20, "still failing: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }};
}

#[tokio::test]
async fn reader_and_writer_reconnect_after_the_server_drops_them() {
    let Some(url) = redis_url().await else { return };
    let stream = unique_name("weir_reconnect");
    let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, &stream))
        .await
        .unwrap();
    let mut config = RedisStreamReaderConfig::new(&url, &stream, "g", "c");
    config.block = Duration::from_millis(100);
    let mut reader = RedisStreamReader::connect(config).await.unwrap();
    let record = Record::from_pairs([("n", Value::Int(1))]);
    writer
        .write_idempotent(1, 0, std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(reader.read_batch().await.unwrap().len(), 1);

    let admin = redis::Client::open(url.as_str()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 3, "killed {killed} connections");

    let w = until_ok!(
        writer
            .write_idempotent(1, 1, std::slice::from_ref(&record))
            .await
    );
    // An attempt whose answer was lost may have written it already: then it is skipped.
    assert_eq!(w.written + w.skipped, 1);
    let batch = until_ok!(reader.read_batch().await);
    assert_eq!(batch.len(), 1);
    let acked = until_ok!(reader.ack(&batch.ids()).await);
    assert_eq!(acked, 1);
}
