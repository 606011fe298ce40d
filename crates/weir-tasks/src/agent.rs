//! Agents: the [`Agent`] trait for in-process agents, and the `http` and `command` kinds.

use crate::error::AgentError;
use futures::future::BoxFuture;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What an agent gets for one attempt.
#[derive(Debug, Clone)]
pub struct TaskInput {
    /// The task's id.
    pub task_id: String,
    /// Its action.
    pub action: String,
    /// Its data.
    pub data: Value,
    /// The attempt number, from 1.
    pub attempt: u32,
}

/// An agent: runs one task attempt and returns its result. The dispatcher bounds the calls in
/// flight by the agent's `concurrency`, applies the timeout (dropping the future) and retries.
///
/// ```
/// use futures::future::BoxFuture;
/// use weir_tasks::{Agent, AgentError, TaskInput};
///
/// struct Upper;
/// impl Agent for Upper {
///     fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<serde_json::Value, AgentError>> {
///         Box::pin(async move {
///             let text = task.data.as_str().ok_or_else(|| AgentError::Failed("expected a string".into()))?;
///             Ok(serde_json::Value::String(text.to_uppercase()))
///         })
///     }
/// }
/// ```
pub trait Agent: Send + Sync + 'static {
    /// Runs one attempt.
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>>;
}

/// `kind: http`: POSTs the task's data as JSON to `url`; a 2xx response's body (JSON) is the
/// result. The task id and action go in the headers `x-weir-task-id` and `x-weir-action`.
/// A TLS failure (the service's certificate not trusted) fails the attempt with an error that
/// says so and names the agent.
#[derive(Debug, Clone)]
pub struct HttpAgent {
    name: String,
    url: String,
    client: reqwest::Client,
    max_response: usize,
}

impl HttpAgent {
    /// The agent `name` posting to `url` with `client` (build it from
    /// `weir_connectors::tls::client_builder`, which trusts the agent's `ca_file`), reading
    /// responses up to `max_response` bytes.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        max_response: usize,
        client: reqwest::Client,
    ) -> Self {
        HttpAgent {
            name: name.into(),
            url: url.into(),
            client,
            max_response,
        }
    }

    /// A failed request as the attempt's error: a TLS failure says so.
    fn unavailable(&self, e: reqwest::Error) -> AgentError {
        match weir_connectors::tls::tls_failure(&e) {
            Some(reason) => AgentError::Unavailable(format!(
                "TLS with agent `{}` at {} failed: {reason} (check the agent's `http.ca_file` and its certificate)",
                self.name, self.url
            )),
            None => AgentError::Unavailable(format!("POST {}: {e}", self.url)),
        }
    }
}

impl Agent for HttpAgent {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&task.data)
                .map_err(|e| AgentError::BadOutput(format!("task data: {e}")))?;
            let mut response = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-weir-task-id", &task.task_id)
                .header("x-weir-action", &task.action)
                .body(body)
                .send()
                .await
                .map_err(|e| self.unavailable(e))?;
            let status = response.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| self.unavailable(e))? {
                if bytes.len() + chunk.len() > self.max_response {
                    return Err(AgentError::BadOutput(format!(
                        "POST {}: response larger than {} bytes",
                        self.url, self.max_response
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                return Err(AgentError::Failed(format!(
                    "POST {}: HTTP {status}: {text}",
                    self.url
                )));
            }
            serde_json::from_slice(&bytes).map_err(|e| {
                AgentError::BadOutput(format!("POST {}: response is not JSON: {e}", self.url))
            })
        })
    }
}

/// `kind: command`: runs `program` with `args` (no shell) once per attempt. The task's data is
/// written as JSON to its stdin, and its stdout (JSON) is the result; `WEIR_TASK_ID` and
/// `WEIR_TASK_ACTION` are set, and otherwise only the variables in `env` pass through. The
/// process runs in its own process group; on timeout or cancellation the whole group is killed
/// and reaped. A non-zero exit fails the attempt with the end of stderr in the error.
#[derive(Debug, Clone)]
pub struct CommandAgent {
    /// The program (looked up in `PATH` when it has no slash).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables passed through from Weir's environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Largest stdout accepted.
    pub max_stdout: usize,
    /// Largest stderr kept (the rest is read and dropped).
    pub max_stderr: usize,
}

/// Kills a process group when dropped (a timed-out or cancelled attempt drops it).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take()
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

async fn read_limited<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut overflow = false;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = limit.saturating_sub(kept.len());
        if n > room {
            overflow = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

impl CommandAgent {
    /// Runs the program once for `task`.
    pub async fn run_once(&self, task: &TaskInput) -> Result<Value, AgentError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for key in &self.env {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command
            .env("WEIR_TASK_ID", &task.task_id)
            .env("WEIR_TASK_ACTION", &task.action);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let name = self.program.display().to_string();
        let mut child = command
            .spawn()
            .map_err(|e| AgentError::Unavailable(format!("cannot start {name}: {e}")))?;
        let guard = GroupGuard(child.id().map(|p| p as i32));
        let input = serde_json::to_vec(&task.data)
            .map_err(|e| AgentError::BadOutput(format!("task data: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading its input is not an error here.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let max_stdout = self.max_stdout;
        let max_stderr = self.max_stderr;
        let read_out = async move {
            match stdout {
                Some(s) => read_limited(s, max_stdout).await,
                None => Ok((Vec::new(), false)),
            }
        };
        let read_err = async move {
            match stderr {
                Some(s) => read_limited(s, max_stderr).await,
                None => Ok((Vec::new(), false)),
            }
        };
        let ((), out, err, status) = tokio::join!(write, read_out, read_err, child.wait());
        let status =
            status.map_err(|e| AgentError::Unavailable(format!("waiting for {name}: {e}")))?;
        // The process has exited; its group may still hold children it left behind.
        drop(guard);
        let (stdout, out_overflow) =
            out.map_err(|e| AgentError::Unavailable(format!("reading stdout of {name}: {e}")))?;
        let (stderr, _) =
            err.map_err(|e| AgentError::Unavailable(format!("reading stderr of {name}: {e}")))?;
        if !status.success() {
            let tail = String::from_utf8_lossy(&stderr);
            let tail = tail.trim();
            return Err(AgentError::Failed(format!(
                "{name} exited with {status}{}{}",
                if tail.is_empty() { "" } else { ": " },
                tail
            )));
        }
        if out_overflow {
            return Err(AgentError::BadOutput(format!(
                "{name} wrote more than {} bytes to stdout",
                self.max_stdout
            )));
        }
        serde_json::from_slice(&stdout)
            .map_err(|e| AgentError::BadOutput(format!("stdout of {name} is not JSON: {e}")))
    }
}

impl Agent for CommandAgent {
    fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<Value, AgentError>> {
        Box::pin(self.run_once(task))
    }
}

/// A health check from the `health` block.
#[derive(Debug, Clone)]
pub(crate) enum HealthProbe {
    /// GET; a 2xx is healthy.
    Http(String, reqwest::Client),
    /// Runs a program (no shell); exit 0 is healthy.
    Command(Vec<String>),
}

impl HealthProbe {
    pub async fn check(&self, timeout: Duration) -> Result<(), AgentError> {
        let probe = async {
            match self {
                HealthProbe::Http(url, client) => {
                    let r = client
                        .get(url)
                        .send()
                        .await
                        .map_err(|e| AgentError::Unavailable(format!("GET {url}: {e}")))?;
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(AgentError::Failed(format!(
                            "GET {url}: HTTP {}",
                            r.status()
                        )))
                    }
                }
                HealthProbe::Command(argv) => {
                    let Some((program, args)) = argv.split_first() else {
                        return Err(AgentError::Failed("empty health command".into()));
                    };
                    let status = tokio::process::Command::new(program)
                        .args(args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .kill_on_drop(true)
                        .status()
                        .await
                        .map_err(|e| AgentError::Unavailable(format!("{program}: {e}")))?;
                    if status.success() {
                        Ok(())
                    } else {
                        Err(AgentError::Failed(format!(
                            "{program} exited with {status}"
                        )))
                    }
                }
            }
        };
        tokio::time::timeout(timeout, probe)
            .await
            .unwrap_or(Err(AgentError::TimedOut(timeout)))
    }
}
