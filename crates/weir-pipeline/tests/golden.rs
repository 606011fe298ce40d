//! Golden-file tests: every directory under `tests/golden/` is one case.
//!
//! A case holds `pipeline.yaml`, the files it reads (usually `input.jsonl`), `expected.jsonl`
//! (what the pipeline's sink must write to `output.jsonl`) and, when the pipeline has a
//! dead-letter output writing `dead_letter.jsonl`, `expected_dead_letter.jsonl` (a missing
//! expected file means "no line"). The pipeline runs in a temporary copy of the directory,
//! through `Pipeline::parse`, `Pipeline::build` and `Environment::execute`. Outputs are
//! compared line by line as JSON, in any order (parallel instances interleave); a mismatch
//! prints the missing and unexpected lines.
//!
//! `WEIR_BLESS=1 cargo test --test golden` writes the actual outputs as the expected files;
//! review them before committing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use weir_core::Environment;
use weir_pipeline::Pipeline;

/// The lines of a JSON-lines file in canonical form (keys sorted), sorted; a missing file has
/// none.
fn canonical_lines(path: &Path) -> Result<Vec<String>, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut lines = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), i + 1))?;
        lines.push(value.to_string());
    }
    lines.sort();
    Ok(lines)
}

/// A readable difference between two sorted multisets of lines, or `None` when equal.
fn diff(expected: &[String], actual: &[String]) -> Option<String> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for l in expected {
        *counts.entry(l).or_default() += 1;
    }
    for l in actual {
        *counts.entry(l).or_default() -= 1;
    }
    let mut out = String::new();
    for (line, n) in counts {
        let (sign, n) = if n > 0 {
            ("- missing:    ", n)
        } else {
            ("+ unexpected: ", -n)
        };
        for _ in 0..n {
            out.push_str(sign);
            out.push_str(line);
            out.push('\n');
        }
    }
    (!out.is_empty()).then_some(out)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Runs one case; `Err` describes every difference.
fn run_case(case: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_dir(case, tmp.path()).map_err(|e| format!("copying the case: {e}"))?;
    let file = tmp.path().join("pipeline.yaml");
    let text = fs::read_to_string(&file).map_err(|e| format!("pipeline.yaml: {e}"))?;
    let pipeline =
        Pipeline::parse(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).map_err(|e| e.to_string())?;
    env.execute().map_err(|e| format!("the run failed: {e}"))?;

    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut problems = String::new();
    for (actual, expected) in [
        ("output.jsonl", "expected.jsonl"),
        ("dead_letter.jsonl", "expected_dead_letter.jsonl"),
    ] {
        let got = canonical_lines(&tmp.path().join(actual))?;
        if bless {
            let text: String = got.iter().map(|l| format!("{l}\n")).collect();
            let target = case.join(expected);
            if text.is_empty() && expected != "expected.jsonl" {
                let _ = fs::remove_file(target);
            } else {
                fs::write(target, text).map_err(|e| e.to_string())?;
            }
            continue;
        }
        let want = canonical_lines(&case.join(expected))?;
        if let Some(d) = diff(&want, &got) {
            problems.push_str(&format!("{actual} differs from {expected}:\n{d}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pipeline.yaml").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {}", root.display());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        match run_case(case) {
            Ok(()) => eprintln!("golden case {name}: ok"),
            Err(e) => failures.push(format!("golden case {name}:\n{e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_diff_names_missing_and_unexpected_lines() {
    let expected = vec!["a".to_string(), "b".to_string(), "b".to_string()];
    let actual = vec!["b".to_string(), "c".to_string()];
    let d = diff(&expected, &actual).unwrap();
    assert_eq!(
        d, "- missing:    a\n- missing:    b\n+ unexpected: c\n",
        "one `b` of two is missing"
    );
    assert_eq!(diff(&actual, &actual), None);
}

/// `examples/windows.yaml` runs (in a copy of `examples/`, so that its outputs land in the
/// copy's `../target/examples/`) and computes the windows its comments describe.
#[test]
fn the_windows_example_runs_and_computes_its_windows() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo.join("examples"), &tmp.path().join("examples")).unwrap();
    let pipeline = Pipeline::load(tmp.path().join("examples/windows.yaml")).unwrap();
    let env = Environment::with_config(pipeline.config());
    pipeline.build(&env).unwrap();
    env.execute().unwrap();

    let out = tmp.path().join("target/examples");
    let window = |user: &str, plan: &str, minute: u32, clicks: u32, slowest: u32| {
        let plan = if plan.is_empty() {
            "null".to_string()
        } else {
            format!("\"{plan}\"")
        };
        let line = format!(
            "{{\"user\": \"{user}\", \"plan\": {plan}, \"window_start\": \"2024-05-01T12:{minute:02}:00.000Z\", \"window_end\": \"2024-05-01T12:{:02}:00.000Z\", \"clicks\": {clicks}, \"slowest_ms\": {slowest}}}",
            minute + 1
        );
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap()
            .to_string()
    };
    let mut expected = vec![
        window("ann", "pro", 0, 2, 120),
        window("bob", "free", 0, 2, 300),
        window("bob", "free", 0, 3, 400), // updated by a click 6 s late
        window("cy", "", 0, 1, 50),       // not in the users table
        window("ann", "pro", 1, 2, 200),
        window("ann", "pro", 2, 1, 70),
        window("bob", "free", 2, 1, 100),
    ];
    expected.sort();
    let got = canonical_lines(&out.join("windows-clicks.jsonl")).unwrap();
    if let Some(d) = diff(&expected, &got) {
        panic!("windows-clicks.jsonl:\n{d}");
    }
    let dead = canonical_lines(&out.join("windows-dead-letters.jsonl")).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("late event at 2024-05-01T12:00:30.000Z"),
        "{}",
        dead[0]
    );
}
