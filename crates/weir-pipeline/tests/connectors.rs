//! The connectors' typed options read from YAML: every error keeps the file, the line and
//! the key (the typed struct of each connector is read from the same map as its `type`), and
//! names the options the type accepts; the docs list every option of every connector.

use weir_connectors::config::{Kinds, SinkConfig, SinkKind, SourceConfig, SourceKind};
use weir_pipeline::{Pipeline, PipelineError};

fn parse_err(yaml: &str) -> PipelineError {
    match Pipeline::parse(yaml, "p.yaml") {
        Ok(_) => panic!("parsed:\n{yaml}"),
        Err(e) => e,
    }
}

#[test]
fn an_unknown_key_of_a_redis_stream_source_names_its_line_and_the_options() {
    let yaml = "\
name: t
source:
  type: redis_stream
  url: redis://127.0.0.1:6390
  stream: s
  group: g
  batch: 100
sink: { type: stdout }
";
    let e = parse_err(yaml);
    assert_eq!(e.file, "p.yaml");
    assert_eq!(e.line, Some(7), "{e}");
    assert_eq!(e.key.as_deref(), Some("source.batch"), "{e}");
    assert_eq!(
        e.message,
        "`batch` is not an option of a redis_stream source; its options are: url, stream, group, consumer, read_count, claim_idle, stop_after_idle, ca_file, event_time"
    );
    assert!(
        e.to_string()
            .starts_with("p.yaml:7: source.batch: `batch` is not an option"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_in_a_clickhouse_sink_option_names_its_line_and_key() {
    let yaml = "\
name: t
source: { type: stdin }
sink:
  type: clickhouse
  url: http://127.0.0.1:8124
  table: t
  batch_rows: many
";
    let e = parse_err(yaml);
    assert_eq!(e.line, Some(7), "{e}");
    assert_eq!(e.key.as_deref(), Some("sink.batch_rows"), "{e}");
    assert!(e.message.contains("invalid type: string \"many\""), "{e}");
    // A duration option without a unit, refused while parsing with its line.
    let e = parse_err(&yaml.replace("batch_rows: many", "flush_interval: 5"));
    assert_eq!(e.line, Some(7), "{e}");
    assert_eq!(e.key.as_deref(), Some("sink.flush_interval"), "{e}");
    assert!(
        e.message.contains("found the number 5 (give a unit)"),
        "{e}"
    );
}

#[test]
fn an_option_of_another_type_names_its_line_and_the_options_of_this_type() {
    let yaml = "\
name: t
source:
  type: file
  path: in.jsonl
  count: 10
sink: { type: stdout }
";
    let e = parse_err(yaml);
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.key.as_deref(), Some("source.count"), "{e}");
    assert_eq!(
        e.message,
        "`count` is not an option of a file source; its options are: path, follow, format, infer_types, stop_after_idle, event_time"
    );
    // In a flow map, on a named source, and in a sink that takes no options.
    let e = parse_err(
        "name: t\nsources:\n  a: { type: stdin, path: x }\nsteps:\n  - { input: a, filter: \"true\" }\nsink: { type: stdout }\n",
    );
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.key.as_deref(), Some("sources.a.path"), "{e}");
    assert!(
        e.message
            .contains("its options are: format, infer_types, event_time"),
        "{e}"
    );
    let e = parse_err("name: t\nsource: { type: stdin }\nsink:\n  type: discard\n  path: x\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.key.as_deref(), Some("sink.path"), "{e}");
    assert_eq!(
        e.message,
        "`path` is not an option of a discard sink; its options are: input"
    );
}

#[test]
fn options_before_the_type_are_read_once_the_type_is_known() {
    // The common `input` and a typed option both before `type`: valid.
    let yaml = "name: t\nsource: { type: stdin }\nsink:\n  input: source\n  path: out.jsonl\n  type: file\n";
    let p = Pipeline::parse(yaml, "p.yaml").unwrap();
    let sink = p.spec.sink.as_ref().unwrap();
    assert_eq!(sink.input.as_deref(), Some("source"));
    match &sink.config {
        SinkConfig::File(file) => assert_eq!(file.path.to_str(), Some("out.jsonl")),
        other => panic!("{other:?}"),
    }
    // An option of another type before `type`: still its key and line.
    let e = parse_err(
        "name: t\nsource:\n  count: 3\n  path: in.jsonl\n  type: file\nsink: { type: stdout }\n",
    );
    assert_eq!(e.key.as_deref(), Some("source.count"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("not an option of a file source"), "{e}");
    // A bad value before `type`: its key and line.
    let e = parse_err(
        "name: t\nsource:\n  follow: often\n  path: in.jsonl\n  type: file\nsink: { type: stdout }\n",
    );
    assert_eq!(e.key.as_deref(), Some("source.follow"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn a_missing_type_a_bad_type_and_a_missing_option_are_named() {
    let e = parse_err("name: t\nsource:\n  path: in.jsonl\nsink: { type: stdout }\n");
    assert_eq!(e.key.as_deref(), Some("source"), "{e}");
    assert!(
        e.message
            .starts_with("a source needs a `type`: one of file, stdin, generator, redis_stream"),
        "{e}"
    );
    let e = parse_err("name: t\nsource: { type: stdin }\nsink:\n  type: kafka\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert_eq!(
        e.message,
        "unknown sink type `kafka`; the types are: stdout, file, discard, clickhouse, redis_stream, http"
    );
    let e = parse_err(
        "name: t\nsource:\n  type: redis_stream\n  url: redis://127.0.0.1:6390\n  group: g\nsink: { type: stdout }\n",
    );
    assert_eq!(e.key.as_deref(), Some("source"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.message, "a redis_stream source needs `stream`");
    // `type` twice: the line of the second; a common option twice: both lines.
    let e = parse_err("name: t\nsource:\n  type: stdin\n  type: file\nsink: { type: stdout }\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("`type` is given twice"), "{e}");
    let e = parse_err(
        "name: t\nsource: { type: stdin }\nsink:\n  type: stdout\n  input: source\n  input: source\n",
    );
    assert!(
        e.message.contains("duplicate key `input`: lines 5 and 6"),
        "{e}"
    );
}

/// The table rows of a `## ` section of docs/pipeline-format.md, by their first cell.
fn doc_rows(section: &str) -> Vec<(String, String)> {
    let doc = include_str!("../../../docs/pipeline-format.md");
    let start = doc
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("no section {section}"));
    let body = &doc[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    body[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(kind, rest)| (kind.to_string(), rest.to_string()))
        .collect()
}

#[test]
fn the_docs_list_every_connector_and_every_option() {
    let sources = doc_rows("Sources");
    for &kind in SourceKind::ALL {
        let (_, row) = sources
            .iter()
            .find(|(k, _)| k == kind.name())
            .unwrap_or_else(|| panic!("docs: no row for the {} source", kind.name()));
        for option in SourceConfig::options_of(kind) {
            assert!(
                row.contains(&format!("`{option}`")),
                "docs: the {} source's row does not name `{option}`",
                kind.name()
            );
        }
    }
    let sinks = doc_rows("Sinks");
    for &kind in SinkKind::ALL {
        let (_, row) = sinks
            .iter()
            .find(|(k, _)| k == kind.name())
            .unwrap_or_else(|| panic!("docs: no row for the {} sink", kind.name()));
        for option in SinkConfig::options_of(kind) {
            assert!(
                row.contains(&format!("`{option}`")),
                "docs: the {} sink's row does not name `{option}`",
                kind.name()
            );
        }
    }
    assert_eq!(
        SourceConfig::options_of(SourceKind::Generator),
        ["count", "rate", "fields"]
    );
}
