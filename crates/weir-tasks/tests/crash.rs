//! kill -9 with thousands of tasks queued or running, then restart: every accepted task ends
//! exactly once in the results, none lost; idempotent resubmits create nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The `task_worker` example, built first (`cargo test --test crash` alone does not build
/// examples).
fn worker() -> Command {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "weir-tasks", "--example", "task_worker"])
            .status()
            .unwrap();
        assert!(status.success(), "building the task_worker example failed");
    });
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    Command::new(dir.join("task_worker"))
}

#[test]
fn kill_9_with_thousands_queued_loses_no_accepted_task() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5000;
    let mut child = worker()
        .arg(dir.path())
        .arg("submit")
        .arg(n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("task_worker example (cargo test builds it)");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut accepted: HashMap<usize, String> = HashMap::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let mut parts = line.split(' ');
        if parts.next() == Some("accepted") {
            let i: usize = parts.next().unwrap().parse().unwrap();
            accepted.insert(i, parts.next().unwrap().to_string());
        }
        // Kill while most are still queued or running (the agent does ~200 tasks/s).
        if accepted.len() >= 4000 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(accepted.len() >= 4000);

    let output = worker()
        .arg(dir.path())
        .arg("drain")
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n);
    let mut ids = std::collections::HashSet::new();
    let mut resubmitted_existing = 0;
    for line in &lines {
        let i = line["i"].as_u64().unwrap() as usize;
        let id = line["task_id"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "task id {id} returned twice");
        assert_eq!(line["status"], "succeeded", "{line}");
        assert_eq!(
            line["result"],
            serde_json::json!({"echo": {"i": i}}),
            "{line}"
        );
        if let Some(first) = accepted.get(&i) {
            // Accepted before the crash: the same task, not a new one.
            assert_eq!(id, first, "key k{i} got a new task after restart");
            assert_eq!(line["created"], false, "{line}");
            resubmitted_existing += 1;
        }
    }
    assert_eq!(resubmitted_existing, accepted.len());
    // Thousands of the accepted tasks were queued or running at the kill: they ran after the
    // restart. The others had finished before it and kept their results (not run again).
    let unfinished_at_kill = lines
        .iter()
        .filter(|l| accepted.contains_key(&(l["i"].as_u64().unwrap() as usize)))
        .filter(|l| l["ran_after_restart"] == true)
        .count();
    assert!(
        unfinished_at_kill >= 2000,
        "only {unfinished_at_kill} accepted tasks were unfinished at the kill"
    );
}
