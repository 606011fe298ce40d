//! `weir schema register|check|list|show`: the schema registry from the command line.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weir_schema::{ErrorClass, Registry, VersionSpec};

#[derive(Args)]
pub struct SchemaArgs {
    /// The registry directory.
    #[arg(long, default_value = "schemas", env = "WEIR_SCHEMAS")]
    registry: PathBuf,
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Register a schema file as the next version of its schema (refused if incompatible).
    Register { file: PathBuf },
    /// Check a schema file against the registry without registering it.
    Check { file: PathBuf },
    /// List the registered schemas and their versions.
    List,
    /// Print a registered schema (latest version unless given: `3` or `v3`).
    Show {
        name: String,
        #[arg(default_value = "latest")]
        version: String,
    },
}

fn exit_for(e: &weir_schema::Error) -> ExitCode {
    eprintln!("error: {e}");
    match e.class() {
        ErrorClass::Validation | ErrorClass::Schema => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

pub fn run(args: SchemaArgs) -> ExitCode {
    // Commands that only read do not create the directory: a mistyped `--registry` should say
    // so, not list an empty registry.
    let opened = match args.command {
        SchemaCommand::List | SchemaCommand::Show { .. } => Registry::open_existing(&args.registry),
        _ => Registry::open(&args.registry),
    };
    let registry = match opened {
        Ok(r) => r,
        Err(e) => return exit_for(&e),
    };
    let printed = match args.command {
        SchemaCommand::Register { file } => registry.register_file(&file).map(|r| r.to_string()),
        SchemaCommand::Check { file } => registry.check_file(&file).map(|r| r.to_string()),
        SchemaCommand::List => registry.list().map(|l| l.to_string()),
        SchemaCommand::Show { name, version } => {
            let version: VersionSpec = match version.parse() {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            registry.get(&name, version).map(|s| s.to_string())
        }
    };
    match printed {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => exit_for(&e),
    }
}
