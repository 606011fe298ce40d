//! Runs the generated DDL and rows against a real ClickHouse server (18.16 or newer).
//!
//! Against the server of `scripts/services.sh start` (or `WEIR_TEST_CLICKHOUSE_URL`); skipped
//! when none is reachable, unless `WEIR_REQUIRE_SERVICES=1` (as in `scripts/test.sh`).

use std::io::{Read, Write};
use std::net::TcpStream;
use weir_connectors::{
    ClickHouseFeatures, clickhouse_ddl, clickhouse_migration, clickhouse_row_json,
    write_clickhouse_row,
};
use weir_schema::Schema;
use weir_types::RecordDecoder;

const SCHEMA: &str = r#"name: test.clickhouse
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true, indexed: true }
  - { name: ip, type: string, sensitive: mask }
  - { name: email, type: string, sensitive: hash }
  - { name: attempts, type: int, default: 1 }
  - { name: score, type: float }
  - { name: ok, type: bool, required: true }
  - { name: meta, type: json }
  - { name: since, type: datetime, default: "2024-01-01 00:00:00" }
  - { name: note, type: string, default: "it's" }
  - { name: pin, type: string, sensitive: drop }
time_field: ts
ttl: 30d
"#;

/// The test server's URL, or `None` to skip (see `weir_connectors::testing`).
fn server_url() -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(weir_connectors::testing::clickhouse_url())
}

/// POSTs `body` to the server; returns the response body, or the server's error text.
fn post(url: &str, body: &str) -> Result<String, String> {
    let address = url
        .strip_prefix("http://")
        .ok_or("the ClickHouse URL must start with http://")?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    let request = format!(
        "POST / HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_string())
    } else {
        Err(body.to_string())
    }
}

#[test]
fn the_server_accepts_the_ddl_and_the_rows() {
    let Some(url) = server_url() else { return };
    let version = post(&url, "SELECT version()").unwrap();
    let features = ClickHouseFeatures::from_version(version.trim()).unwrap();
    let schema = Schema::from_yaml(SCHEMA, "test.yaml").unwrap();
    let table = format!("weir_schema_test_{}", std::process::id());
    post(&url, &format!("DROP TABLE IF EXISTS {table}")).unwrap();
    let ddl = clickhouse_ddl(&schema, &table, &features);
    post(&url, &ddl).unwrap_or_else(|e| panic!("{version}: {e}\n{ddl}"));

    let mut decoder = RecordDecoder::default();
    let mut insert = format!("INSERT INTO {table} FORMAT JSONEachRow\n").into_bytes();
    for line in [
        r#"{"user_id":"u1","ts":"2024-05-01T12:00:00.250Z","ip":"192.168.1.10","email":"a@b.c","score":1,"ok":1,"meta":{"ua":"x\"y"},"pin":"1234","extra":5}"#,
        r#"{"user_id":"u2","ts":1714564800,"ok":false}"#,
    ] {
        let mut record = schema.validate(decoder.decode(line).unwrap()).unwrap();
        schema.apply_privacy(&mut record);
        write_clickhouse_row(&schema, &record, &features, "batch-1", &mut insert);
    }
    post(&url, &String::from_utf8(insert).unwrap()).unwrap();

    let rows = post(
        &url,
        &format!(
            "SELECT user_id, toUnixTimestamp(ts), ip, length(email), attempts, score, ok, meta, \
             toUnixTimestamp(since), note, _weir_batch FROM {table} ORDER BY user_id FORMAT TSV"
        ),
    )
    .unwrap();
    post(&url, &format!("DROP TABLE {table}")).unwrap();
    // TSV escapes quotes and backslashes: `it\'s` is the stored "it's".
    assert_eq!(
        rows,
        "u1\t1714564800\t********1.10\t64\t1\t1\t1\t{\"ua\":\"x\\\\\"y\"}\t1704067200\tit\\'s\tbatch-1\n\
         u2\t1714564800\t\\N\t\\N\t1\t\\N\t0\t\\N\t1704067200\tit\\'s\tbatch-1\n"
    );
}

#[test]
fn the_server_accepts_the_migration_between_versions() {
    let Some(url) = server_url() else { return };
    let version = post(&url, "SELECT version()").unwrap();
    let features = ClickHouseFeatures::from_version(version.trim()).unwrap();
    let v1 = Schema::from_yaml(
        "name: t.m\nfields:\n  - { name: id, type: string, required: true, indexed: true }\n  - { name: n, type: int }\n",
        "v1.yaml",
    )
    .unwrap();
    let v2 = Schema::from_yaml(
        "name: t.m\nfields:\n  - { name: id, type: string, required: true, indexed: true }\n  - { name: n, type: float }\n  - { name: note, type: string, default: \"-\" }\n",
        "v2.yaml",
    )
    .unwrap();
    let table = format!("weir_schema_migration_{}", std::process::id());
    post(&url, &format!("DROP TABLE IF EXISTS {table}")).unwrap();
    post(&url, &clickhouse_ddl(&v1, &table, &features)).unwrap();
    post(
        &url,
        &format!("INSERT INTO {table} FORMAT JSONEachRow\n{{\"id\":\"a\",\"n\":5}}\n"),
    )
    .unwrap();
    let migration = clickhouse_migration(&v2, &v1, &table, &features).unwrap();
    post(&url, &migration).unwrap_or_else(|e| panic!("{version}: {e}\n{migration}"));
    let row = clickhouse_row_json(
        &v2,
        &v2.validate(weir_types::Record::from_json_str(r#"{"id":"b","n":2.5}"#).unwrap())
            .unwrap(),
    );
    post(
        &url,
        &format!("INSERT INTO {table} FORMAT JSONEachRow\n{row}\n"),
    )
    .unwrap();
    let rows = post(
        &url,
        &format!("SELECT id, n, note FROM {table} ORDER BY id FORMAT TSV"),
    )
    .unwrap();
    post(&url, &format!("DROP TABLE {table}")).unwrap();
    assert_eq!(rows, "a\t5\t-\nb\t2.5\t-\n");
}
