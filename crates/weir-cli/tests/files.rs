//! Unbounded and parallel file sources through the real `weir` binary: a followed file
//! delivers lines appended while it runs; a directory or glob reads every file once, with
//! per-file offsets in checkpoints (a resumed run reads only what is new; a killed one loses and
//! doubles nothing); a followed directory reads files added while it runs; a single file is
//! split by byte ranges across instances with the same result as one instance.

mod common;
use common::weir;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn line(i: u64) -> String {
    format!(
        "{{\"id\":{i},\"k\":\"k{}\",\"v\":{},\"ts\":{}}}\n",
        i % 5,
        i % 13,
        1_700_000_000_000 + i * 7
    )
}

fn append(path: &Path, ids: impl Iterator<Item = u64>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = ids.map(line).collect();
    f.write_all(text.as_bytes()).unwrap();
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn run_ok(dir: &Path, extra: &[&str]) -> Output {
    let out = run(dir, extra);
    assert!(
        out.status.success(),
        "weir run {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(dir: &Path) -> Child {
    weir()
        .args(["run", "p.yaml", "--progress", "never"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("run.err")).unwrap())
        .spawn()
        .unwrap()
}

/// The `id`s of the output, in output order.
fn ids(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect()
}

/// Waits until the output has `n` lines; the run must still be going.
fn wait_for(child: &mut Child, dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids(&dir.join("out.jsonl")).len() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) with {} of {n} lines: {}",
                ids(&dir.join("out.jsonl")).len(),
                std::fs::read_to_string(dir.join("run.err")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines after 120 s",
            ids(&dir.join("out.jsonl")).len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigterm(mut child: Child, dir: &Path) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(dir.join("run.err")).unwrap_or_default();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
}

fn pass_through(source: &str, checkpoints: bool) -> String {
    let settings = if checkpoints {
        "settings:\n  checkpoint: { interval: 20ms, dir: checkpoints }\n"
    } else {
        ""
    };
    format!(
        "name: files\n{settings}source:\n{source}sink:\n  type: file\n  path: out.jsonl\ndead_letter:\n  type: file\n  path: dead.jsonl\n"
    )
}

fn assert_no_dead_letters(dir: &Path) {
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "dead letters: {dead}");
}

#[test]
fn lines_appended_to_a_followed_file_while_it_runs_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        pass_through("  type: file\n  path: in.jsonl\n  follow: true\n", false),
    )
    .unwrap();
    append(&d.join("in.jsonl"), 0..5);
    let mut child = spawn(d);
    wait_for(&mut child, d, 5);
    append(&d.join("in.jsonl"), 5..10);
    wait_for(&mut child, d, 10);
    // A line written in two parts is delivered once, whole.
    let whole = line(10);
    let (first, second) = whole.split_at(9);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("in.jsonl"))
        .unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    f.write_all(second.as_bytes()).unwrap();
    f.write_all(line(11).as_bytes()).unwrap();
    wait_for(&mut child, d, 12);
    sigterm(child, d);
    assert_eq!(ids(&d.join("out.jsonl")), (0..12).collect::<Vec<_>>());
    assert_no_dead_letters(d);
}

#[test]
fn a_followed_file_is_read_across_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        pass_through("  type: file\n  path: app.jsonl\n  follow: true\n", false),
    )
    .unwrap();
    let log = d.join("app.jsonl");
    append(&log, 0..5);
    let mut child = spawn(d);
    wait_for(&mut child, d, 5);
    // Rotation: the file is renamed, its writer adds two more lines to it, then a new file is
    // created at the path.
    let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, d.join("app.jsonl.1")).unwrap();
    old.write_all((5..7).map(line).collect::<String>().as_bytes())
        .unwrap();
    append(&log, 7..10);
    wait_for(&mut child, d, 10);
    // Truncation: the file is emptied and written again from the start.
    std::fs::write(&log, "").unwrap();
    append(&log, 10..12);
    wait_for(&mut child, d, 12);
    sigterm(child, d);
    assert_eq!(ids(&d.join("out.jsonl")), (0..12).collect::<Vec<_>>());
    assert_no_dead_letters(d);
}

#[test]
fn a_followed_directory_reads_files_added_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("logs")).unwrap();
    std::fs::write(
        d.join("p.yaml"),
        pass_through("  type: file\n  path: logs\n  follow: true\n", false),
    )
    .unwrap();
    append(&d.join("logs/a.jsonl"), 0..3);
    let mut child = spawn(d);
    wait_for(&mut child, d, 3);
    append(&d.join("logs/b.jsonl"), 3..6);
    wait_for(&mut child, d, 6);
    append(&d.join("logs/a.jsonl"), 6..8);
    wait_for(&mut child, d, 8);
    sigterm(child, d);
    let mut got = ids(&d.join("out.jsonl"));
    got.sort_unstable();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
}

/// Writes `files` files of `per_file` lines under `logs/`, ids numbered across the files.
fn write_logs(dir: &Path, files: u64, per_file: u64) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for f in 0..files {
        append(
            &dir.join(format!("logs/part-{f}.jsonl")),
            f * per_file..(f + 1) * per_file,
        );
    }
}

fn sorted_ids(dir: &Path) -> Vec<u64> {
    let mut got = ids(&dir.join("out.jsonl"));
    got.sort_unstable();
    got
}

#[test]
fn a_glob_source_reads_every_file_once_and_a_resumed_run_reads_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        pass_through("  type: file\n  path: logs/*.jsonl\n", true)
            .replace("settings:\n", "settings:\n  parallelism: 3\n"),
    )
    .unwrap();
    write_logs(d, 4, 100);
    std::fs::write(d.join("logs/notes.txt"), line(999)).unwrap();
    run_ok(d, &[]);
    assert_eq!(sorted_ids(d), (0..400).collect::<Vec<_>>());
    // More lines in one file, and a new file: only they are read by the resumed run.
    append(&d.join("logs/part-1.jsonl"), 400..450);
    append(&d.join("logs/part-9.jsonl"), 450..500);
    let out = run_ok(d, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    // The first run drained: the second continues the sources as a new epoch.
    assert!(err.contains("new input is a new epoch"), "{err}");
    assert_eq!(sorted_ids(d), (0..500).collect::<Vec<_>>());
    assert_no_dead_letters(d);

    // A different parallelism would reassign files: refused, naming both and the way out.
    let out = run(d, &["--parallelism", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("parallelism 3") && err.contains("--ignore-state"),
        "{err}"
    );
}

#[test]
fn a_glob_source_killed_at_random_and_restarted_loses_and_doubles_nothing() {
    const FILES: u64 = 5;
    // Large enough that a run outlasts the first kills on a quiet machine.
    const PER_FILE: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        pass_through("  type: file\n  path: logs/*.jsonl\n", true)
            .replace("settings:\n", "settings:\n  parallelism: 2\n"),
    )
    .unwrap();
    write_logs(d, FILES, PER_FILE);
    let mut resumed = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // At least 8 kills, and on until one killed run had resumed from a checkpoint (a loaded
    // machine may need more tries to get past the first checkpoint), at most 40.
    for attempt in 0..40 {
        if attempt >= 8 && resumed > 0 {
            break;
        }
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut child = weir()
            .args(["run", "p.yaml", "--progress", "never"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(
            40 + attempt * 25 + (seed >> 33) % 250,
        ));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("resuming from checkpoint") {
            resumed += 1;
        }
    }
    run_ok(d, &[]);
    eprintln!("{resumed} killed runs had resumed from a checkpoint");
    assert!(resumed > 0, "no killed run resumed from a checkpoint");
    let got = sorted_ids(d);
    let expected: Vec<u64> = (0..FILES * PER_FILE).collect();
    if got != expected {
        let doubled = got.windows(2).filter(|w| w[0] == w[1]).count();
        panic!(
            "{} ids for {} expected ({doubled} doubled)",
            got.len(),
            expected.len()
        );
    }
    assert_no_dead_letters(d);
}

const WINDOWED: &str = "steps:
  - key_by: k
  - window:
      type: tumbling
      size: 1s
      time_field: ts
      watermark_delay: 50ms
      aggregate: { n: count(), total: sum(v), first_id: min(id), last_id: max(id) }
sink:
  type: file
  path: out.jsonl
dead_letter:
  type: file
  path: dead.jsonl
";

#[test]
fn a_file_split_across_two_instances_gives_what_one_instance_gives() {
    let mut outputs = Vec::new();
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("p.yaml"),
            format!(
                "name: split\nsettings:\n  parallelism: {parallelism}\nsource:\n  type: file\n  path: in.jsonl\n{WINDOWED}"
            ),
        )
        .unwrap();
        append(&d.join("in.jsonl"), 0..50_000);
        run_ok(d, &[]);
        assert_no_dead_letters(d);
        let mut lines: Vec<String> = std::fs::read_to_string(d.join("out.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        assert!(!lines.is_empty());
        outputs.push(lines);
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn parallelism_applies_to_a_single_json_lines_file_without_a_repartitioning_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        "name: split\nsettings:\n  parallelism: 2\nsource:\n  type: file\n  path: in.jsonl\nsteps:\n  - filter: \"v >= 0\"\nsink:\n  type: file\n  path: out.jsonl\n",
    )
    .unwrap();
    append(&d.join("in.jsonl"), 0..20_000);
    let out = run_ok(d, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Before splits, this warned that a file is read by one instance.
    assert!(!err.contains("does not apply"), "{err}");
    assert_eq!(sorted_ids(d), (0..20_000).collect::<Vec<_>>());
}
