//! Fuzz-style test of the pipeline loader: random bytes and mutations of valid pipelines must
//! each be accepted or refused with a located error, never panic or hang.
//!
//! Seeded, so a failure reproduces: the failing input is printed. `WEIR_FUZZ_CASES` and
//! `WEIR_FUZZ_SEED` run more cases or another seed; the `cargo fuzz` target
//! `fuzz/fuzz_targets/pipeline_yaml.rs` is for long runs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use weir_pipeline::Pipeline;

/// Valid pipelines to mutate: the examples and the golden cases.
fn corpus() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [root.join("../../examples"), root.join("tests/golden")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.push(path.join("pipeline.yaml"));
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut corpus: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect();
    assert!(corpus.len() >= 5, "the corpus is missing: {corpus:?}");
    corpus.push((
        root.join("inline.yaml"),
        "name: x\nsource: { type: generator, count: 3, fields: { id: id, v: \"id * 2\" } }\nsteps:\n  - map: { w: \"v + 1\" }\n  - rename: { w: z }\n  - filter: \"z > 1\"\nsink: { type: discard }\n".to_string(),
    ));
    corpus
}

/// YAML's significant characters, and a few that often upset parsers.
const SPICE: &[&str] = &[
    "[", "]", "{", "}", ":", ": ", "- ", "#", "'", "\"", "&a ", "*a", "!", "!!str ", "|", ">", "%",
    "@", "`", "\n", "\t", " ", "  ", ",", "?", "\\", "${", "${X}", "${X:-1}", "}", "\u{feff}",
    "\u{0}", "é", "null", "~", "1e999", "-1", "0x10", "<<: *a", "---\n", "...\n",
];

fn mutate(rng: &mut fastrand::Rng, text: &str, other: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(0..=bytes.len());
        match rng.u8(0..7) {
            0 => {
                let spice = SPICE[rng.usize(0..SPICE.len())];
                bytes.splice(at..at, spice.bytes());
            }
            1 if at < bytes.len() => {
                let end = (at + rng.usize(1..20)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 if at < bytes.len() => bytes[at] = rng.u8(..),
            3 => bytes.truncate(at),
            4 => {
                // Splice in a piece of another pipeline.
                let o = other.as_bytes();
                let from = rng.usize(0..=o.len());
                let to = (from + rng.usize(0..80)).min(o.len());
                bytes.splice(at..at, o[from..to].iter().copied());
            }
            5 if at < bytes.len() => {
                let end = (at + rng.usize(1..40)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {
                let deep = ["[", "{a: ", "- "][rng.usize(0..3)].repeat(rng.usize(1..400));
                bytes.splice(at..at, deep.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads and validates: whether the input was accepted. A panic fails the test with the input.
fn check(text: &str, file: &Path, case: usize) -> bool {
    let file_name = file.display().to_string();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Pipeline::parse(text, &file_name).and_then(|p| p.validate().map(|_| ()))
    }));
    match outcome {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            assert_eq!(
                e.file, file_name,
                "case {case}: the error names another file"
            );
            assert!(!e.message.is_empty(), "case {case}: an empty message");
            false
        }
        Err(_) => panic!("case {case}: the loader panicked on this input:\n{text:?}"),
    }
}

#[test]
fn random_and_mutated_pipelines_are_accepted_or_refused_never_panic() {
    let cases: usize = std::env::var("WEIR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("WEIR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0011);
    let corpus = corpus();
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases {
        let (file, text) = &corpus[rng.usize(0..corpus.len())];
        let input = if case % 10 == 0 {
            // Plain random bytes (as text).
            let bytes: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let other = &corpus[rng.usize(0..corpus.len())].1;
            mutate(&mut rng, text, other)
        };
        if let Ok(trace) = std::env::var("WEIR_FUZZ_TRACE") {
            // A stack overflow aborts without unwinding: keep the input that caused it.
            std::fs::write(&trace, &input).expect("write the trace file");
        }
        if check(&input, file, case) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // The mutations are meant to reach both outcomes; all accepted or all refused would mean
    // they test nothing.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
