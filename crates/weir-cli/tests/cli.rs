//! The `weir` binary, end to end: examples, exit codes, error messages, benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    weir()
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the weir binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes a pipeline file into a temp dir and runs a command on it.
fn with_pipeline(yaml: &str, command: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let mut args = vec![command, "p.yaml"];
    if command == "run" {
        args.extend(["--progress", "never"]);
    }
    let out = weir().args(args).current_dir(dir.path()).output().unwrap();
    (out, dir)
}

/// Examples that need external services; they are run by the connector tests
/// (`task-step.yaml` needs a `weir serve`: tests/tasks.rs runs it against one).
const NEEDS_SERVICES: &[&str] = &["streamhouse.yaml", "task-step.yaml"];

/// Examples that are not pipelines, with the test that runs each: `agents.yaml` declares the
/// agents of `weir serve --agents` (crates/weir-tasks/tests/command.rs runs its `echo`, and
/// tests/tasks.rs runs it behind `weir serve` over HTTP and `weir task`);
/// `pipeline-agents.yaml` too (tests/tasks.rs serves its pipeline agent and its `echo`).
const NOT_PIPELINES: &[&str] = &["agents.yaml", "pipeline-agents.yaml"];

#[test]
fn every_example_runs() {
    let mut ran = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "yaml")
            || NEEDS_SERVICES.contains(&name.as_str())
            || NOT_PIPELINES.contains(&name.as_str())
        {
            continue;
        }
        let rel = format!("examples/{name}");
        let validated = run(&["validate", &rel]);
        assert!(
            validated.status.success(),
            "validate {rel}: {}",
            text(&validated.stderr)
        );
        let out = run(&["run", &rel, "--progress", "never"]);
        assert!(
            out.status.success(),
            "{rel} failed: {}\n{}",
            text(&out.stderr),
            text(&out.stdout)
        );
        ran += 1;
    }
    assert!(ran >= 2, "expected the examples to be found");
}

#[test]
fn quickstart_counts_every_generated_record() {
    let out = run(&["run", "examples/quickstart.yaml", "--progress", "never"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 14, "7 pages x 2 devices");
    let views: i64 = rows.iter().map(|r| r["views"].as_i64().unwrap()).sum();
    // 1,000,000 generated; `ms = (id * 37) % 2000 < 1500` keeps exactly 3/4 of them.
    assert_eq!(views, 750_000);
    assert!(text(&out.stderr).contains("finished"));
}

#[test]
fn orders_example_routes_bad_input_to_the_dead_letter_file() {
    let out = run(&["run", "examples/orders.yaml", "--progress", "never"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dead =
        std::fs::read_to_string(repo().join("target/examples/orders-dead-letters.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let bad_line = dead.iter().find(|d| d["stage"] == "source").unwrap();
    assert_eq!(bad_line["line"], 5);
    assert!(bad_line["error"].as_str().unwrap().contains("column"));
    let bad_value = dead.iter().find(|d| d["stage"] == "steps[1].map").unwrap();
    assert_eq!(bad_value["record"]["order_id"], 7);
    let totals =
        std::fs::read_to_string(repo().join("target/examples/orders-totals.jsonl")).unwrap();
    let orders: i64 = totals
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["orders"]
                .as_i64()
                .unwrap()
        })
        .sum();
    // 8 lines: 1 malformed, 1 with quantity 0 (filtered), 1 failing the map.
    assert_eq!(orders, 5);
}

const GOOD: &str =
    "name: t\nsource:\n  type: generator\n  count: 10\n  fields: {id: id}\nsink: {type: discard}\n";

#[test]
fn a_yaml_syntax_error_exits_2_naming_the_line() {
    let (out, _d) = with_pipeline("name: t\nsource:\n\ttype: generator\n", "validate");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("p.yaml:3"), "{err}");
}

/// Issue 11, item 8: a sliding window putting each event in millions of windows is refused
/// before it runs.
#[test]
fn a_sliding_window_with_too_many_windows_per_event_exits_2() {
    let yaml = "source:\n  type: generator\n  count: 6\n  fields: {ts: id}\nsteps:\n  - window:\n      type: sliding\n      size: 1d\n      slide: 1ms\n      time_field: ts\n      late: drop\n      aggregate: { n: count() }\nsink: {type: discard}\n";
    let (out, _d) = with_pipeline(yaml, "run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("p.yaml:9"), "{err}");
    assert!(err.contains("steps[0].window.slide"), "{err}");
    assert!(
        err.contains("puts each event in 86400000 windows (a result each); at most 10000 windows per event are allowed"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_exits_2_naming_line_and_key() {
    let yaml = GOOD.replace("count: 10", "count: 10\n  colour: red");
    let (out, _d) = with_pipeline(&yaml, "run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("p.yaml:5: source.colour: `colour` is not an option of a generator source; its options are: count, rate, fields, event_time"),
        "{err}"
    );
}

#[test]
fn a_wrong_type_exits_2_naming_line_and_key() {
    let yaml = GOOD.replace("count: 10", "count: lots");
    let (out, _d) = with_pipeline(&yaml, "validate");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("p.yaml:4: source.count:"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn a_bad_expression_exits_2_naming_the_step() {
    let yaml = GOOD.replace("sink:", "steps:\n  - filter: \"idx > 3\"\nsink:");
    let (out, _d) = with_pipeline(&yaml, "validate");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("p.yaml:7: steps[0].filter: unknown field `idx`"),
        "{err}"
    );
    assert!(err.contains("did you mean `id`"), "{err}");
}

#[test]
fn a_malformed_json_line_fails_the_run_with_its_line_number_without_a_dead_letter_sink() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"a\": 1}\n{\"a\": 2}\n{\"a\": \n{\"a\": 4}\n",
    )
    .unwrap();
    let yaml = "source: {type: file, path: in.jsonl}\nsink: {type: file, path: out.jsonl}\n";
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let out = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("in.jsonl:3:"), "{err}");
}

#[test]
fn a_malformed_json_line_goes_to_the_dead_letter_sink_and_the_rest_continues() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"a\": 1}\n{\"a\": 2}\n{\"a\": \n\n{\"a\": 4}\n",
    )
    .unwrap();
    let yaml = "source: {type: file, path: in.jsonl}\nsink: {type: file, path: out.jsonl}\ndead_letter: {type: file, path: dead.jsonl}\n";
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let out = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let good = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(good.lines().count(), 3);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let dead: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(dead["line"], 3);
    assert_eq!(dead["raw"], "{\"a\": ");
    assert!(dead["error"].as_str().unwrap().contains("EOF"), "{dead}");
}

#[test]
fn a_runtime_failure_exits_1_with_the_step_and_position() {
    let yaml = GOOD.replace(
        "sink:",
        "steps:\n  - map: {ratio: \"100 / (id - 4)\"}\nsink:",
    );
    let (out, _d) = with_pipeline(&yaml, "run");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("steps[0].map"), "{err}");
    assert!(err.contains("at record 4"), "{err}");
    assert!(err.contains("division by zero"), "{err}");
}

#[test]
fn bench_engine_and_baseline_agree() {
    for workload in ["w1", "w3"] {
        let json = |extra: &[&str]| -> serde_json::Value {
            let mut args = vec!["bench", workload, "--events", "20000", "--json"];
            args.extend_from_slice(extra);
            let out = run(&args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let stdout = text(&out.stdout);
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
        };
        let engine = json(&["--parallelism", "2"]);
        let baseline = json(&["--baseline"]);
        assert_eq!(engine["results"], baseline["results"], "{workload}");
        assert_eq!(engine["checksum"], baseline["checksum"], "{workload}");
        if workload == "w1" {
            let yaml = json(&["--yaml", "--parallelism", "2"]);
            assert_eq!(yaml["mode"], "yaml");
            assert_eq!(yaml["results"], baseline["results"], "{workload} --yaml");
            assert_eq!(yaml["checksum"], baseline["checksum"], "{workload} --yaml");
        }
        for key in [
            "workload",
            "events",
            "parallelism",
            "seconds",
            "events_per_sec",
        ] {
            assert!(engine.get(key).is_some(), "{workload} lacks {key}");
        }
    }
}

#[test]
fn an_unknown_workload_exits_2() {
    let out = run(&["bench", "w9"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_w5_restores_in_a_fresh_process_and_matches_the_baseline() {
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["bench", "w5", "--keys", "5000", "--json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap()
    };
    let engine = json(&[]);
    let baseline = json(&["--baseline"]);
    assert_eq!(engine["restore_in"], "fresh process");
    assert!(engine["restore_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(engine["results"], baseline["results"]);
    assert_eq!(engine["checksum"], baseline["checksum"]);
}

#[test]
fn bench_yaml_refuses_workloads_without_a_yaml_form() {
    let out = run(&["bench", "w5", "--yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--yaml runs w1, w2 and w3"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["bench", "w1", "--yaml", "--baseline"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_register_check_list_show() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "v1.yaml",
        "name: shop.order\nfields:\n  - { name: id, type: int, required: true }\n",
    );
    write(
        "v2.yaml",
        "name: shop.order\nfields:\n  - { name: id, type: int, required: true }\n  - { name: note, type: string }\n",
    );
    write(
        "bad.yaml",
        "name: shop.order\nfields:\n  - { name: id, type: string, required: true }\n",
    );
    let schema = |args: &[&str]| {
        weir()
            .arg("schema")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(schema(&["register", "v1.yaml"]).status.success());
    let refused = schema(&["check", "bad.yaml"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = text(&refused.stderr);
    assert!(
        err.contains("field `id`") && err.contains("not backward compatible"),
        "{err}"
    );
    let registered = schema(&["register", "v2.yaml"]);
    assert!(text(&registered.stdout).contains("shop.order v2"));
    let list = text(&schema(&["list"]).stdout);
    assert!(list.contains("shop.order") && list.contains("v2"), "{list}");
    let shown = text(&schema(&["show", "shop.order", "1"]).stdout);
    assert!(
        shown.contains("version: 1") && !shown.contains("note"),
        "{shown}"
    );
    assert!(dir.path().join("schemas/shop.order/v2.yaml").exists());
}

#[test]
fn a_corrupt_checkpoint_is_skipped_for_the_previous_good_one_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..5000)
        .map(|i| format!("{{\"k\":\"k{}\",\"v\":{i}}}\n", i % 10))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let yaml = "name: c\nsettings:\n  checkpoint: { interval: 10ms, keep: 5 }\nsource: { type: file, path: in.jsonl }\nsteps:\n  - key_by: k\n  - aggregate: { n: count() }\nsink: { type: file, path: out.jsonl }\n";
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let run = |args: &[&str]| weir().args(args).current_dir(dir.path()).output().unwrap();
    // A second run resumes from the first one's last checkpoint and takes another: at least
    // two checkpoints, however fast the machine.
    for _ in 0..2 {
        assert!(
            run(&["run", "c.yaml", "--progress", "never"])
                .status
                .success()
        );
    }
    let listing = text(&run(&["checkpoints", "list", "c.yaml", "--json"]).stdout);
    let infos: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(infos.len() >= 2, "{listing}");
    let latest = infos.last().unwrap()["id"].as_u64().unwrap();
    let previous = infos[infos.len() - 2]["id"].as_u64().unwrap();
    // Corrupt the latest checkpoint's metadata.
    let meta = dir
        .path()
        .join(format!(".weir/checkpoints/c/chk-{latest:06}/_metadata"));
    let bytes = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &bytes[..bytes.len() / 2]).unwrap();
    let resumed = run(&["run", "c.yaml", "--progress", "never"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let err = text(&resumed.stderr);
    assert!(
        err.contains(&format!("chk-{latest:06}")) && err.contains("skipped"),
        "{err}"
    );
    // "resuming from checkpoint N", or "checkpoint N already covers the whole input".
    assert!(err.contains(&format!("checkpoint {previous} ")), "{err}");
    // Show and restore name what they work on.
    let shown = text(&run(&["checkpoints", "show", "c.yaml", &previous.to_string()]).stdout);
    assert!(shown.contains(&format!("checkpoint {previous}")), "{shown}");
    assert!(
        shown.contains("states:") && shown.contains("aggregates: ") && shown.contains(" blob"),
        "{shown}"
    );
    let restored = run(&["checkpoints", "restore", "c.yaml", &previous.to_string()]);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert!(text(&restored.stdout).contains(&format!("resumes from checkpoint {previous}")));
}

/// Issue 11, item 2: committed output shorter than the checkpoint expects is refused (exit 1,
/// naming the file and both lengths); never padded with NUL bytes.
#[test]
fn shortened_committed_output_is_refused_not_padded() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let yaml = "settings: { checkpoint: { interval: 10ms, dir: cps } }
source: { type: file, path: in.jsonl }
sink: { type: file, path: out.jsonl }
";
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let run = || {
        weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let out = dir.path().join("out.jsonl");
    let full = std::fs::metadata(&out).unwrap().len();
    // Cut by hand.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(100)
        .unwrap();
    let again = run();
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out.jsonl") && err.contains("100 bytes") && err.contains(&full.to_string()),
        "{err}"
    );
    assert!(!err.contains("finished in"), "{err}");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 100);
    assert!(!bytes.contains(&0), "NUL bytes written into the output");
}

/// Issue 11, item 3: outputs that are the input or each other are refused by `validate` and
/// `run` (exit 2), naming both keys; the input is left intact.
#[test]
fn outputs_clashing_with_the_input_or_each_other_are_refused() {
    for (sink, dead, keys) in [
        ("in.jsonl", "dead.jsonl", ["sink", "source"]),
        ("./sub/../in.jsonl", "dead.jsonl", ["sink", "source"]),
        ("out.jsonl", "out.jsonl", ["dead_letter", "sink"]),
    ] {
        let yaml = format!(
            "source: {{ type: file, path: in.jsonl }}
steps: [ {{ filter: \"n > 1\" }} ]
sink: {{ type: file, path: \"{sink}\" }}
dead_letter: {{ type: file, path: {dead} }}
"
        );
        for command in ["validate", "run"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("sub")).unwrap();
            std::fs::write(dir.path().join("in.jsonl"), "{\"n\":1}\n{\"n\":2}\n").unwrap();
            std::fs::write(dir.path().join("p.yaml"), &yaml).unwrap();
            let out = weir()
                .args([command, "p.yaml"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {sink} {dead}: {err}");
            for key in keys {
                assert!(err.contains(&format!("`{key}`")), "{err}");
            }
            assert_eq!(
                std::fs::read_to_string(dir.path().join("in.jsonl")).unwrap(),
                "{\"n\":1}\n{\"n\":2}\n"
            );
        }
    }
}

/// Issue 11, items 16 and 17: the summary names each output's destination and the dead-letter
/// count; a run whose every record is a dead letter says so, and `--strict` exits 1.
#[test]
fn summary_names_destinations_and_warns_when_everything_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "not json\n{broken\n").unwrap();
    let yaml = "source: { type: file, path: in.jsonl }
sink: { type: file, path: good.jsonl }
dead_letter: { type: file, path: bad.jsonl }
";
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let run = |extra: &[&str]| {
        weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("sink: 0 record(s) to ") && err.contains("good.jsonl"),
        "{err}"
    );
    assert!(
        err.contains("dead letters: 2 record(s) to ") && err.contains("bad.jsonl"),
        "{err}"
    );
    assert!(
        err.contains("EVERY record read (2) went to the dead-letter output"),
        "{err}"
    );
    let strict = run(&["--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict.stderr));
}

/// Issue 11, item 5: SIGINT or SIGTERM stops the run without losing what was read: every record
/// written, the summary printed, exit 0. A second signal exits at once.
#[test]
fn a_signal_stops_the_run_and_keeps_every_record_read() {
    use std::io::Write;
    use std::process::Stdio;
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            "source: { type: stdin }\nsink: { type: file, path: out.jsonl }\n",
        )
        .unwrap();
        let mut child = weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..5 {
            writeln!(stdin, "{{\"n\":{i}}}").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        kill(child.id(), signal);
        // Closing the input after the signal changes nothing: the stop has been taken already.
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "SIG{signal}: {err}");
        assert!(err.contains(&format!("stopped by SIG{signal}")), "{err}");
        assert!(err.contains("sink: 5 record(s) to"), "{err}");
        let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
        assert_eq!(written.lines().count(), 5, "{written}");
    }

    // A second signal exits at once, while the first stop is still under way: here the sink
    // posts to a server that never answers (its connection waits in the listener's backlog),
    // so draining cannot finish.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        format!(
            "source: {{ type: stdin }}\nsink: {{ type: http, url: \"{url}\", flush_interval: 10ms, policy: {{ retries: 0, timeout: 60s }} }}\n"
        ),
    )
    .unwrap();
    let mut child = weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{{\"n\":1}}").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    kill(child.id(), "INT");
    std::thread::sleep(std::time::Duration::from_millis(500));
    kill(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("SIGINT received again: exiting at once"),
        "{err}"
    );
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Issue 12, item 4: `weir validate` prints the graph of a multi-source pipeline, one line per
/// source, step and sink with its inputs, in the file's order.
#[test]
fn validate_prints_the_graph() {
    let out = run(&["validate", "examples/joins.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let graph = stdout.split_once("graph:\n").map(|(_, g)| g).unwrap_or("");
    let lines: Vec<&str> = graph.lines().collect();
    assert_eq!(
        lines,
        [
            "  source shop_orders: examples/data/shop_orders.jsonl (json_lines), event time `ts` (watermark delay 1m)",
            "  source web_orders: examples/data/web_orders.jsonl (json_lines), event time `ts` (watermark delay 1m)",
            "  source payments: examples/data/payments.jsonl (json_lines), event time `ts` (watermark delay 1m)",
            "  source plans: examples/data/plans.jsonl (json_lines), event time `ts` (watermark delay 0s)",
            "  step orders (union) <- shop_orders, web_orders",
            "  step big_orders (filter) <- orders",
            "  step paid (interval_join) <- big_orders, payments",
            "  step orders_with_plan (lookup_join) <- orders, plans",
            "  step same_minute (window_join) <- orders, payments",
            "  sink sinks[0] (file) <- paid",
            "  sink sinks[1] (file) <- orders_with_plan",
            "  sink sinks[2] (file) <- same_minute",
            "  dead_letter (file) <- failures and late events of every step",
        ],
        "{stdout}"
    );
}

/// The joins example: every order of 10 or more paid within 5 minutes is matched with its
/// payment (order 4 was paid 18 minutes later), nothing is dead-lettered.
#[test]
fn the_joins_example_matches_orders_and_payments() {
    // A copy, so that `every_example_runs` does not write the same files meanwhile.
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("examples");
    std::fs::create_dir_all(examples.join("data")).unwrap();
    std::fs::copy(
        repo().join("examples/joins.yaml"),
        examples.join("joins.yaml"),
    )
    .unwrap();
    for f in ["shop_orders", "web_orders", "payments", "plans"] {
        let name = format!("data/{f}.jsonl");
        std::fs::copy(repo().join("examples").join(&name), examples.join(&name)).unwrap();
    }
    let joins = examples.join("joins.yaml");
    let out = run(&["run", joins.to_str().unwrap(), "--progress", "never"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read =
        |f: &str| std::fs::read_to_string(tmp.path().join("target/examples").join(f)).unwrap();
    let mut paid: Vec<i64> = read("joins-paid.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    paid.sort_unstable();
    assert_eq!(paid, [1, 2, 5, 101, 102]);
    assert_eq!(read("joins-orders-with-plan.jsonl").lines().count(), 8);
    assert_eq!(read("joins-dead-letters.jsonl"), "");
}
