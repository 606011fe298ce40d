//! The `weir` command line.

mod bench;
mod checkpoints;
mod run;
mod schema;
mod serve;
mod signals;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: stream processing in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Tasks on a server (not yet supported).
    Task(serve::TaskArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => Ok(run::run(args)),
        Command::Validate(args) => Ok(run::validate(args)),
        Command::Schema(args) => Ok(schema::run(args)),
        Command::Checkpoints(args) => Ok(checkpoints::run(args)),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => Ok(serve::serve(args)),
        Command::Submit(args) => Ok(serve::remote(serve::RemoteCommand::Submit(args))),
        Command::Pipelines(args) => Ok(serve::remote(serve::RemoteCommand::Pipelines(args))),
        Command::Stop(args) => Ok(serve::remote(serve::RemoteCommand::Stop(args))),
        Command::Resume(args) => Ok(serve::remote(serve::RemoteCommand::Resume(args))),
        Command::Task(args) => Ok(serve::task(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
