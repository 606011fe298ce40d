//! `weir validate --connect` against the real services of `scripts/services.sh` and a closed
//! port: every source and sink is checked, and a failed check exits 1 naming the connector
//! and the reason.

mod common;
use common::weir;

use std::path::Path;
use std::process::Output;
use weir_connectors::{block_on, testing};

fn validate_connect(dir: &Path, yaml: &str) -> Output {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    weir()
        .args(["validate", "p.yaml", "--connect"])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn validate_connect_reaches_redis_clickhouse_and_files() {
    let redis = block_on(testing::redis_url()).expect("Redis (scripts/services.sh start)");
    let clickhouse =
        block_on(testing::clickhouse_url()).expect("ClickHouse (scripts/services.sh start)");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: c\nsource: {{ type: redis_stream, url: \"{redis}\", stream: weir-connect-check, group: g }}\nsinks:\n  - {{ type: clickhouse, url: \"{clickhouse}\", table: weir_connect_check }}\n  - {{ type: file, path: out/deeper/out.jsonl }}\n  - {{ type: stdout }}\ndead_letter: {{ type: redis_stream, url: \"{redis}\", stream: weir-connect-check-dead }}\n"
    );
    let out = validate_connect(dir.path(), &yaml);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok: source (redis_stream): reachable",
        "ok: sinks[0] (clickhouse): reachable",
        "ok: sinks[1] (file): reachable",
        "ok: sinks[2] (stdout): nothing to connect to",
        "ok: dead_letter (redis_stream): reachable",
    ] {
        assert!(stdout.contains(line), "`{line}` missing:\n{stdout}");
    }
    // Nothing was created by the check.
    assert!(!dir.path().join("out").exists());
}

#[test]
fn validate_connect_fails_naming_each_unreachable_connector() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let (a, b, c) = (closed_port(), closed_port(), closed_port());
    let yaml = format!(
        "name: c\nsource: {{ type: redis_stream, url: \"redis://127.0.0.1:{a}\", stream: s, group: g }}\nsinks:\n  - {{ type: clickhouse, url: \"http://127.0.0.1:{b}\", table: t }}\n  - {{ type: http, url: \"http://127.0.0.1:{c}/hook\" }}\n  - {{ type: file, path: blocker/out.jsonl }}\n"
    );
    let out = validate_connect(dir.path(), &yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        format!("error: source (redis_stream): cannot connect to Redis at redis://127.0.0.1:{a}"),
        format!("error: sinks[0] (clickhouse): cannot reach ClickHouse at http://127.0.0.1:{b}"),
        format!("error: sinks[1] (http): cannot connect to HTTP at http://127.0.0.1:{c}/hook"),
        "error: sinks[2] (file): ".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "`{expected}` missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("is not a directory"), "{stderr}");

    // Without --connect, the same file validates: nothing is contacted.
    let out = weir()
        .args(["validate", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
