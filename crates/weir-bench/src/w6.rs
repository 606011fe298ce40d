//! W6 — ingest: W1-shaped events written to a Redis stream, read by a consumer group,
//! validated against a schema, and written in batches to ClickHouse, exactly once.
//!
//! The engine run is a YAML pipeline (the path a user takes) with durable checkpoints in a
//! directory, planned exactly as `weir run` plans `settings.checkpoint`; the baseline
//! is the same I/O as a plain loop (read a batch, validate, insert, acknowledge). Both report
//! what ClickHouse holds afterwards: `results` rows and a checksum over them; `duplicates`
//! and `lost` compare the table with the events written. `seconds` runs from the first read
//! to the last insert; the idle wait that ends a bounded run is not counted.

use crate::digest::Digest;
use crate::workloads::event;
use crate::{BenchError, BenchOptions, BenchReport};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_connectors::{
    BatchId, ClickHouseClient, ClickHouseConfig, CommitMode, ExactlyOnceInserter,
    RedisStreamReader, RedisStreamReaderConfig, RedisStreamWriter, RedisStreamWriterConfig,
    block_on,
};
use weir_core::Environment;
use weir_types::{Record, Shape, Value};

const SCHEMA: &str = "name: bench.event
fields:
  - { name: id, type: int, required: true, indexed: true }
  - { name: key, type: int, required: true }
  - { name: value, type: int, required: true }
  - { name: ts_ms, type: int, required: true }
";

/// How long the source waits for more entries before it ends the bounded run.
const IDLE_END: Duration = Duration::from_millis(300);

fn fail(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

fn records(n: u64) -> impl Iterator<Item = Record> {
    let shape = Arc::new(Shape::new(["id", "key", "value", "ts_ms"]));
    (0..n).map(move |id| {
        let e = event(id);
        let values = vec![
            Value::Int(e.id as i64),
            Value::Int(e.key as i64),
            Value::Int(e.value),
            Value::Int(e.ts_ms),
        ];
        // The shape has four names and there are four values.
        Record::with_shape(shape.clone(), values).unwrap_or_default()
    })
}

/// Writes the events into the stream; returns events per second.
fn load_stream(url: &str, stream: &str, n: u64) -> Result<f64, BenchError> {
    block_on(async {
        let mut writer = RedisStreamWriter::connect(RedisStreamWriterConfig::new(url, stream))
            .await
            .map_err(|e| fail("connecting to Redis", e))?;
        let started = Instant::now();
        let mut chunk = Vec::with_capacity(10_000);
        for r in records(n) {
            chunk.push(r);
            if chunk.len() == chunk.capacity() {
                writer.write(&chunk).await.map_err(|e| fail("XADD", e))?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            writer.write(&chunk).await.map_err(|e| fail("XADD", e))?;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    })
}

struct TableCheck {
    rows: u64,
    distinct: u64,
    digest: Digest,
}

fn check_table(client: &ClickHouseClient, table: &str) -> Result<TableCheck, BenchError> {
    let rows = block_on(client.query_json(&format!(
        "SELECT count() AS n, uniqExact(id) AS ids, sum(id) AS id_sum, sum(value) AS value_sum, \
         sum(key * value) AS kv FROM {table}"
    )))
    .map_err(|e| fail("checking ClickHouse", e))?;
    let get = |name: &str| -> u64 {
        rows.first()
            .and_then(|r| r.get(name))
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0) as u64
    };
    let mut digest = Digest::default();
    digest.add(&[get("n"), get("id_sum"), get("value_sum"), get("kv")]);
    Ok(TableCheck {
        rows: get("n"),
        distinct: get("ids"),
        digest,
    })
}

pub fn w6(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let n = o.events.unwrap_or(1_000_000);
    let run = format!(
        "w6_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let stream = format!("{run}_events");
    let table = format!("{run}_events");
    let dir = tempfile::tempdir().map_err(|e| fail("temp dir", e))?;
    let registry =
        weir_schema::Registry::open(dir.path().join("schemas")).map_err(|e| fail("registry", e))?;
    std::fs::write(dir.path().join("event.yaml"), SCHEMA).map_err(|e| fail("schema", e))?;
    registry
        .register_file(dir.path().join("event.yaml"))
        .map_err(|e| fail("schema", e))?;

    let write_rate = load_stream(&o.redis_url, &stream, n)?;
    let client = ClickHouseClient::new(ClickHouseConfig::new(&o.clickhouse_url))
        .map_err(|e| fail("ClickHouse", e))?;

    let (elapsed, checkpoints) = if o.baseline {
        (baseline(o, &stream, &table, &registry, &client)?, None)
    } else {
        let (elapsed, checkpoints) = engine(o, dir.path(), &stream, &table)?;
        (elapsed, Some(checkpoints))
    };
    let check = check_table(&client, &table)?;
    let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {table}")));
    let _ = block_on(async {
        let c = redis::Client::open(o.redis_url.as_str())?;
        let mut conn = c.get_multiplexed_async_connection().await?;
        redis::cmd("DEL")
            .arg(&stream)
            .query_async::<i64>(&mut conn)
            .await
    });

    let mut report = BenchReport::new("w6", o, n, elapsed, check.rows, check.digest.hex());
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let extra = &mut report.extra;
    extra.insert("redis_write_per_sec".into(), write_rate.into());
    extra.insert("redis_read_per_sec".into(), (n as f64 / seconds).into());
    extra.insert("clickhouse_rows".into(), check.rows.into());
    extra.insert("duplicates".into(), (check.rows - check.distinct).into());
    extra.insert("lost".into(), n.saturating_sub(check.distinct).into());
    if let Some(checkpoints) = checkpoints {
        extra.insert("checkpoints".into(), checkpoints.into());
    }
    Ok(report)
}

fn engine(
    o: &BenchOptions,
    dir: &std::path::Path,
    stream: &str,
    table: &str,
) -> Result<(Duration, usize), BenchError> {
    let yaml = format!(
        "name: w6
schemas: {schemas}
settings:
  checkpoint: {{ dir: {checkpoints}, interval: 1s }}
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: w6
  read_count: 5000
  stop_after_idle: {idle}ms
steps:
  - validate: bench.event
sink:
  type: clickhouse
  url: {clickhouse}
  table: {table}
  schema: bench.event
  batch_rows: 200000
",
        schemas = dir.join("schemas").display(),
        checkpoints = dir.join("checkpoints").display(),
        redis = o.redis_url,
        clickhouse = o.clickhouse_url,
        idle = IDLE_END.as_millis(),
    );
    let pipeline =
        weir_pipeline::Pipeline::parse(&yaml, "w6.yaml").map_err(|e| fail("pipeline", e))?;
    let mut config = pipeline.config();
    config.parallelism = o.parallelism;
    config.batch_size = 5000;
    let plan = pipeline
        .checkpoint_plan(&weir_pipeline::Resume::default())
        .map_err(|e| fail("checkpoints", e))?
        .ok_or_else(|| fail("checkpoints", "the pipeline has no `settings.checkpoint`"))?;
    config.checkpointing = Some(plan.checkpointing);
    let checkpoint_dir = plan.dir;
    let env = Environment::with_config(config);
    pipeline.build(&env).map_err(|e| fail("pipeline", e))?;
    let started = Instant::now();
    env.execute()?;
    let elapsed = started.elapsed().saturating_sub(IDLE_END);
    // The durable checkpoints the run left, as `weir checkpoints list` sees them.
    let completed = weir_checkpoint::CheckpointStore::open(&checkpoint_dir, usize::MAX)
        .and_then(|store| store.list())
        .map_err(|e| fail("checkpoints", e))?
        .checkpoints
        .len();
    Ok((elapsed, completed))
}

fn baseline(
    o: &BenchOptions,
    stream: &str,
    table: &str,
    registry: &weir_schema::Registry,
    client: &ClickHouseClient,
) -> Result<Duration, BenchError> {
    let schema = registry
        .get("bench.event", weir_schema::VersionSpec::Latest)
        .map_err(|e| fail("schema", e))?;
    let features = weir_connectors::ClickHouseFeatures::from_version(
        &block_on(client.version())
            .map_err(|e| fail("ClickHouse", e))?
            .text,
    )
    .ok_or_else(|| fail("ClickHouse", "unsupported version"))?;
    block_on(client.execute(&weir_connectors::clickhouse_ddl(&schema, table, &features)))
        .map_err(|e| fail("DDL", e))?;
    let inserter = ExactlyOnceInserter::new(client.clone(), table);
    block_on(async {
        let mut config = RedisStreamReaderConfig::new(&o.redis_url, stream, "w6", "baseline");
        config.batch_size = 5000;
        config.block = Duration::from_millis(100);
        let mut reader = RedisStreamReader::connect(config)
            .await
            .map_err(|e| fail("connecting to Redis", e))?;
        let mut validator = weir_schema::Validator::new(Arc::new(schema));
        let started = Instant::now();
        let mut last_insert = started;
        let mut seq = 0;
        let mut rows = Vec::new();
        let mut count = 0usize;
        let mut pending_ids = Vec::new();
        loop {
            let batch = reader
                .read_batch()
                .await
                .map_err(|e| fail("XREADGROUP", e))?;
            let done = batch.is_empty();
            pending_ids.extend(batch.ids());
            for entry in batch.entries {
                if let Ok(valid) = validator.validate(entry.record) {
                    let id = BatchId::new("w6", "baseline", 1, seq);
                    weir_connectors::write_clickhouse_row(
                        validator.schema(),
                        &valid,
                        &features,
                        id.as_str(),
                        &mut rows,
                    );
                    count += 1;
                }
            }
            if count >= 200_000 || (done && count > 0) {
                let id = BatchId::new("w6", "baseline", 1, seq);
                let insert = weir_connectors::InsertBatch::from_json_rows(
                    id,
                    std::mem::take(&mut rows),
                    count,
                );
                inserter
                    .commit(std::slice::from_ref(&insert), CommitMode::Normal)
                    .await
                    .map_err(|e| fail("insert", e))?;
                reader
                    .ack(&pending_ids)
                    .await
                    .map_err(|e| fail("XACK", e))?;
                pending_ids.clear();
                count = 0;
                seq += 1;
                last_insert = Instant::now();
            }
            if done {
                break;
            }
        }
        Ok(last_insert - started)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the test services (`scripts/services.sh`): Redis on 6390, ClickHouse on 8124.
    #[test]
    fn w6_delivers_every_event_exactly_once_with_durable_checkpoints() {
        let options = |baseline| BenchOptions {
            events: Some(20_000),
            baseline,
            ..BenchOptions::default()
        };
        let engine = w6(&options(false)).unwrap();
        let baseline = w6(&options(true)).unwrap();
        assert_eq!(engine.results, 20_000);
        assert_eq!(engine.results, baseline.results);
        assert_eq!(engine.checksum, baseline.checksum);
        for report in [&engine, &baseline] {
            assert_eq!(report.extra["duplicates"], 0);
            assert_eq!(report.extra["lost"], 0);
        }
        let checkpoints = engine.extra["checkpoints"].as_u64().unwrap();
        assert!(
            checkpoints >= 1,
            "the engine run left no durable checkpoint"
        );
    }
}
