//! `weir run` and `weir validate`.

use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weir_core::{Environment, JobMetrics, OperatorMetrics};
use weir_pipeline::Pipeline;

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
    /// Resume from this checkpoint instead of the latest one.
    #[arg(long, value_name = "ID", conflicts_with = "ignore_state")]
    from_checkpoint: Option<u64>,
    /// Start fresh, ignoring existing checkpoints (they are kept).
    #[arg(long)]
    ignore_state: bool,
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
    match pipeline.validate() {
        Ok(plan) => {
            println!(
                "ok: {}: pipeline '{}': {plan}",
                args.file.display(),
                pipeline.name()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    let pipeline = match load(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut config = pipeline.config();
    if let Some(p) = args.parallelism {
        config.parallelism = p;
    }
    config.drain_on_stop = args.drain;
    let resume = weir_pipeline::Resume {
        from: args.from_checkpoint,
        ignore_state: args.ignore_state,
    };
    match pipeline.checkpoint_plan(&resume) {
        Ok(Some(plan)) => {
            for skipped in &plan.skipped {
                eprintln!("warning: {skipped}");
            }
            match plan.resumed {
                Some(id) if plan.resumed_finished => eprintln!(
                    "{}: checkpoint {id} ended a drained run: new input is a new epoch (sources continue where it ended; windows, aggregates and event time start empty; --ignore-state starts over)",
                    pipeline.name()
                ),
                Some(id) => eprintln!(
                    "{}: resuming from checkpoint {id} in {}",
                    pipeline.name(),
                    plan.dir.display()
                ),
                None => {}
            }
            config.checkpointing = Some(plan.checkpointing);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    }
    let env = Environment::with_config(config);
    match pipeline.build(&env) {
        Ok(built) => built
            .warnings()
            .iter()
            .for_each(|w| eprintln!("warning: {w}")),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    }
    let name = pipeline.name();
    let job = match env.start() {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(BAD_INPUT);
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
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        reporter.tick(job.metrics(), started.elapsed());
    }
    let metrics = job.metrics().clone();
    let result = job.wait();
    reporter.finish();
    let elapsed = started.elapsed();
    match result {
        Ok(done) => {
            summary(&name, &done.operators, elapsed, args.summary_json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            summary(&name, &metrics.snapshot(), elapsed, args.summary_json);
            eprintln!("error: pipeline '{name}' failed: {e}");
            ExitCode::from(RUNTIME_FAILURE)
        }
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

    fn tick(&mut self, metrics: &JobMetrics, elapsed: Duration) {
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
        let ops = metrics.snapshot();
        let read = metrics.source_records();
        let written = metrics.sink_records();
        let errors: u64 = ops.iter().map(|m| m.errors).sum();
        let lag: Option<i64> = ops
            .iter()
            .filter_map(|m| m.gauges.get("consumer_lag"))
            .copied()
            .reduce(|a, b| a + b);
        let dropped: u64 = ops.iter().map(|m| m.dropped).sum();
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

fn summary(name: &str, ops: &[OperatorMetrics], elapsed: Duration, json: bool) {
    if json {
        let value = serde_json::json!({
            "pipeline": name,
            "seconds": elapsed.as_secs_f64(),
            "operators": ops,
        });
        eprintln!("{value}");
        return;
    }
    eprintln!("{name}: finished in {:.3}s", elapsed.as_secs_f64());
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
}
