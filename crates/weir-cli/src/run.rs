//! `weir run` and `weir validate`.

use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weir_core::OperatorMetrics;
use weir_pipeline::Pipeline;
use weir_telemetry::{Metrics, MetricsServer, Totals};

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file (YAML).
    file: PathBuf,
    /// Override the pipeline's parallelism (at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    parallelism: Option<usize>,
    /// End by draining when the run stops (stop_after_idle, limit, a signal): event time goes
    /// to the end and every open window fires, as when a file is read to its end.
    #[arg(long)]
    drain: bool,
    /// Live progress on standard error: `auto` updates one line on a terminal and prints a
    /// line every 5 s otherwise.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Print the final summary as one JSON object on standard error.
    #[arg(long)]
    summary_json: bool,
    /// Resume from this checkpoint instead of the latest one; later checkpoints are abandoned
    /// (no later run resumes from them).
    #[arg(long, value_name = "ID", conflicts_with = "ignore_state")]
    from_checkpoint: Option<u64>,
    /// Start fresh. Existing checkpoints are abandoned: no later run resumes from them (they
    /// are removed once this run completes a checkpoint).
    #[arg(long)]
    ignore_state: bool,
    /// Exit with status 1 if any record went to the dead-letter output.
    #[arg(long)]
    strict: bool,
    /// Serve Prometheus metrics at `http://ADDR/metrics` while the run lasts. ADDR is
    /// `HOST:PORT`, or a port alone for loopback (`127.0.0.1:PORT`); port 0 picks a free one
    /// (the address is printed).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The pipeline file (YAML).
    file: PathBuf,
    /// Also check that every source and sink can be reached: files readable or writable,
    /// Redis answering PING, ClickHouse answering SELECT 1, HTTP endpoints accepting a
    /// connection. A failed check exits 1, naming the connector and the reason.
    #[arg(long)]
    connect: bool,
}

/// Exit code for bad input or configuration.
pub const BAD_INPUT: u8 = 2;
/// Exit code for a failure while running.
pub const RUNTIME_FAILURE: u8 = 1;

fn load(file: &PathBuf) -> Result<Pipeline, ExitCode> {
    Pipeline::load(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(BAD_INPUT)
    })
}

pub fn validate(args: ValidateArgs) -> ExitCode {
    let pipeline = match load(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match pipeline.check() {
        Ok(plan) => {
            println!(
                "ok: {}: pipeline '{}': {}",
                args.file.display(),
                pipeline.name(),
                plan.describe()
            );
            print!("graph:\n{}", plan.graph());
            if args.connect {
                return check_connections(&pipeline);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// `weir validate --connect`: one line per source and sink; exit 1 if any check failed.
fn check_connections(pipeline: &Pipeline) -> ExitCode {
    let mut failed = 0;
    for check in pipeline.check_connections() {
        match check.result {
            Ok(true) => println!("ok: {} ({}): reachable", check.key, check.connector),
            Ok(false) => println!(
                "ok: {} ({}): nothing to connect to",
                check.key, check.connector
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {} ({}): {e}", check.key, check.connector);
            }
        }
    }
    if failed > 0 {
        ExitCode::from(RUNTIME_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    let pipeline = match load(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Events logged while the pipeline runs (on any of its threads) carry its name.
    let span = tracing::info_span!("pipeline", pipeline = %pipeline.name());
    let _entered = span.enter();
    let options = weir_pipeline::lifecycle::StartOptions {
        parallelism: args.parallelism,
        drain: args.drain,
        resume: weir_pipeline::Resume {
            from: args.from_checkpoint,
            ignore_state: args.ignore_state,
        },
    };
    let name = pipeline.name();
    // The one source of truth for the progress line, the summary and `/metrics`.
    let metrics = Metrics::new();
    let _server = match &args.metrics_listen {
        Some(addr) => match MetricsServer::start(addr, metrics.clone()) {
            Ok(server) => {
                eprintln!("{name}: metrics at http://{}/metrics", server.local_addr());
                Some(server)
            }
            Err(e) => {
                eprintln!("error: --metrics-listen: {e}");
                return ExitCode::from(BAD_INPUT);
            }
        },
        None => None,
    };
    let job = match weir_pipeline::lifecycle::start(&pipeline, &options, &mut |n| eprintln!("{n}"))
    {
        Ok(started) => started.job,
        Err(e @ weir_pipeline::lifecycle::StartError::Checkpoint(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(RUNTIME_FAILURE);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    metrics.register_job_with_connectors(
        &name,
        job.metrics().clone(),
        pipeline.connectors_of(job.metrics()),
    );
    tracing::info!(target: "weir::run", file = %args.file.display(), "pipeline started");
    let signals = match crate::signals::StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            job.cancel();
            let _ = job.wait();
            eprintln!("error: cannot handle SIGINT/SIGTERM: {e}");
            return ExitCode::from(RUNTIME_FAILURE);
        }
    };
    let terminal = std::io::stderr().is_terminal();
    let show = match args.progress {
        Progress::Never => None,
        Progress::Always => Some(terminal),
        Progress::Auto => Some(terminal),
    };
    let started = Instant::now();
    let mut reporter = Reporter::new(&name, show);
    let mut stopped_by = None;
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if stopped_by.is_none()
            && let Some(signal) = signals.received()
        {
            stopped_by = Some(signal);
            reporter.finish();
            eprintln!(
                "{name}: {signal} received: stopping; what was read is written before exit \
                 (another signal exits at once)"
            );
            job.stop();
        }
        reporter.tick(&metrics, started.elapsed());
    }
    let result = job.wait();
    reporter.finish();
    let elapsed = started.elapsed();
    let outputs = pipeline.outputs();
    match result {
        Ok(done) => {
            let outcome = match stopped_by {
                Some(signal) => Outcome::Stopped(signal),
                None => Outcome::Finished,
            };
            let totals = metrics.totals(&name).unwrap_or_default();
            let report = Report::new(&done.operators, totals, &outputs);
            tracing::info!(target: "weir::run", outcome = %outcome.label(), read = totals.read,
                written = totals.written, dead_letters = totals.dead_letters,
                seconds = elapsed.as_secs_f64(), "pipeline ended");
            summary(
                &name,
                &done.operators,
                elapsed,
                outcome,
                &report,
                args.summary_json,
            );
            if args.strict && report.dead_letters > 0 {
                eprintln!(
                    "error: {} record(s) went to the dead-letter output (--strict)",
                    report.dead_letters
                );
                return ExitCode::from(RUNTIME_FAILURE);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let totals = metrics.totals(&name).unwrap_or_default();
            let ops = metrics.job(&name).map(|j| j.snapshot()).unwrap_or_default();
            let report = Report::new(&ops, totals, &outputs);
            tracing::error!(target: "weir::run", error = %e, read = totals.read,
                seconds = elapsed.as_secs_f64(), "pipeline failed");
            summary(
                &name,
                &ops,
                elapsed,
                Outcome::Failed,
                &report,
                args.summary_json,
            );
            eprintln!("error: pipeline '{name}' failed: {e}");
            ExitCode::from(RUNTIME_FAILURE)
        }
    }
}

/// How a run ended, as the summary says it.
#[derive(Clone, Copy)]
enum Outcome {
    Finished,
    Stopped(crate::signals::Signal),
    Failed,
}

impl Outcome {
    fn label(self) -> String {
        match self {
            Outcome::Finished => "finished".to_string(),
            Outcome::Stopped(signal) => format!("stopped by {signal}"),
            Outcome::Failed => "failed".to_string(),
        }
    }
}

/// What the summary says about the outputs.
struct Report {
    read: u64,
    /// (key, destination, records written).
    outputs: Vec<(String, String, u64)>,
    dead_letters: u64,
    dead_letter_destination: Option<String>,
}

impl Report {
    fn new(ops: &[OperatorMetrics], totals: Totals, outputs: &[weir_pipeline::Output]) -> Self {
        let written = |key: &str| {
            ops.iter()
                .filter(|m| m.name == key)
                .map(|m| m.records_in)
                .sum::<u64>()
        };
        let mut report = Report {
            read: totals.read,
            outputs: Vec::new(),
            dead_letters: 0,
            dead_letter_destination: None,
        };
        for o in outputs {
            if o.key == "dead_letter" {
                report.dead_letters = totals.dead_letters;
                report.dead_letter_destination = Some(o.destination.clone());
            } else {
                report
                    .outputs
                    .push((o.key.clone(), o.destination.clone(), written(&o.key)));
            }
        }
        report
    }

    /// Every record read went to the dead-letter output.
    fn all_dead(&self) -> bool {
        self.read > 0 && self.dead_letters >= self.read
    }
}

/// Live progress: one updating line on a terminal, a plain line every 5 s otherwise.
struct Reporter {
    name: String,
    /// `None`: silent; `Some(true)`: terminal; `Some(false)`: plain lines.
    mode: Option<bool>,
    last_print: Instant,
    last_in: u64,
    last_at: Instant,
    rate: f64,
    printed_inline: bool,
}

impl Reporter {
    fn new(name: &str, mode: Option<bool>) -> Self {
        Reporter {
            name: name.to_string(),
            mode,
            last_print: Instant::now(),
            last_in: 0,
            last_at: Instant::now(),
            rate: 0.0,
            printed_inline: false,
        }
    }

    fn tick(&mut self, metrics: &Metrics, elapsed: Duration) {
        let Some(terminal) = self.mode else { return };
        let interval = if terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if self.last_print.elapsed() < interval {
            return;
        }
        self.last_print = Instant::now();
        let Totals {
            read,
            written,
            errors,
            dropped,
            consumer_lag: lag,
            ..
        } = metrics.totals(&self.name).unwrap_or_default();
        let dt = self.last_at.elapsed().as_secs_f64();
        if dt > 0.0 {
            self.rate = (read - self.last_in) as f64 / dt;
        }
        self.last_in = read;
        self.last_at = Instant::now();
        let mut line = format!(
            "{}: {:>6.1}s  read {} ({}/s)  written {}  errors {}  dropped {}",
            self.name,
            elapsed.as_secs_f64(),
            human(read as f64),
            human(self.rate),
            human(written as f64),
            errors,
            dropped
        );
        if let Some(lag) = lag {
            line.push_str(&format!("  lag {}", human(lag as f64)));
        }
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.printed_inline = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.printed_inline {
            eprintln!();
        }
    }
}

fn human(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn summary(
    name: &str,
    ops: &[OperatorMetrics],
    elapsed: Duration,
    outcome: Outcome,
    report: &Report,
    json: bool,
) {
    if json {
        let value = serde_json::json!({
            "pipeline": name,
            "outcome": outcome.label(),
            "seconds": elapsed.as_secs_f64(),
            "read": report.read,
            "outputs": report.outputs.iter().map(|(key, destination, written)| serde_json::json!({
                "key": key, "destination": destination, "written": written,
            })).collect::<Vec<_>>(),
            "dead_letters": report.dead_letter_destination.as_ref().map(|d| serde_json::json!({
                "destination": d, "written": report.dead_letters,
            })),
            "all_dead_letters": report.all_dead(),
            "operators": ops,
        });
        eprintln!("{value}");
        return;
    }
    let secs = elapsed.as_secs_f64();
    match outcome {
        Outcome::Finished => eprintln!("{name}: finished in {secs:.3}s"),
        Outcome::Stopped(signal) => {
            eprintln!("{name}: stopped by {signal} after {secs:.3}s; everything read was written")
        }
        Outcome::Failed => eprintln!("{name}: FAILED after {secs:.3}s; counts so far:"),
    }
    let width = ops.iter().map(|m| m.name.len()).max().unwrap_or(8).max(8);
    eprintln!(
        "  {:<width$}  {:>8}  {:>3}  {:>12}  {:>12}  {:>8}  {:>8}  {:>10}",
        "operator", "kind", "par", "in", "out", "errors", "dropped", "busy ms"
    );
    for m in ops {
        eprintln!(
            "  {:<width$}  {:>8}  {:>3}  {:>12}  {:>12}  {:>8}  {:>8}  {:>10.1}",
            m.name,
            m.kind,
            m.parallelism,
            m.records_in,
            m.records_out,
            m.errors,
            m.dropped,
            m.busy.as_secs_f64() * 1000.0
        );
    }
    for (key, destination, written) in &report.outputs {
        eprintln!("  {key}: {written} record(s) to {destination}");
    }
    if let Some(destination) = &report.dead_letter_destination {
        eprintln!(
            "  dead letters: {} record(s) to {destination}",
            report.dead_letters
        );
    }
    if report.all_dead() {
        eprintln!(
            "warning: EVERY record read ({}) went to the dead-letter output {}; nothing reached the sinks. Check the input and the steps (--strict makes this exit 1)",
            report.read,
            report.dead_letter_destination.as_deref().unwrap_or("")
        );
    }
}
