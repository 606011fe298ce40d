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

/// A redis-server of this test's own, on a free port: these tests kill its clients and shut
/// it down, which must not disturb the shared instance.
struct OwnRedis {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            assert!(
                std::env::var("WEIR_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "redis-server is not installed"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        };
        let url = format!("redis://127.0.0.1:{port}");
        let redis = OwnRedis {
            child,
            url,
            _dir: dir,
        };
        for _ in 0..100 {
            if redis.admin().is_some() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not start");
    }

    fn admin(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection()
            .ok()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn source_config(url: &str, stream: &str) -> weir_connectors::RedisStreamSourceConfig {
    let mut reader = RedisStreamReaderConfig::new(url, stream, "g", "c");
    reader.block = Duration::from_millis(100);
    reader.batch_size = 20;
    weir_connectors::RedisStreamSourceConfig {
        reader,
        claim_every: Duration::from_secs(3600),
        stop_after_idle: Some(Duration::from_secs(2)),
    }
}

fn add_entries(conn: &mut redis::Connection, stream: &str, n: i64) {
    for i in 0..n {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(format!("{{\"n\":{i}}}"))
            .query(conn)
            .unwrap();
    }
}

/// Issue 11, item 6: the reader's connections are killed twice mid-run; the job reconnects,
/// resumes from the group and delivers every entry exactly once.
#[test]
fn source_reconnects_after_its_connections_are_killed_and_loses_nothing() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let mut admin = redis.admin().unwrap();
    add_entries(&mut admin, "events", 2000);
    let env = weir_core::Environment::local();
    let config = source_config(&redis.url, "events");
    let seen = env
        .source("redis", move || {
            weir_connectors::RedisStreamSource::new(config.clone())
        })
        .map(|r| r.ok())
        .map(|r| {
            // Slow enough that the kills land mid-run.
            std::thread::sleep(Duration::from_micros(500));
            r
        })
        .collect();
    let job = env.start().unwrap();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(300));
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut admin)
            .unwrap();
        assert!(killed >= 2, "killed {killed} connections");
    }
    job.wait().expect("the job survives dropped connections");
    let mut numbers: Vec<i64> = seen
        .take()
        .into_iter()
        .map(|r| {
            let record = r.expect("a decodable entry");
            match record.get("n") {
                Some(Value::Int(n)) => *n,
                Some(Value::Str(s)) => s.parse::<i64>().unwrap(),
                other => panic!("unexpected n: {other:?}"),
            }
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..2000).collect::<Vec<_>>(),
        "every entry exactly once"
    );
}

/// Issue 11, item 6: when Redis stays away, the job fails after the reconnect budget, and the
/// error says so.
#[test]
fn source_fails_after_the_reconnect_budget_when_redis_stays_down() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let mut admin = redis.admin().unwrap();
    add_entries(&mut admin, "events", 10);
    let env = weir_core::Environment::local();
    let mut config = source_config(&redis.url, "events");
    config.stop_after_idle = None;
    config.reader.reconnect.attempts = 3;
    config.reader.reconnect.first_delay = Duration::from_millis(50);
    let seen = env
        .source("redis", move || {
            weir_connectors::RedisStreamSource::new(config.clone())
        })
        .collect();
    let job = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _: Result<(), _> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut admin);
    let error = job.wait().expect_err("Redis is gone for good").to_string();
    assert!(
        error.contains("gave up after 3 reconnect attempts"),
        "{error}"
    );
    assert_eq!(seen.take().len(), 10);
}
