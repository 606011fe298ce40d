//! `weir bench w4` (latency), end to end through the binary. A smoke test: the fields exist and
//! are consistent; nothing is asserted about the latency values themselves.

use std::process::Output;

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("the weir binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "weir {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

fn micros(report: &serde_json::Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {report}"))
}

#[test]
fn w4_reports_ordered_latency_percentiles_for_every_paced_event() {
    let w1 = json(&["bench", "w1", "--events", "10000", "--json"]);
    for parallelism in ["1", "2"] {
        let r = json(&[
            "bench",
            "w4",
            "--seconds",
            "1",
            "--rate",
            "10000",
            "--parallelism",
            parallelism,
            "--json",
        ]);
        assert_eq!(r["workload"], "w4");
        // The source makes exactly rate × seconds events; W1's filter passes half of them,
        // and the sink's count and sum equal w1's over the same events.
        assert_eq!(r["events"], 10_000, "{r}");
        assert_eq!(r["results"], w1["results"], "{r}");
        assert_eq!(r["results"], 5_000, "{r}");
        assert_eq!(r["checksum"], w1["checksum"], "{r}");
        let (p50, p99, p999, max) = (
            micros(&r, "p50_us"),
            micros(&r, "p99_us"),
            micros(&r, "p999_us"),
            micros(&r, "max_us"),
        );
        assert!(
            0.0 <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "percentiles out of order: {r}"
        );
        assert!(r["seconds"].as_f64().is_some_and(|s| s > 0.0), "{r}");
    }
}

#[test]
fn w4_refuses_options_that_do_not_apply() {
    for args in [
        &["bench", "w4", "--baseline"][..],
        &["bench", "w4", "--events", "100"],
        &["bench", "w4", "--rate", "0"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("w4"), "{args:?}: {err}");
    }
}

#[test]
fn bench_help_describes_w4() {
    let out = run(&["bench", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["w4", "--rate", "p99_us", "no --baseline"] {
        assert!(help.contains(needle), "help lacks {needle}: {help}");
    }
}
