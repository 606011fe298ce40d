//! `weir serve` and the remote client commands (`weir submit|pipelines|stop|resume|task`).

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use weir_server::client::{ClientError, RemoteEnvironment};
use weir_server::config::{self, Flags};

#[derive(Args)]
pub struct ServeArgs {
    /// The server's configuration file (YAML); layered: defaults < file < `WEIR_*` < flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:7878; `WEIR_LISTEN`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Where pipelines, checkpoints and schemas are kept (default ./weir-data; `WEIR_DATA_DIR`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `development` (default) or `production` (`WEIR_PROFILE`).
    #[arg(long)]
    profile: Option<String>,
    /// The agents of the task queue (YAML, see docs/tasks.md; `WEIR_AGENTS`, `agents:`).
    #[arg(long, value_name = "FILE")]
    agents: Option<PathBuf>,
    /// Serve HTTPS only with this certificate chain (PEM; `tls.cert_file`, `WEIR_TLS_CERT_FILE`);
    /// needs --tls-key-file. Both are read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM; `tls.key_file`, `WEIR_TLS_KEY_FILE`).
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let flags = Flags {
        config: args.config,
        listen: args.listen,
        data_dir: args.data_dir,
        profile: args.profile,
        agents: args.agents,
        tls_cert_file: args.tls_cert_file,
        tls_key_file: args.tls_key_file,
    };
    let config = match config::load(&flags, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(crate::run::BAD_INPUT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(crate::run::RUNTIME_FAILURE);
        }
    };
    match runtime.block_on(weir_server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(weir_server::ServeError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(crate::run::BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(crate::run::RUNTIME_FAILURE)
        }
    }
}

#[derive(Args)]
pub struct Remote {
    /// The server's URL.
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:7878")]
    server: String,
    /// A bearer token.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// For an `https://` server: trust only the CA certificates of this PEM file (by default
    /// the system's roots).
    #[arg(long, env = "WEIR_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The pipeline file (YAML).
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct PipelinesArgs {
    /// Show this pipeline in detail.
    name: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct NameArgs {
    /// The pipeline's name.
    name: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(clap::Subcommand)]
enum TaskCommand {
    /// Submit a task; prints its id once it is durably queued.
    Submit {
        /// The action (routed to an agent with this capability).
        action: String,
        /// The task's input, JSON.
        #[arg(long, value_name = "JSON", default_value = "null")]
        data: String,
        /// Higher runs first (default 0).
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        priority: Option<i32>,
        /// Limit of each attempt, e.g. `30s`, `250ms`.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Run only on this agent.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// A resubmit with the same key returns the existing task.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a task (JSON): status, result, error, attempts.
    Get {
        /// The task's id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// The task's id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tasks: queued and running first, then the most recently finished.
    List {
        /// Only tasks in this status (queued, running, succeeded, failed, timed_out, cancelled).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only tasks of this action.
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// At most this many (default and most 1000).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the server's agents (JSON).
    Agents {
        #[command(flatten)]
        remote: Remote,
    },
}

/// What a remote command does.
pub enum RemoteCommand {
    Submit(SubmitArgs),
    Pipelines(PipelinesArgs),
    Stop(NameArgs),
    Resume(NameArgs),
    Task(TaskArgs),
}

pub fn remote(command: RemoteCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(crate::run::RUNTIME_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        let connect = |r: &Remote| {
            let server = r.server.clone();
            let token = r.token.clone();
            let ca_cert = r.ca_cert.clone();
            async move {
                RemoteEnvironment::connect_with_ca(&server, token.as_deref(), ca_cert.as_deref())
                    .await
            }
        };
        match command {
            RemoteCommand::Submit(args) => {
                let yaml = std::fs::read_to_string(&args.file).map_err(|e| {
                    Failure::Input(format!(
                        "{}: cannot read the file: {e}",
                        args.file.display()
                    ))
                })?;
                let remote = connect(&args.remote).await?;
                let info = remote.submit(&yaml).await?;
                println!(
                    "submitted: pipeline '{}' is {}",
                    info["name"].as_str().unwrap_or_default(),
                    info["status"].as_str().unwrap_or_default()
                );
                Ok(())
            }
            RemoteCommand::Pipelines(args) => {
                let remote = connect(&args.remote).await?;
                match &args.name {
                    Some(name) => {
                        let info = remote.pipeline(name).await?;
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&info).unwrap_or_default()
                        );
                    }
                    None => {
                        let list = remote.pipelines().await?;
                        println!("{:<32} {:<10} {:>12} {:>12}", "NAME", "STATUS", "IN", "OUT");
                        for p in list["pipelines"].as_array().into_iter().flatten() {
                            println!(
                                "{:<32} {:<10} {:>12} {:>12}",
                                p["name"].as_str().unwrap_or_default(),
                                p["status"].as_str().unwrap_or_default(),
                                p["records_in"],
                                p["records_out"]
                            );
                        }
                    }
                }
                Ok(())
            }
            RemoteCommand::Stop(args) => {
                let remote = connect(&args.remote).await?;
                let info = remote.stop(&args.name).await?;
                println!(
                    "stopped: pipeline '{}' is {}",
                    args.name,
                    info["status"].as_str().unwrap_or_default()
                );
                Ok(())
            }
            RemoteCommand::Task(args) => match args.command {
                TaskCommand::Submit {
                    action,
                    data,
                    priority,
                    timeout,
                    agent,
                    idempotency_key,
                    remote,
                } => {
                    let data: serde_json::Value = serde_json::from_str(&data)
                        .map_err(|e| Failure::Input(format!("--data: expected JSON: {e}")))?;
                    let mut task = serde_json::json!({ "action": action, "data": data });
                    if let Some(p) = priority {
                        task["priority"] = p.into();
                    }
                    if let Some(t) = timeout {
                        task["timeout"] = t.into();
                    }
                    if let Some(a) = agent {
                        task["agent"] = a.into();
                    }
                    if let Some(k) = idempotency_key {
                        task["idempotency_key"] = k.into();
                    }
                    let remote = connect(&remote).await?;
                    let accepted = remote.submit_task(&task).await?;
                    let id = accepted["task_id"].as_str().unwrap_or_default();
                    println!("{id}");
                    eprintln!(
                        "task {id}: {}",
                        accepted["status"].as_str().unwrap_or_default()
                    );
                    Ok(())
                }
                TaskCommand::Get { id, remote } => {
                    let view = connect(&remote).await?.task(&id).await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&view).unwrap_or_default()
                    );
                    Ok(())
                }
                TaskCommand::Cancel { id, remote } => {
                    let view = connect(&remote).await?.cancel_task(&id).await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&view).unwrap_or_default()
                    );
                    Ok(())
                }
                TaskCommand::List {
                    status,
                    action,
                    limit,
                    json,
                    remote,
                } => {
                    let list = connect(&remote)
                        .await?
                        .tasks(status.as_deref(), action.as_deref(), limit)
                        .await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&list).unwrap_or_default()
                        );
                        return Ok(());
                    }
                    println!(
                        "{:<32} {:<10} {:<20} {:<16} {:>8}",
                        "TASK", "STATUS", "ACTION", "AGENT", "ATTEMPTS"
                    );
                    for t in list["tasks"].as_array().into_iter().flatten() {
                        println!(
                            "{:<32} {:<10} {:<20} {:<16} {:>8}",
                            t["task_id"].as_str().unwrap_or_default(),
                            t["status"].as_str().unwrap_or_default(),
                            t["action"].as_str().unwrap_or_default(),
                            t["agent"].as_str().unwrap_or("-"),
                            t["attempts"]
                        );
                    }
                    Ok(())
                }
                TaskCommand::Agents { remote } => {
                    let agents = connect(&remote).await?.agents().await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&agents).unwrap_or_default()
                    );
                    Ok(())
                }
            },
            RemoteCommand::Resume(args) => {
                let remote = connect(&args.remote).await?;
                let info = remote.resume(&args.name).await?;
                println!(
                    "resumed: pipeline '{}' is {}",
                    args.name,
                    info["status"].as_str().unwrap_or_default()
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(crate::run::BAD_INPUT)
        }
        Err(Failure::Client(e)) => {
            eprintln!("error: {e}");
            match e {
                ClientError::CaCert(_) => ExitCode::from(crate::run::BAD_INPUT),
                ClientError::Server {
                    status: 400, body, ..
                } => {
                    if let Some(file) = body["error"]["file"].as_str() {
                        eprintln!(
                            "  at {file}{}{}",
                            body["error"]["line"]
                                .as_u64()
                                .map(|l| format!(":{l}"))
                                .unwrap_or_default(),
                            body["error"]["key"]
                                .as_str()
                                .map(|k| format!(" ({k})"))
                                .unwrap_or_default()
                        );
                    }
                    ExitCode::from(crate::run::BAD_INPUT)
                }
                _ => ExitCode::from(crate::run::RUNTIME_FAILURE),
            }
        }
    }
}

enum Failure {
    Input(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}
