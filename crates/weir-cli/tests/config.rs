//! Loading configuration through the `weir` binary: bad files exit 2 with a located message
//! (never a panic, never a hang), environment variables, names, schema and checkpoint commands.

use std::path::Path;
use std::process::{Command, Output};

fn weir(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.args(args).current_dir(dir);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the weir binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn validate(yaml: &[u8], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    weir(dir.path(), &["validate", "p.yaml"], env)
}

const GOOD: &str = "name: orders\nsource:\n  type: generator\n  count: 5\n  fields: { id: id, amount: \"id * 2\" }\nsteps:\n  - filter: \"amount > 2\"\n  - map:\n      total: \"amount + 1\"\n      tag: \"'x'\"\nsink:\n  type: discard\n";

#[test]
fn mutated_and_random_files_exit_0_or_2_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut inputs: Vec<Vec<u8>> = vec![
        (0..400).map(|_| rng.u8(..)).collect(),
        format!("{GOOD}{}", "[".repeat(100_000)).into_bytes(),
    ];
    for _ in 0..4 {
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = rng.usize(0..bytes.len());
        let spice = ["{", "- ", "\"", ":", "\n  ", "]"][rng.usize(0..6)];
        bytes.splice(at..at, spice.bytes());
        inputs.push(bytes);
    }
    for input in inputs {
        let out = validate(&input, &[]);
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(2),
            "exit {code:?} for {:?}: {}",
            String::from_utf8_lossy(&input),
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        if code == Some(2) {
            assert!(
                stderr(&out).starts_with("error: p.yaml"),
                "{}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn deep_nesting_is_refused_with_the_line_and_the_limit() {
    let yaml = format!("{GOOD}description: {}\n", "[".repeat(100_000));
    let out = validate(yaml.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("p.yaml:13: the file nests deeper than 64 levels"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let mut yaml = "\u{feff}".as_bytes().to_vec();
    yaml.extend(GOOD.as_bytes());
    let out = validate(&yaml, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn environment_variables_fill_string_values_and_unset_ones_are_named() {
    let yaml = GOOD
        .replace("name: orders", "name: ${PIPELINE_NAME:-fallback}")
        .replace("\"amount > 2\"", "\"amount > ${MIN_AMOUNT}\"");
    let out = validate(
        yaml.as_bytes(),
        &[("MIN_AMOUNT", "3"), ("PIPELINE_NAME", "o2")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pipeline 'o2'"));

    let out = validate(yaml.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "p.yaml:7: steps[0].filter: the environment variable `MIN_AMOUNT` is not set"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_secret_in_an_env_key_is_never_printed() {
    let yaml = "name: ch\nsource: { type: generator, count: 1, fields: { id: id } }\nsink:\n  type: clickhouse\n  url: http://127.0.0.1:1\n  table: t\n  password_env: ${CH_SECRET}\n";
    let out = validate(yaml.as_bytes(), &[("CH_SECRET", "hunter2-pass!")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sink.password_env"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn names_that_are_not_identifiers_are_refused() {
    for name in ["../../evil", "a/b", ".hidden", "", "has space"] {
        let yaml = GOOD.replace("name: orders", &format!("name: \"{name}\""));
        let out = validate(yaml.as_bytes(), &[]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("p.yaml:1: name: `name`"),
            "{name}: {}",
            stderr(&out)
        );
    }
    let yaml = GOOD.replace("name: orders", "name: orders-v2.eu_1");
    assert_eq!(validate(yaml.as_bytes(), &[]).status.code(), Some(0));
}

#[test]
fn duplicate_keys_in_a_map_step_name_both_lines() {
    let yaml = GOOD.replace(
        "      tag: \"'x'\"",
        "      tag: \"'x'\"\n      total: \"amount\"",
    );
    let out = validate(yaml.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("duplicate key `total`: lines 9 and 11"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rename_onto_an_existing_field_needs_overwrite() {
    let base = "name: r\nfields: { a: int, b: int }\nsource: { type: stdin }\nsteps:\n  - rename: RENAME\nsink: { type: discard }\n";
    let out = validate(base.replace("RENAME", "{ a: b }").as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("p.yaml:5: steps[0].rename.a: renaming `a` to `b` would replace"),
        "{}",
        stderr(&out)
    );
    let long = "{ fields: { a: b }, overwrite: true }";
    let out = validate(base.replace("RENAME", long).as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = validate(base.replace("RENAME", "{ a: c }").as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn schema_commands_on_garbage_and_missing_registries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("garbage.yaml"),
        [0xff, 0xfe, 0x00, 0x81, 0x9c],
    )
    .unwrap();
    let out = weir(dir.path(), &["schema", "check", "garbage.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("garbage.yaml"), "{}", stderr(&out));

    let out = weir(
        dir.path(),
        &["schema", "--registry", "nowhere", "list"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the schema registry directory nowhere does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("nowhere").exists(),
        "list created the directory"
    );
}

#[test]
fn checkpoint_commands_describe_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for (command, words) in [
        ("list", &["The pipeline file", "JSON array"][..]),
        ("show", &["The pipeline file", "The checkpoint's id"][..]),
        (
            "restore",
            &["The pipeline file", "The checkpoint to resume from"][..],
        ),
    ] {
        let out = weir(dir.path(), &["checkpoints", command, "--help"], &[]);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for word in words {
            assert!(help.contains(word), "{command}: {help}");
        }
    }
}
