//! Redis Streams → validate → mask → ClickHouse through `weir run`, against the real services
//! of `scripts/services.sh`: the StreamHouse example, and exactly-once under SIGKILL.

mod common;
use common::{int, pageview, redis_del, repo, weir, xadd};

use std::process::Stdio;
use std::time::Duration;
use weir_connectors::{ClickHouseClient, ClickHouseConfig, block_on, testing};
use weir_types::{Record, Value};

/// A fresh stream of `n` page views, every 100th invalid.
fn produce(redis: &str, stream: &str, n: u64) {
    redis_del(redis, stream);
    xadd(redis, stream, (0..n).map(|i| pageview(i, true)));
}

fn pending(redis: &str, stream: &str, group: &str) -> i64 {
    block_on(async {
        let client = redis::Client::open(redis).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let reply: redis::Value = match redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(&mut conn)
            .await
        {
            Ok(reply) => reply,
            // The group does not exist yet: nothing is pending.
            Err(e) if e.code() == Some("NOGROUP") => return 0,
            Err(e) => panic!("XPENDING: {e}"),
        };
        match reply {
            redis::Value::Array(parts) => match parts.first() {
                Some(redis::Value::Int(n)) => *n,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    })
}

fn query(clickhouse: &str, sql: &str) -> Record {
    let client = ClickHouseClient::new(ClickHouseConfig::new(clickhouse)).unwrap();
    block_on(client.query_json(sql)).unwrap().remove(0)
}

#[test]
fn the_streamhouse_example_runs() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let _ = std::fs::remove_dir_all(repo().join("target/examples/checkpoints/streamhouse"));
    let client = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)).unwrap();
    block_on(client.execute("DROP TABLE IF EXISTS streamhouse_page_minutes")).unwrap();
    const N: u64 = 3_000;
    produce(&redis, "streamhouse:pageviews", N);
    let out = weir()
        // `stop_after_idle` stops (open windows stay in the checkpoint); `--drain` fires them.
        .args([
            "run",
            "examples/streamhouse.yaml",
            "--progress",
            "never",
            "--drain",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals = query(
        &clickhouse,
        "SELECT sum(views) AS v, count() AS windows FROM streamhouse_page_minutes",
    );
    let invalid = (0..N).filter(|i| i % 100 == 42).count() as i64;
    assert_eq!(int(&totals, "v"), N as i64 - invalid);
    assert_eq!(int(&totals, "windows"), 9 * 50, "9 pages x 50 minutes");
    let dead =
        std::fs::read_to_string(repo().join("target/examples/streamhouse-dead-letters.jsonl"))
            .unwrap();
    assert_eq!(dead.lines().count() as i64, invalid);
    assert!(!dead.contains("@example.com"), "PII in the dead letters");
    assert_eq!(pending(&redis, "streamhouse:pageviews", "streamhouse"), 0);
}

#[test]
fn ingest_is_exactly_once_when_killed_at_random_moments() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let Some(clickhouse) = block_on(testing::clickhouse_url()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let registry = repo().join("examples/schemas");
    let stream = testing::unique_name("crash_pageviews");
    let table = testing::unique_name("crash_pageviews");
    const N: u64 = 100_000;
    produce(&redis, &stream, N);
    // `id` is not in the schema: `unknown_fields: keep` (the default) passes it through, and
    // the ClickHouse table is created from a schema that has it.
    std::fs::write(
        dir.path().join("row.yaml"),
        "name: crash.row\nfields:\n  - { name: id, type: int, required: true, indexed: true }\n  - { name: user_id, type: string, required: true }\n  - { name: ms, type: int, required: true }\n  - { name: email, type: string }\nunknown_fields: drop\n",
    )
    .unwrap();
    let local_registry = dir.path().join("schemas");
    for schema in ["analytics.pageview", "analytics.page_minute"] {
        let target = local_registry.join(schema);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(
            registry.join(schema).join("v1.yaml"),
            target.join("v1.yaml"),
        )
        .unwrap();
    }
    let reg = weir_schema::Registry::open(&local_registry).unwrap();
    reg.register_file(dir.path().join("row.yaml")).unwrap();
    let yaml = format!(
        "name: crash_ingest
schemas: schemas
settings:
  checkpoint: {{ interval: 50ms, keep: 2 }}
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: loaders
  read_count: 500
  stop_after_idle: 1s
steps:
  - validate: analytics.pageview
  - mask: analytics.pageview
sink:
  type: clickhouse
  url: {clickhouse}
  table: {table}
  schema: crash.row
dead_letter:
  type: file
  path: dead.jsonl
"
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let spawn = || {
        weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    let mut delays = [350u64, 500, 260, 700, 420, 610].into_iter().cycle();
    while kills < 6 {
        let mut child = spawn();
        std::thread::sleep(Duration::from_millis(delays.next().unwrap_or(400)));
        if child.try_wait().unwrap().is_some() {
            break; // it finished: nothing left to kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    let out = spawn().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );

    let invalid = (0..N).filter(|i| i % 100 == 42).count() as i64;
    let valid = N as i64 - invalid;
    let got = query(
        &clickhouse,
        &format!(
            "SELECT count() AS n, uniqExact(id) AS ids, sum(id) AS id_sum, sum(ms) AS ms FROM {table}"
        ),
    );
    let expected_ids: i64 = (0..N as i64).filter(|i| i % 100 != 42).sum();
    let expected_ms: i64 = (0..N)
        .filter(|i| i % 100 != 42)
        .map(|i| (i % 900) as i64)
        .sum();
    assert_eq!(int(&got, "n"), valid, "rows (duplicates or losses)");
    assert_eq!(int(&got, "ids"), valid, "distinct ids");
    assert_eq!(int(&got, "id_sum"), expected_ids, "checksum of ids");
    assert_eq!(int(&got, "ms"), expected_ms, "checksum of values");
    let email = query(&clickhouse, &format!("SELECT any(email) AS e FROM {table}"));
    assert!(
        !email
            .get("e")
            .and_then(Value::as_str)
            .unwrap()
            .contains('@')
    );
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        dead.len() as i64,
        invalid,
        "every invalid event once in the dead letters"
    );
    assert!(
        dead.iter()
            .all(|d| d["error"].as_str().unwrap().contains("ms"))
    );
    let mut dead_ids: Vec<i64> = dead
        .iter()
        .map(|d| d["record"]["id"].as_i64().unwrap())
        .collect();
    dead_ids.sort_unstable();
    dead_ids.dedup();
    assert_eq!(dead_ids.len() as i64, invalid);
    assert_eq!(
        pending(&redis, &stream, "loaders"),
        0,
        "nothing left pending"
    );
    let client = ClickHouseClient::new(ClickHouseConfig::new(&clickhouse)).unwrap();
    let _ = block_on(client.execute(&format!("DROP TABLE IF EXISTS {table}")));
}

#[test]
fn entries_left_pending_by_a_killed_consumer_are_claimed_by_another() {
    let Some(redis) = block_on(testing::redis_url()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stream = testing::unique_name("claims");
    const N: u64 = 20_000;
    produce(&redis, &stream, N);
    let pipeline = |name: &str, consumer: &str| {
        format!(
            "name: {name}
settings:
  checkpoint: {{ interval: 2s, dir: cp-{name} }}  # none before the kill
source:
  type: redis_stream
  url: {redis}
  stream: {stream}
  group: workers
  consumer: {consumer}
  read_count: 100
  claim_idle: 3s
  stop_after_idle: 5s         # outlives claim_idle: alpha's entries become claimable first
sink: {{ type: file, path: out-{name}.jsonl }}
"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), pipeline("a", "alpha")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), pipeline("b", "beta")).unwrap();
    // Consumer alpha reads entries and dies before acknowledging any.
    let mut alpha = weir()
        .args(["run", "a.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while pending(&redis, &stream, "workers") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "alpha never read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    alpha.kill().unwrap();
    alpha.wait().unwrap();
    let held = pending(&redis, &stream, "workers");
    assert!(held > 0);
    // Consumer beta reads the rest and, after claim_idle, takes over alpha's entries.
    let out = weir()
        .args(["run", "b.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(dir.path().join("out-b.jsonl")).unwrap();
    let mut ids: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        N,
        "beta processed every entry, alpha's included"
    );
    assert_eq!(pending(&redis, &stream, "workers"), 0);
}
