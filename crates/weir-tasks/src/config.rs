//! [`AgentsConfig`]: the `agents:` file, parsed and validated with file, line and key in every
//! error.

use crate::agent::{Agent, CommandAgent, HealthProbe, HttpAgent};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir_resilience::PolicyConfig;

/// The agents file:
///
/// ```yaml
/// results_ttl: 1h          # how long finished tasks are kept (default 1h)
/// aging: 10s               # priority p waits as if submitted p × aging earlier (default 10s)
/// default_timeout: 60s     # attempt limit when neither task nor policy sets one (default 60s)
/// agents:
///   - name: echo
///     kind: command        # or http
///     capabilities: [echo]
///     concurrency: 4
///     command: { program: cat }
///     policy: { retries: 2, timeout: 10s, circuit_breaker: { failure_threshold: 5, reset_timeout: 5s } }
///     health: { command: [true], interval: 5s }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// How long finished tasks (results and errors) are kept. Default 1h.
    #[serde(default = "default_ttl", with = "humantime_serde_compat")]
    pub results_ttl: Duration,
    /// The aging step. Default 10s.
    #[serde(default = "default_aging", with = "humantime_serde_compat")]
    pub aging: Duration,
    /// Attempt timeout when neither the task nor the agent's policy sets one. Default 60s.
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub default_timeout: Duration,
    /// Where tasks are kept: the embedded store (default) or Redis, shared by several servers.
    #[serde(default)]
    pub store: StoreConfig,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// The file it came from (for errors).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Builds the agents of `kind: pipeline` (set by the program that runs pipelines:
    /// `weir serve` sets `weir_pipeline`'s). Without one, such agents are refused at open.
    #[serde(skip)]
    pub pipelines: Option<PipelineBuilder>,
}

/// What a `kind: pipeline` agent is made of: its name and its pipeline's YAML text.
#[derive(Debug, Clone)]
pub struct PipelineAgentSource {
    /// The agent's name.
    pub agent: String,
    /// The pipeline YAML (a file's text, or the inline block).
    pub text: String,
    /// The name errors give: the pipeline file, or `FILE: agents[i].pipeline` for an inline
    /// pipeline.
    pub file: String,
    /// The directory relative paths in the pipeline are resolved against.
    pub dir: Option<PathBuf>,
    /// Whether the pipeline is inline in the agents file (errors then name the agents file and
    /// `agents[i].pipeline`, and count lines within the block).
    pub inline: bool,
}

/// Builds a `kind: pipeline` agent; the error names the file, line and key.
pub type BuildPipelineAgent =
    dyn Fn(&PipelineAgentSource) -> Result<Arc<dyn Agent>, String> + Send + Sync;

/// The builder of pipeline agents an [`AgentsConfig`] carries.
#[derive(Clone)]
pub struct PipelineBuilder(pub Arc<BuildPipelineAgent>);

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipelineBuilder")
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            results_ttl: default_ttl(),
            aging: default_aging(),
            default_timeout: default_timeout(),
            store: StoreConfig::default(),
            agents: Vec::new(),
            file: None,
            pipelines: None,
        }
    }
}

/// Which task store: `fjall` (embedded, in the data directory; one server) or `redis` (shared
/// by every server with the same `url` and `prefix`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreType {
    /// The embedded store, `DATA_DIR/tasks`.
    #[default]
    Fjall,
    /// Redis Streams and hashes, for several servers sharing one queue.
    Redis,
}

/// `store:` of the agents file:
///
/// ```yaml
/// store:
///   type: redis                    # fjall (default) | redis
///   url: redis://127.0.0.1:6390    # or rediss:// (TLS), with ca_file
///   prefix: weir:tasks             # every key starts with it (default weir:tasks)
///   password_env: REDIS_PASSWORD   # the password, from this environment variable
///   claim_timeout: 30s             # a dead server's tasks are taken over after this
///   consumer: server-a             # this server's consumer name (default: unique per process)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store.
    #[serde(rename = "type", default)]
    pub store_type: StoreType,
    /// The Redis URL (`type: redis`).
    pub url: Option<String>,
    /// The key prefix (`type: redis`). Default `weir:tasks`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The environment variable holding the Redis password (`type: redis`).
    pub password_env: Option<String>,
    /// With a `rediss://` URL: trust only the CA certificates of this PEM file (relative to
    /// the agents file).
    pub ca_file: Option<PathBuf>,
    /// How long a task's entry may go unrenewed before another server takes it over. Default
    /// 30s. Servers renew every third of it.
    #[serde(default = "default_claim_timeout", with = "humantime_serde_compat")]
    pub claim_timeout: Duration,
    /// This server's consumer name in the group; default `weir-PID-RANDOM`, new per process.
    pub consumer: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_type: StoreType::Fjall,
            url: None,
            prefix: default_prefix(),
            password_env: None,
            ca_file: None,
            claim_timeout: default_claim_timeout(),
            consumer: None,
        }
    }
}

fn default_prefix() -> String {
    "weir:tasks".into()
}
fn default_claim_timeout() -> Duration {
    Duration::from_secs(30)
}

impl StoreConfig {
    /// The Redis store at `url` with the defaults.
    pub fn redis(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        StoreConfig {
            store_type: StoreType::Redis,
            url: Some(url.into()),
            prefix: prefix.into(),
            ..StoreConfig::default()
        }
    }

    /// The URL to connect to, with the password of `password_env` in it.
    pub(crate) fn redis_url(&self) -> Result<String, String> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| "url: expected a redis:// or rediss:// URL".to_string())?;
        let Some(var) = &self.password_env else {
            return Ok(url);
        };
        let password = std::env::var(var)
            .map_err(|_| format!("password_env: the environment variable {var} is not set"))?;
        with_password(&url, &password)
    }

    /// The consumer name of this server.
    pub(crate) fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{:08x}", std::process::id(), fastrand::u32(..)))
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.store_type {
            StoreType::Fjall => {
                for (key, set) in [
                    ("url", self.url.is_some()),
                    ("password_env", self.password_env.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("consumer", self.consumer.is_some()),
                    ("prefix", self.prefix != default_prefix()),
                    (
                        "claim_timeout",
                        self.claim_timeout != default_claim_timeout(),
                    ),
                ] {
                    if set {
                        return Err((key, "only for `type: redis`".into()));
                    }
                }
            }
            StoreType::Redis => {
                match &self.url {
                    Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {}
                    Some(u) => {
                        return Err((
                            "url",
                            format!("expected a redis:// or rediss:// URL, found {u:?}"),
                        ));
                    }
                    None => return Err(("url", "`type: redis` needs a `url`".into())),
                }
                if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
                    return Err((
                        "prefix",
                        "expected a non-empty prefix without spaces".into(),
                    ));
                }
                if self.claim_timeout < Duration::from_millis(100) {
                    return Err(("claim_timeout", "expected at least 100ms".into()));
                }
                if self.consumer.as_ref().is_some_and(|c| c.trim().is_empty()) {
                    return Err(("consumer", "expected a non-empty name".into()));
                }
            }
        }
        Ok(())
    }
}

/// `url` with `password` in it (percent-encoded).
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("url: expected a redis:// URL, found {url:?}"))?;
    if rest.contains('@') {
        return Err(
            "password_env: the URL already has credentials; give the password in one place".into(),
        );
    }
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Ok(format!("{scheme}://:{encoded}@{rest}"))
}

fn default_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_aging() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_concurrency() -> usize {
    1
}
fn default_max_output() -> usize {
    1 << 20
}
fn default_max_stderr() -> usize {
    64 << 10
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration such as \"5s\", found {text:?} ({e})"
            ))
        })
    }
}

/// One agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Unique name.
    pub name: String,
    /// `http` or `command`.
    pub kind: AgentKind,
    /// The actions it serves.
    pub capabilities: Vec<String>,
    /// Most attempts in flight on it. Default 1.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// For `kind: http`.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// For `kind: command`.
    #[serde(default)]
    pub command: Option<CommandConfig>,
    /// For `kind: pipeline`: `{ file: PATH }` (relative to the agents file), or the pipeline
    /// inline (`{ steps: [...], fields: ..., settings: ... }`).
    #[serde(default)]
    pub pipeline: Option<serde_yaml::Value>,
    /// Retries (the task's attempt budget is 1 + retries), backoff between attempts, attempt
    /// timeout, rate limit and circuit breaker: the same block as `enrich_http`.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Health check.
    #[serde(default)]
    pub health: Option<HealthConfig>,
}

/// The kind of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// POST to a URL.
    Http,
    /// Run a program.
    Command,
    /// A Weir pipeline whose source is the agent's tasks and whose output is their results.
    Pipeline,
}

/// `http: { url, max_response, ca_file }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL tasks are posted to.
    pub url: String,
    /// Largest response body accepted. Default 1 MiB.
    #[serde(default = "default_max_output")]
    pub max_response: usize,
    /// For an `https://` URL: a PEM file of the CA certificates to trust instead of the
    /// system's roots (relative to the agents file). Refused with an `http://` URL.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `command: { program, args, env, cwd, max_stdout, max_stderr }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The program (no shell).
    pub program: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables passed through from Weir's environment (all others are cleared).
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Largest stdout accepted. Default 1 MiB.
    #[serde(default = "default_max_output")]
    pub max_stdout: usize,
    /// Largest stderr kept for the error message. Default 64 KiB.
    #[serde(default = "default_max_stderr")]
    pub max_stderr: usize,
}

/// `health: { url | command, interval, timeout, unhealthy_after }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// GET this URL; a 2xx is healthy.
    #[serde(default)]
    pub url: Option<String>,
    /// Run this program with these arguments (no shell); exit 0 is healthy.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Time between checks. Default 5s.
    #[serde(default = "default_interval", with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Limit of one check. Default 2s.
    #[serde(default = "default_check_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Consecutive failed checks that take the agent out of routing. Default 1. One passing
    /// check puts it back.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_unhealthy_after() -> u32 {
    1
}

/// A bad agents file: where, which key, what was expected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct AgentsConfigError {
    /// The file (or `<inline>`).
    pub file: String,
    /// The line (1-based; 0 when unknown).
    pub line: usize,
    /// The key, e.g. `agents[0].concurrency`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// An agent ready for the service: its name, capabilities, concurrency, implementation,
/// policy and health probe.
pub struct AgentSpec {
    pub(crate) name: String,
    pub(crate) capabilities: HashSet<String>,
    pub(crate) concurrency: usize,
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) policy: PolicyConfig,
    pub(crate) health: Option<(HealthProbe, HealthConfig)>,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.name)
            .field("capabilities", &self.capabilities)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl AgentSpec {
    /// An in-process agent (the [`Agent`] trait), with the default policy (3 retries, no
    /// breaker).
    pub fn in_process(
        name: impl Into<String>,
        capabilities: impl IntoIterator<Item = impl Into<String>>,
        concurrency: usize,
        agent: Arc<dyn Agent>,
    ) -> Self {
        AgentSpec {
            name: name.into(),
            capabilities: capabilities.into_iter().map(Into::into).collect(),
            concurrency: concurrency.max(1),
            agent,
            policy: PolicyConfig::default(),
            health: None,
        }
    }

    /// Replaces the policy (validated when the service opens).
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }
}

impl AgentsConfig {
    /// Reads and validates an agents file.
    pub fn from_file(path: &Path) -> Result<Self, AgentsConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentsConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "agents".into(),
            message: format!("cannot read the agents file: {e}"),
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        if let Some(ca) = &config.store.ca_file
            && ca.is_relative()
            && let Some(dir) = path.parent()
        {
            config.store.ca_file = Some(dir.join(ca));
        }
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates agents YAML; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, AgentsConfigError> {
        let config: AgentsConfig = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            let message = e.to_string();
            // yaml_serde prefixes the path of the failing key: `agents[0].concurrency: ...`.
            let (key, message) = match message.split_once(": ") {
                Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
                _ => ("agents".to_string(), message),
            };
            AgentsConfigError {
                file: file.to_string(),
                line,
                key,
                message,
            }
        })?;
        config.validate(text, file)?;
        Ok(config)
    }

    fn validate(&self, text: &str, file: &str) -> Result<(), AgentsConfigError> {
        let mut names = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let err = |key: &str, message: String| AgentsConfigError {
                file: file.to_string(),
                line: line_of(text, &a.name, key),
                key: format!("agents[{i}].{key}"),
                message,
            };
            if a.name.trim().is_empty() {
                return Err(err("name", "expected a non-empty name".into()));
            }
            if !names.insert(a.name.clone()) {
                return Err(err(
                    "name",
                    format!("agent {:?} is declared twice; names must be unique", a.name),
                ));
            }
            if a.capabilities.is_empty() || a.capabilities.iter().any(|c| c.trim().is_empty()) {
                return Err(err(
                    "capabilities",
                    "expected a non-empty list of action names".into(),
                ));
            }
            if a.concurrency == 0 {
                return Err(err("concurrency", "expected at least 1, found 0".into()));
            }
            match a.kind {
                AgentKind::Http => {
                    let Some(http) = &a.http else {
                        return Err(err(
                            "http",
                            "kind http needs an `http: { url }` block".into(),
                        ));
                    };
                    if a.command.is_some() {
                        return Err(err("command", "only for kind command".into()));
                    }
                    if a.pipeline.is_some() {
                        return Err(err("pipeline", "only for kind pipeline".into()));
                    }
                    if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                        return Err(err(
                            "http.url",
                            format!("expected an http:// or https:// URL, found {:?}", http.url),
                        ));
                    }
                    if http.ca_file.is_some() && !http.url.starts_with("https://") {
                        return Err(err(
                            "http.ca_file",
                            format!(
                                "a CA file applies to https:// URLs only, and the URL is {:?}",
                                http.url
                            ),
                        ));
                    }
                }
                AgentKind::Pipeline => {
                    let Some(pipeline) = &a.pipeline else {
                        return Err(err(
                            "pipeline",
                            "kind pipeline needs a `pipeline:` block: `{ file: PATH }` or the pipeline inline (`{ steps: [...] }`)".into(),
                        ));
                    };
                    if a.http.is_some() {
                        return Err(err("http", "only for kind http".into()));
                    }
                    if a.command.is_some() {
                        return Err(err("command", "only for kind command".into()));
                    }
                    let serde_yaml::Value::Mapping(map) = pipeline else {
                        return Err(err(
                            "pipeline",
                            "expected a map: `{ file: PATH }` or the pipeline inline".into(),
                        ));
                    };
                    if let Some(file) = map.get("file") {
                        if map.len() > 1 {
                            return Err(err(
                                "pipeline.file",
                                "`file` names the whole pipeline: no other keys beside it".into(),
                            ));
                        }
                        if !matches!(file, serde_yaml::Value::String(f) if !f.is_empty()) {
                            return Err(err("pipeline.file", "expected a file path".into()));
                        }
                    }
                }
                AgentKind::Command => {
                    let Some(command) = &a.command else {
                        return Err(err(
                            "command",
                            "kind command needs a `command: { program }` block".into(),
                        ));
                    };
                    if a.http.is_some() {
                        return Err(err("http", "only for kind http".into()));
                    }
                    if a.pipeline.is_some() {
                        return Err(err("pipeline", "only for kind pipeline".into()));
                    }
                    if command.program.as_os_str().is_empty() {
                        return Err(err("command.program", "expected a program".into()));
                    }
                }
            }
            validate_policy(&a.policy).map_err(|(key, message)| err(&key, message))?;
            if let Some(h) = &a.health {
                match (&h.url, &h.command) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(err(
                            "health",
                            "expected exactly one of `url` or `command`".into(),
                        ));
                    }
                    (_, Some(c)) if c.is_empty() => {
                        return Err(err("health.command", "expected a program".into()));
                    }
                    _ => {}
                }
                if h.interval.is_zero() || h.timeout.is_zero() || h.unhealthy_after == 0 {
                    return Err(err(
                        "health",
                        "interval and timeout must be longer than zero, unhealthy_after at least 1"
                            .into(),
                    ));
                }
            }
        }
        self.store
            .validate()
            .map_err(|(key, message)| AgentsConfigError {
                file: file.to_string(),
                line: line_of(text, "", &format!("store.{key}")),
                key: format!("store.{key}"),
                message,
            })?;
        for (key, d) in [
            ("results_ttl", self.results_ttl),
            ("default_timeout", self.default_timeout),
        ] {
            if d.is_zero() {
                return Err(AgentsConfigError {
                    file: file.to_string(),
                    line: line_of(text, "", key),
                    key: key.into(),
                    message: "expected a duration longer than zero".into(),
                });
            }
        }
        Ok(())
    }

    /// The agents, built (HTTP clients, command runners, pipelines, probes). A `kind:
    /// pipeline` agent needs [`pipelines`](Self::pipelines); its pipeline's errors name the
    /// file, line and key.
    pub fn specs(&self) -> Result<Vec<AgentSpec>, AgentsConfigError> {
        let file = self
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<inline>".into());
        let dir = self
            .file
            .as_ref()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf);
        let mut specs = Vec::with_capacity(self.agents.len());
        for (i, a) in self.agents.iter().enumerate() {
            // `ca_file` relative to the agents file; the one client of the agent, also its
            // health check's.
            let client = match &a.http {
                Some(h) => {
                    let ca_file = h.ca_file.as_ref().map(|f| match &dir {
                        Some(d) if f.is_relative() => d.join(f),
                        _ => f.clone(),
                    });
                    let err = |message: String| AgentsConfigError {
                        file: file.clone(),
                        line: 0,
                        key: format!("agents[{i}].http.ca_file"),
                        message,
                    };
                    weir_connectors::tls::client_builder(ca_file.as_deref())
                        .map_err(|e| err(e.to_string()))?
                        .build()
                        .map_err(|e| err(format!("cannot build an HTTP client: {e}")))?
                }
                None => crate::http_client(),
            };
            let agent: Arc<dyn Agent> = match (a.kind, &a.http, &a.command) {
                (AgentKind::Http, Some(h), _) => Arc::new(HttpAgent::new(
                    &a.name,
                    &h.url,
                    h.max_response,
                    client.clone(),
                )),
                (AgentKind::Command, _, Some(c)) => Arc::new(CommandAgent {
                    program: c.program.clone(),
                    args: c.args.clone(),
                    env: c.env.clone(),
                    cwd: c.cwd.clone(),
                    max_stdout: c.max_stdout,
                    max_stderr: c.max_stderr,
                }),
                (AgentKind::Pipeline, _, _) => {
                    let source = self.pipeline_source(i, &file, dir.as_deref())?;
                    let err = |message: String| AgentsConfigError {
                        file: file.clone(),
                        line: 0,
                        key: format!("agents[{i}].pipeline"),
                        message,
                    };
                    let Some(builder) = &self.pipelines else {
                        return Err(err(
                            "pipeline agents run inside `weir serve` (no pipeline runtime here)"
                                .into(),
                        ));
                    };
                    (builder.0)(&source).map_err(err)?
                }
                // `validate` guarantees the block of the kind.
                _ => Arc::new(Unconfigured),
            };
            let health = a.health.as_ref().map(|h| {
                let probe = match (&h.url, &h.command) {
                    (Some(url), _) => HealthProbe::Http(url.clone(), client.clone()),
                    (_, command) => HealthProbe::Command(command.clone().unwrap_or_default()),
                };
                (probe, h.clone())
            });
            specs.push(AgentSpec {
                name: a.name.clone(),
                capabilities: a.capabilities.iter().cloned().collect(),
                concurrency: a.concurrency,
                agent,
                policy: a.policy.clone(),
                health,
            });
        }
        Ok(specs)
    }

    /// The pipeline of agent `i` (`kind: pipeline`): its file's text, or the inline block.
    fn pipeline_source(
        &self,
        i: usize,
        file: &str,
        dir: Option<&Path>,
    ) -> Result<PipelineAgentSource, AgentsConfigError> {
        let a = &self.agents[i];
        let err = |key: &str, message: String| AgentsConfigError {
            file: file.to_string(),
            line: 0,
            key: format!("agents[{i}].{key}"),
            message,
        };
        let block = a
            .pipeline
            .as_ref()
            .ok_or_else(|| err("pipeline", "kind pipeline needs a `pipeline:` block".into()))?;
        if let Some(serde_yaml::Value::String(path)) = block.get("file") {
            let path = PathBuf::from(path);
            let path = match dir {
                Some(d) if path.is_relative() => d.join(path),
                _ => path,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "pipeline.file",
                    format!("cannot read the pipeline {}: {e}", path.display()),
                )
            })?;
            return Ok(PipelineAgentSource {
                agent: a.name.clone(),
                text,
                file: path.display().to_string(),
                dir: path.parent().map(Path::to_path_buf),
                inline: false,
            });
        }
        let text = serde_yaml::to_string(block)
            .map_err(|e| err("pipeline", format!("cannot read the inline pipeline: {e}")))?;
        Ok(PipelineAgentSource {
            agent: a.name.clone(),
            text,
            file: format!("{file}: agents[{i}].pipeline"),
            dir: dir.map(Path::to_path_buf),
            inline: true,
        })
    }
}

struct Unconfigured;
impl Agent for Unconfigured {
    fn run<'a>(
        &'a self,
        _task: &'a crate::TaskInput,
    ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, crate::AgentError>> {
        Box::pin(async { Err(crate::AgentError::Failed("agent has no kind block".into())) })
    }
}

/// Checks a policy for agents: everything `PolicyConfig::validate` checks, and the keys that
/// have no meaning for an agent are refused rather than ignored.
pub(crate) fn validate_policy(policy: &PolicyConfig) -> Result<(), (String, String)> {
    if policy.concurrency.is_some() {
        return Err((
            "policy.concurrency".into(),
            "not used for agents: set the agent's `concurrency`".into(),
        ));
    }
    if policy.cache.is_some() {
        return Err((
            "policy.cache".into(),
            "not supported for agents (every task runs)".into(),
        ));
    }
    if policy.rate_limit.as_ref().is_some_and(|r| r.per_key) {
        return Err((
            "policy.rate_limit.per_key".into(),
            "not supported for agents: the limit is per agent".into(),
        ));
    }
    if policy.overall_timeout.is_some() {
        return Err((
            "policy.overall_timeout".into(),
            "not supported for agents: `timeout` limits each attempt".into(),
        ));
    }
    policy.validate().map_err(|e| {
        let text = e.to_string();
        ("policy".to_string(), text)
    })
}

/// The line of `key:` inside the entry of agent `name` (or at the top level when `name` is
/// empty); 0 when not found.
fn line_of(text: &str, name: &str, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let start = if name.is_empty() {
        0
    } else {
        match lines.iter().position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix("name:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == name)
                .unwrap_or(false)
        }) {
            Some(p) => {
                // The entry starts at the nearest `- ` line at or before the name.
                (0..=p)
                    .rev()
                    .find(|&i| lines[i].trim_start().starts_with("- "))
                    .unwrap_or(p)
            }
            None => return 0,
        }
    };
    // Each segment of the key path is looked for from the line of the previous one.
    let mut at = start;
    for segment in key.split('.') {
        let found = lines.iter().enumerate().skip(at).find(|(i, l)| {
            if *i > start && !name.is_empty() && l.trim_start().starts_with("- name:") {
                return false;
            }
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.starts_with(&format!("{segment}:"))
                || t.contains(&format!(" {segment}:"))
                || t.contains(&format!("{{{segment}:"))
        });
        match found {
            Some((i, _)) => at = i,
            None => break,
        }
    }
    at + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
agents:
  - name: echo
    kind: command
    capabilities: [echo]
    concurrency: 2
    command: { program: cat }
";

    #[test]
    fn parses_a_command_agent_with_defaults() {
        let c = AgentsConfig::parse(GOOD, "a.yaml").unwrap();
        assert_eq!(c.agents.len(), 1);
        assert_eq!(c.agents[0].concurrency, 2);
        assert_eq!(c.results_ttl, Duration::from_secs(3600));
        assert_eq!(c.agents[0].command.as_ref().unwrap().max_stdout, 1 << 20);
    }

    #[test]
    fn the_store_block_is_checked_and_its_password_comes_from_the_environment() {
        let c = AgentsConfig::parse(GOOD, "a.yaml").unwrap();
        assert_eq!(c.store.store_type, StoreType::Fjall);
        let yaml = format!(
            "store:\n  type: redis\n  url: redis://127.0.0.1:6390/2\n  prefix: q\n  claim_timeout: 2s\n  password_env: WEIR_TEST_STORE_PW\n{GOOD}"
        );
        let c = AgentsConfig::parse(&yaml, "a.yaml").unwrap();
        assert_eq!(c.store.store_type, StoreType::Redis);
        assert_eq!(c.store.claim_timeout, Duration::from_secs(2));
        assert_eq!(c.store.prefix, "q");
        let e = c.store.redis_url().unwrap_err();
        assert!(e.contains("WEIR_TEST_STORE_PW is not set"), "{e}");
        assert_eq!(
            with_password("redis://127.0.0.1:6390/2", "p@ss w").unwrap(),
            "redis://:p%40ss%20w@127.0.0.1:6390/2"
        );
        assert!(with_password("redis://u:x@h:1", "p").is_err());
        let bad = [
            ("store:\n  type: redis\n", "store.url", "needs a `url`"),
            (
                "store:\n  type: redis\n  url: http://x\n",
                "store.url",
                "redis://",
            ),
            (
                "store:\n  url: redis://x\n",
                "store.url",
                "only for `type: redis`",
            ),
            (
                "store:\n  type: redis\n  url: redis://x\n  claim_timeout: 1ms\n",
                "store.claim_timeout",
                "at least 100ms",
            ),
            (
                "store:\n  type: memcached\n",
                "store.type",
                "unknown variant",
            ),
            (
                "store:\n  type: redis\n  urls: redis://x\n",
                "store",
                "urls",
            ),
        ];
        for (store, key, message) in bad {
            let e = AgentsConfig::parse(&format!("{store}{GOOD}"), "a.yaml").unwrap_err();
            assert!(e.key.starts_with(key), "{store}: {e}");
            assert!(e.to_string().contains(message), "{store}: {e}");
            assert!(e.line >= 1, "{store}: {e}");
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad = GOOD.replace("concurrency: 2", "concurrency: 0");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (5, "agents[0].concurrency"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("a.yaml:5: agents[0].concurrency:"),
            "{e}"
        );

        let bad = GOOD.replace("concurrency: 2", "concurency: 2");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.to_string().contains("concurency"), "{e}");

        let bad = GOOD.replace("concurrency: 2", "concurrency: many");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (5, "agents[0].concurrency"),
            "{e}"
        );

        let bad = GOOD.replace("kind: command", "kind: http");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(e.key, "agents[0].http", "{e}");

        let bad = format!("{GOOD}    policy: {{ concurrency: 3 }}\n");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (7, "agents[0].policy.concurrency"),
            "{e}"
        );

        let bad = format!("{GOOD}    policy: {{ retries: -1 }}\n");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(e.line, 7, "{e}");

        let bad = GOOD.replace("kind: command", "kind: pipeline");
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(e.key, "agents[0].pipeline", "{e}");
        let bad = GOOD.replace("kind: command", "kind: pipeline").replace(
            "command: { program: cat }",
            "pipeline: { file: p.yaml, steps: [] }",
        );
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert_eq!(e.key, "agents[0].pipeline.file", "{e}");
        let inline = GOOD
            .replace("kind: command", "kind: pipeline")
            .replace("command: { program: cat }", "pipeline: { steps: [] }");
        let c = AgentsConfig::parse(&inline, "a.yaml").unwrap();
        let e = c.specs().unwrap_err();
        assert!(
            e.key == "agents[0].pipeline" && e.message.contains("weir serve"),
            "{e}"
        );

        let bad = format!(
            "{GOOD}  - name: echo\n    kind: command\n    capabilities: [x]\n    command: {{ program: cat }}\n"
        );
        let e = AgentsConfig::parse(&bad, "a.yaml").unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
    }
}
