//! ClickHouse DDL text for an old (18.16) and a new (24.x) server, and JSONEachRow rows.

use weir_connectors::{
    ClickHouseFeatures, clickhouse_ddl, clickhouse_migration, clickhouse_row_json,
    write_clickhouse_row,
};
use weir_schema::Schema;
use weir_types::{Record, Value};

/// The example of the brief.
const LOGIN: &str = r#"name: user.activity.login
version: 2
description: User logins
compatibility: backward
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true, indexed: true }
  - { name: ip, type: string, sensitive: mask }
  - { name: email, type: string, sensitive: hash }
  - { name: attempts, type: int, default: 1 }
  - { name: score, type: float }
  - { name: ok, type: bool, required: true }
  - { name: meta, type: json }
partition_by: "toYYYYMM(ts)"
ttl: 90d
time_field: ts
"#;

fn login() -> Schema {
    Schema::from_yaml(LOGIN, "login.yaml").unwrap()
}

fn features(version: &str) -> ClickHouseFeatures {
    ClickHouseFeatures::from_version(version).unwrap()
}

#[test]
fn ddl_for_clickhouse_18_16_has_no_ttl_and_no_datetime64() {
    assert_eq!(
        clickhouse_ddl(&login(), "analytics.logins", &features("18.16.1")),
        "CREATE TABLE IF NOT EXISTS `analytics`.`logins`
(
    `user_id` String,
    `ts` DateTime('UTC'),
    `ip` Nullable(String),
    `email` Nullable(String),
    `attempts` Int64 DEFAULT 1,
    `score` Nullable(Float64),
    `ok` UInt8,
    `meta` Nullable(String),
    `_weir_batch` String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (`user_id`, `ts`)
-- ttl 90d left out: ClickHouse 18.16 has no TTL (19.6 and later do)
"
    );
}

#[test]
fn ddl_for_clickhouse_24_has_ttl_and_datetime64() {
    assert_eq!(
        clickhouse_ddl(&login(), "logins", &features("24.8.4.13")),
        "CREATE TABLE IF NOT EXISTS `logins`
(
    `user_id` String,
    `ts` DateTime64(3, 'UTC'),
    `ip` Nullable(String),
    `email` Nullable(String),
    `attempts` Int64 DEFAULT 1,
    `score` Nullable(Float64),
    `ok` UInt8,
    `meta` Nullable(String),
    `_weir_batch` String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (`user_id`, `ts`)
TTL toDateTime(`ts`) + INTERVAL 90 DAY
"
    );
}

#[test]
fn ddl_between_19_6_and_20_1_has_ttl_but_plain_datetime() {
    let ddl = clickhouse_ddl(&login(), "t", &features("19.17.4"));
    assert!(ddl.contains("`ts` DateTime('UTC'),"), "{ddl}");
    assert!(
        ddl.contains("TTL toDateTime(`ts`) + INTERVAL 90 DAY"),
        "{ddl}"
    );
}

#[test]
fn ddl_defaults_dropped_fields_and_derived_clauses() {
    let schema = Schema::from_yaml(
        r#"name: t.d
fields:
  - { name: ts, type: datetime, default: "2024-01-01 00:00:00" }
  - { name: note, type: string, default: "it's" }
  - { name: flag, type: bool, default: true }
  - { name: ratio, type: float, default: 0.5 }
  - { name: tags, type: json, default: ["a"] }
  - { name: code, type: string, default: "ABCDEFG", sensitive: mask }
  - { name: uid, type: int, sensitive: hash }
  - { name: secret, type: string, sensitive: drop }
time_field: ts
ttl: 2w
"#,
        "d.yaml",
    )
    .unwrap();
    let old = clickhouse_ddl(&schema, "t", &features("18.16.1"));
    assert_eq!(
        old,
        "CREATE TABLE IF NOT EXISTS `t`
(
    `ts` DateTime('UTC') DEFAULT toDateTime('2024-01-01 00:00:00', 'UTC'),
    `note` String DEFAULT 'it\\'s',
    `flag` UInt8 DEFAULT 1,
    `ratio` Float64 DEFAULT 0.5,
    `tags` String DEFAULT '[\"a\"]',
    `code` String DEFAULT '***DEFG',
    `uid` Nullable(String),
    `_weir_batch` String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(`ts`)
ORDER BY tuple()
-- ttl 2w left out: ClickHouse 18.16 has no TTL (19.6 and later do)
"
    );
    let new = clickhouse_ddl(&schema, "t", &features("25.3"));
    assert!(
        new.contains(
            "`ts` DateTime64(3, 'UTC') DEFAULT toDateTime64('2024-01-01 00:00:00.000', 3, 'UTC'),"
        ),
        "{new}"
    );
    assert!(
        new.contains("TTL toDateTime(`ts`) + INTERVAL 2 WEEK\n"),
        "{new}"
    );
    assert!(!new.contains("secret"));
}

#[test]
fn rows_render_as_json_each_row_for_18_16() {
    let schema = login();
    let mut record = schema
        .validate(Record::from_json_str(
            r#"{"user_id":"u1","ts":"2024-05-01T12:00:00.250Z","ip":"192.168.1.10","ok":1,"meta":{"ua":"x\"y"},"extra":5}"#,
        ).unwrap())
        .unwrap();
    schema.apply_privacy(&mut record);
    assert_eq!(
        clickhouse_row_json(&schema, &record),
        r#"{"user_id":"u1","ts":"2024-05-01 12:00:00","ip":"********1.10","email":null,"attempts":1,"score":null,"ok":1,"meta":"{\"ua\":\"x\\\"y\"}"}"#
    );
    let mut out = Vec::new();
    write_clickhouse_row(&schema, &record, &features("24.3"), "ckpt-7", &mut out);
    write_clickhouse_row(&schema, &record, &features("18.16.1"), "ckpt-7", &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains(r#""ts":"2024-05-01 12:00:00.250""#),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(r#","_weir_batch":"ckpt-7"}"#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r#""ts":"2024-05-01 12:00:00""#),
        "{}",
        lines[1]
    );
    for line in lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(parsed["meta"], serde_json::json!(r#"{"ua":"x\"y"}"#));
        assert!(
            parsed.get("extra").is_none(),
            "unknown fields are not columns"
        );
    }
}

#[test]
fn rows_omit_absent_non_nullable_columns_so_the_default_applies() {
    let schema = login();
    let record = Record::from_pairs([("user_id", Value::from("u1")), ("ok", Value::Bool(false))]);
    assert_eq!(
        clickhouse_row_json(&schema, &record),
        r#"{"user_id":"u1","ip":null,"email":null,"score":null,"ok":0,"meta":null}"#
    );
}

#[test]
fn migrations_add_and_modify_columns_and_flag_key_changes() {
    let v1 = Schema::from_yaml(
        "name: t.m
fields:
  - { name: id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true }
  - { name: n, type: int }
  - { name: uid, type: int }
  - { name: gone, type: string }
time_field: ts
ttl: 30d
",
        "v1.yaml",
    )
    .unwrap();
    let v2 = Schema::from_yaml(
        "name: t.m
fields:
  - { name: id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true, indexed: true }
  - { name: n, type: float, default: 0 }
  - { name: uid, type: int, sensitive: hash }
  - { name: note, type: string }
time_field: ts
ttl: 60d
",
        "v2.yaml",
    )
    .unwrap();
    assert_eq!(
        clickhouse_migration(&v2, &v1, "db.t", &features("18.16.1")).unwrap(),
        "ALTER TABLE `db`.`t`
    MODIFY COLUMN `n` Float64 DEFAULT 0.0,
    MODIFY COLUMN `uid` Nullable(String),
    ADD COLUMN `note` Nullable(String)
-- ORDER BY changed from (`id`) to (`id`, `ts`): ClickHouse cannot alter it in place; create a new table to apply it
"
    );
    let modern = clickhouse_migration(&v2, &v1, "t", &features("24.3")).unwrap();
    assert!(
        modern.contains("    MODIFY TTL toDateTime(`ts`) + INTERVAL 60 DAY\n"),
        "{modern}"
    );
    assert_eq!(clickhouse_migration(&v2, &v2, "t", &features("24.3")), None);
}
