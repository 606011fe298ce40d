//! Prints the ClickHouse DDL of a schema file for a server version, and optionally the
//! JSONEachRow lines of records given as JSON lines on stdin (validated, PII applied).
//!
//! `cargo run -p weir-connectors --example clickhouse_ddl -- schema.yaml 18.16.1 [TABLE] [--rows < records.jsonl]`

use std::io::BufRead;
use weir_connectors::{ClickHouseFeatures, clickhouse_ddl, write_clickhouse_row};
use weir_schema::Schema;
use weir_types::RecordDecoder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(version)) = (args.first(), args.get(1)) else {
        return Err("usage: clickhouse_ddl SCHEMA_FILE CLICKHOUSE_VERSION [TABLE] [--rows]".into());
    };
    let schema = Schema::from_file(path)?;
    let features = ClickHouseFeatures::from_version(version)
        .ok_or_else(|| format!("`{version}` is not a ClickHouse version"))?;
    let table = args
        .get(2)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| schema.name().replace('.', "_"));
    if !args.iter().any(|a| a == "--rows") {
        print!("{}", clickhouse_ddl(&schema, &table, &features));
        return Ok(());
    }
    let mut decoder = RecordDecoder::default();
    let mut out = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let mut record = schema.validate(decoder.decode(&line?)?)?;
        schema.apply_privacy(&mut record);
        write_clickhouse_row(&schema, &record, &features, "batch-1", &mut out);
    }
    print!("{}", String::from_utf8_lossy(&out));
    Ok(())
}
