//! The `weir` command line.

mod bench;
mod bench_ingest;
mod checkpoints;
mod run;
mod schema;
mod serve;
mod signals;
mod token;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the dynamic (YAML) path still allocates per record in
/// places (records, strings, window state), and with glibc the allocator's own work
/// (`malloc_consolidate`, `unlink_chunk`, `_int_free`) was 20–30 % of the YAML workloads' profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: stream processing in one binary"
)]
struct Cli {
    /// Log lines on standard error: `text`, or `json` (one object per line with `level`,
    /// `message`, `time` and context such as `pipeline`, `operator`). Levels come from
    /// `WEIR_LOG` (e.g. `info`, `weir_pipeline=debug`); by default `warn` for text and
    /// `info` for JSON.
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", value_name = "FORMAT", default_value = "text",
          value_parser = parse_log_format)]
    log_format: weir_telemetry::logs::LogFormat,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<weir_telemetry::logs::LogFormat, String> {
    s.parse()
        .map_err(|e: weir_telemetry::TelemetryError| e.to_string())
}

/// Sets up logging; the run's own progress and summary stay plain text on standard error.
/// `weir serve` logs at `info` in both formats: its events are its human output.
fn init_logs(
    format: weir_telemetry::logs::LogFormat,
    serving: bool,
) -> Result<(), weir_telemetry::TelemetryError> {
    use weir_telemetry::logs::LogFormat;
    let default = match format {
        _ if serving => "info",
        // The run's own events (started, finished, failed) are the human output already;
        // the server's audit log is always shown.
        LogFormat::Text => "warn,weir::run=off,weir::audit=info",
        LogFormat::Json => "info",
    };
    weir_telemetry::logs::init(format, default)
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file until its input ends.
    Run(run::RunArgs),
    /// Check a pipeline file without running it.
    Validate(run::ValidateArgs),
    /// Inspect and choose a pipeline's checkpoints.
    Checkpoints(checkpoints::CheckpointArgs),
    /// Manage the schema registry.
    Schema(schema::SchemaArgs),
    /// Run a benchmark workload (w1..w6); `weir bench --help` describes them.
    Bench(bench::BenchArgs),
    /// Make, and revoke, the bearer tokens of `weir serve`.
    Token(token::TokenArgs),
    /// Run the server: pipelines, schemas and ingest over HTTP (see the README).
    Serve(serve::ServeArgs),
    /// Submit a pipeline file to a server and start it.
    Submit(serve::SubmitArgs),
    /// List a server's pipelines, or show one.
    Pipelines(serve::PipelinesArgs),
    /// Stop a pipeline on a server (with a checkpoint).
    Stop(serve::NameArgs),
    /// Resume a pipeline on a server from its latest checkpoint.
    Resume(serve::NameArgs),
    /// Tasks on a server: submit, get, cancel; its agents.
    Task(serve::TaskArgs),
}

fn main() -> ExitCode {
    // rustls's crypto provider (ring), before any TLS client or server is built.
    weir_connectors::tls::install_provider();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    if let Err(e) = init_logs(cli.log_format, serving) {
        eprintln!("error: {e}");
        return ExitCode::from(run::BAD_INPUT);
    }
    let result = match cli.command {
        Command::Run(args) => Ok(run::run(args)),
        Command::Validate(args) => Ok(run::validate(args)),
        Command::Schema(args) => Ok(schema::run(args)),
        Command::Checkpoints(args) => Ok(checkpoints::run(args)),
        Command::Bench(args) => bench::run(args),
        Command::Token(args) => Ok(token::run(args)),
        Command::Serve(args) => Ok(serve::serve(args)),
        Command::Submit(args) => Ok(serve::remote(serve::RemoteCommand::Submit(args))),
        Command::Pipelines(args) => Ok(serve::remote(serve::RemoteCommand::Pipelines(args))),
        Command::Stop(args) => Ok(serve::remote(serve::RemoteCommand::Stop(args))),
        Command::Resume(args) => Ok(serve::remote(serve::RemoteCommand::Resume(args))),
        Command::Task(args) => Ok(serve::remote(serve::RemoteCommand::Task(args))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
