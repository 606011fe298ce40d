//! The server's configuration, layered: defaults (of the profile) < file < `WEIR_*` environment
//! < command-line flags.
//!
//! The file is read with `yaml_serde` straight into typed structs that refuse unknown keys, so
//! that a bad key is reported with its file and line (the `config` crate and figment merge
//! sources into a value tree first and lose the line).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: exit 2 at start, naming the key (and file and line).
#[derive(Debug, thiserror::Error)]
#[error("{}{}", location(.file, .line), .message)]
pub struct ConfigError {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

fn location(file: &Option<String>, line: &Option<usize>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{f}:{l}: "),
        (Some(f), None) => format!("{f}: "),
        _ => String::new(),
    }
}

impl ConfigError {
    fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message: format!("{key}: {}", message.into()),
        }
    }
}

/// `development` (the default) or `production`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Development,
    Production,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "development" => Ok(Profile::Development),
            "production" => Ok(Profile::Production),
            other => Err(format!(
                "`{other}` is not a profile: expected `development` or `production`"
            )),
        }
    }
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub profile: Profile,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub auth_enabled: bool,
    /// The token signing key (`auth.key_file`, `WEIR_AUTH_KEY_FILE`): a path, never the key.
    pub auth_key_file: Option<PathBuf>,
    /// Older keys whose tokens still verify (`auth.previous_key_files`: rotation).
    pub auth_previous_key_files: Vec<PathBuf>,
    pub metrics_public: bool,
    /// Largest request body, in bytes (`limits.body_bytes`).
    pub body_limit: usize,
    /// The other input limits (`limits:`).
    pub limits: crate::limits::LimitsConfig,
    /// Alert rules and their webhook (`alerts:`); `None`: no rules.
    pub alerts: Option<crate::alerts::AlertsConfig>,
    /// Redis that ingest appends to.
    pub ingest_redis_url: String,
    /// With a `rediss://` ingest URL: the CA file to trust instead of the system's roots
    /// (`ingest.redis_ca_file`, `WEIR_INGEST_REDIS_CA_FILE`).
    pub ingest_redis_ca_file: Option<PathBuf>,
    /// schema name → stream key.
    pub ingest_streams: BTreeMap<String, String>,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `/ready`: timeout of each check and how long an answer is reused.
    pub ready_timeout: Duration,
    pub ready_cache: Duration,
    /// The agents file of the task service (`agents:`, `WEIR_AGENTS`, `--agents`); without
    /// one the service has no agents and refuses every task (400).
    pub agents: Option<PathBuf>,
    /// HTTPS only, with this certificate and key (`tls.cert_file`, `tls.key_file`).
    pub tls: Option<crate::tls::TlsFiles>,
}

impl ServerConfig {
    /// The defaults of a profile.
    pub fn defaults(profile: Profile) -> Self {
        ServerConfig {
            profile,
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("weir-data"),
            // Production implies authentication.
            auth_enabled: profile == Profile::Production,
            auth_key_file: None,
            auth_previous_key_files: Vec::new(),
            metrics_public: false,
            body_limit: 10 << 20,
            limits: crate::limits::LimitsConfig::default(),
            alerts: None,
            ingest_redis_url: "redis://127.0.0.1:6379".into(),
            ingest_redis_ca_file: None,
            ingest_streams: BTreeMap::new(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            ready_timeout: Duration::from_secs(1),
            ready_cache: Duration::from_secs(1),
            agents: None,
            tls: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    profile: Option<Profile>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    ingest: IngestFile,
    #[serde(default)]
    ready: ReadyFile,
    agents: Option<PathBuf>,
    alerts: Option<crate::alerts::AlertsFile>,
    #[serde(default)]
    tls: TlsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    enabled: Option<bool>,
    key_file: Option<PathBuf>,
    previous_key_files: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    public: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    body_bytes: Option<usize>,
    ingest_records: Option<usize>,
    record_bytes: Option<usize>,
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    tls_handshakes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestFile {
    redis_url: Option<String>,
    redis_ca_file: Option<PathBuf>,
    streams: Option<BTreeMap<String, String>>,
    idempotency_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyFile {
    timeout: Option<String>,
    cache: Option<String>,
}

/// What the command line gives (the top layer).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub profile: Option<String>,
    pub agents: Option<PathBuf>,
    /// `--tls-cert-file`, `--tls-key-file`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// Loads the layers: defaults < `flags.config` file < `env` (`WEIR_*`) < flags.
pub fn load(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServerConfig, ConfigError> {
    let file = match &flags.config {
        Some(path) => Some((path.display().to_string(), read_file(path)?)),
        None => None,
    };
    let file_config = file.as_ref().map(|(_, f)| f);
    // The profile decides the defaults, so it is resolved first, over every layer.
    let profile = match (&flags.profile, env("WEIR_PROFILE")) {
        (Some(p), _) => p.parse().map_err(|e| ConfigError::key("--profile", e))?,
        (None, Some(p)) => p.parse().map_err(|e| ConfigError::key("WEIR_PROFILE", e))?,
        (None, None) => file_config
            .and_then(|f| f.profile)
            .unwrap_or(Profile::Development),
    };
    let mut c = ServerConfig::defaults(profile);
    // The TLS files are resolved over the layers one by one (each may come from another).
    let mut tls_cert_file = None;
    let mut tls_key_file = None;
    if let Some((name, f)) = &file {
        let at = |key: &str, message: String| ConfigError {
            file: Some(name.clone()),
            line: None,
            key: Some(key.to_string()),
            message: format!("{key}: {message}"),
        };
        if let Some(l) = &f.listen {
            c.listen = parse_addr(l).map_err(|e| at("listen", e))?;
        }
        if let Some(d) = &f.data_dir {
            c.data_dir = match Path::new(name).parent() {
                Some(dir) if d.is_relative() => dir.join(d),
                _ => d.clone(),
            };
        }
        if let Some(a) = &f.agents {
            c.agents = Some(match Path::new(name).parent() {
                Some(dir) if a.is_relative() => dir.join(a),
                _ => a.clone(),
            });
        }
        if let Some(v) = f.auth.enabled {
            c.auth_enabled = v;
        }
        // Key files relative to the config file, like `data_dir`.
        let relative = |p: &PathBuf| match Path::new(name).parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        if let Some(k) = &f.auth.key_file {
            c.auth_key_file = Some(relative(k));
        }
        if let Some(v) = &f.auth.previous_key_files {
            c.auth_previous_key_files = v.iter().map(relative).collect();
        }
        tls_cert_file = f.tls.cert_file.as_ref().map(relative);
        tls_key_file = f.tls.key_file.as_ref().map(relative);
        if let Some(v) = f.metrics.public {
            c.metrics_public = v;
        }
        if let Some(v) = f.limits.body_bytes {
            c.body_limit = v;
        }
        if let Some(v) = f.limits.ingest_records {
            c.limits.ingest_records = v;
        }
        if let Some(v) = f.limits.record_bytes {
            c.limits.record_bytes = v;
        }
        if let Some(v) = f.limits.requests_per_second {
            c.limits.requests_per_second = v;
        }
        if let Some(v) = f.limits.burst {
            c.limits.burst = v;
        }
        if let Some(v) = &f.limits.header_timeout {
            c.limits.header_timeout = duration(v).map_err(|e| at("limits.header_timeout", e))?;
        }
        if let Some(v) = f.limits.tls_handshakes {
            c.limits.tls_handshakes = v;
        }
        if let Some(v) = &f.limits.body_timeout {
            c.limits.body_timeout = duration(v).map_err(|e| at("limits.body_timeout", e))?;
        }
        if let Some(a) = &f.alerts {
            c.alerts =
                Some(crate::alerts::AlertsConfig::from_file(a).map_err(|(key, e)| at(&key, e))?);
        }
        if let Some(v) = &f.ingest.redis_url {
            // Secrets never in the configuration text: a password goes in the environment.
            if weir_connectors::config::without_credentials(v) != *v {
                return Err(at(
                    "ingest.redis_url",
                    "a user name or password in the config file is refused: set the whole URL in WEIR_INGEST_REDIS_URL (the environment) instead".into(),
                ));
            }
            c.ingest_redis_url = v.clone();
        }
        if let Some(v) = &f.ingest.redis_ca_file {
            c.ingest_redis_ca_file = Some(relative(v));
        }
        if let Some(v) = &f.ingest.streams {
            c.ingest_streams = v.clone();
        }
        if let Some(v) = &f.ingest.idempotency_ttl {
            c.idempotency_ttl = duration(v).map_err(|e| at("ingest.idempotency_ttl", e))?;
        }
        if let Some(v) = &f.ready.timeout {
            c.ready_timeout = duration(v).map_err(|e| at("ready.timeout", e))?;
        }
        if let Some(v) = &f.ready.cache {
            c.ready_cache = duration(v).map_err(|e| at("ready.cache", e))?;
        }
    }
    // Environment.
    if let Some(v) = env("WEIR_LISTEN") {
        c.listen = parse_addr(&v).map_err(|e| ConfigError::key("WEIR_LISTEN", e))?;
    }
    if let Some(v) = env("WEIR_DATA_DIR") {
        c.data_dir = PathBuf::from(v);
    }
    if let Some(v) = env("WEIR_AUTH_ENABLED") {
        c.auth_enabled = boolean(&v).map_err(|e| ConfigError::key("WEIR_AUTH_ENABLED", e))?;
    }
    if let Some(v) = env("WEIR_AUTH_KEY_FILE").filter(|v| !v.is_empty()) {
        c.auth_key_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env("WEIR_METRICS_PUBLIC") {
        c.metrics_public = boolean(&v).map_err(|e| ConfigError::key("WEIR_METRICS_PUBLIC", e))?;
    }
    if let Some(v) = env("WEIR_AGENTS") {
        c.agents = Some(PathBuf::from(v));
    }
    if let Some(v) = env("WEIR_INGEST_REDIS_URL") {
        c.ingest_redis_url = v;
    }
    if let Some(v) = env("WEIR_INGEST_REDIS_CA_FILE").filter(|v| !v.is_empty()) {
        c.ingest_redis_ca_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env("WEIR_TLS_CERT_FILE").filter(|v| !v.is_empty()) {
        tls_cert_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env("WEIR_TLS_KEY_FILE").filter(|v| !v.is_empty()) {
        tls_key_file = Some(PathBuf::from(v));
    }
    // Flags.
    if let Some(l) = &flags.listen {
        c.listen = parse_addr(l).map_err(|e| ConfigError::key("--listen", e))?;
    }
    if let Some(d) = &flags.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(a) = &flags.agents {
        c.agents = Some(a.clone());
    }
    if let Some(v) = &flags.tls_cert_file {
        tls_cert_file = Some(v.clone());
    }
    if let Some(v) = &flags.tls_key_file {
        tls_key_file = Some(v.clone());
    }
    c.tls = match (tls_cert_file, tls_key_file) {
        (Some(cert_file), Some(key_file)) => Some(crate::tls::TlsFiles {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::key(
                "tls.key_file",
                "missing: tls.cert_file is set, and HTTPS needs both the certificate and its key (tls.key_file, WEIR_TLS_KEY_FILE or --tls-key-file)",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::key(
                "tls.cert_file",
                "missing: tls.key_file is set, and HTTPS needs both the certificate and the key (tls.cert_file, WEIR_TLS_CERT_FILE or --tls-cert-file)",
            ));
        }
    };
    if c.body_limit == 0 {
        return Err(ConfigError::key("limits.body_bytes", "must be at least 1"));
    }
    for (key, value) in [
        ("limits.ingest_records", c.limits.ingest_records),
        ("limits.record_bytes", c.limits.record_bytes),
        ("limits.burst", c.limits.burst as usize),
        ("limits.tls_handshakes", c.limits.tls_handshakes),
    ] {
        if value == 0 {
            return Err(ConfigError::key(key, "must be at least 1"));
        }
    }
    let rps = c.limits.requests_per_second;
    if !(rps.is_finite() && rps >= 0.0) {
        return Err(ConfigError::key(
            "limits.requests_per_second",
            format!(
                "expected a positive number of requests per second per token (0: no limit), got {rps}"
            ),
        ));
    }
    for (key, value) in [
        ("limits.header_timeout", c.limits.header_timeout),
        ("limits.body_timeout", c.limits.body_timeout),
    ] {
        if value.is_zero() {
            return Err(ConfigError::key(key, "must be longer than zero"));
        }
    }
    // The ingest Redis's URL and CA file, as the connectors take them (no connection yet):
    // `rediss://...#insecure` and a CA file with a plain `redis://` URL are refused.
    if let Err(e) =
        weir_connectors::redis_client(&c.ingest_redis_url, c.ingest_redis_ca_file.as_deref())
    {
        let key = match &e {
            weir_connectors::ConnectorError::Config { key: "ca_file", .. } => {
                "ingest.redis_ca_file"
            }
            _ => "ingest.redis_url",
        };
        let message = match e {
            weir_connectors::ConnectorError::Config { reason, .. } => reason,
            other => other.to_string(),
        };
        return Err(ConfigError::key(key, message));
    }
    for (schema, stream) in &c.ingest_streams {
        if stream.is_empty() {
            return Err(ConfigError::key(
                &format!("ingest.streams.{schema}"),
                "the stream name must not be empty",
            ));
        }
    }
    Ok(c)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(name.clone()),
        line: None,
        key: None,
        message: format!("cannot read the file: {e}"),
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| {
        let message = e.to_string();
        // "ingest: unknown field `strems`, expected ..." → key `ingest.strems`.
        let key = message.split_once("unknown field `").map(|(prefix, rest)| {
            let field = rest.split('`').next().unwrap_or_default();
            let path = prefix
                .split_once(": ")
                .map(|(p, _)| p)
                .filter(|p| !p.contains(' '));
            match path {
                Some(p) if !p.is_empty() => format!("{p}.{field}"),
                _ => field.to_string(),
            }
        });
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ConfigError {
            file: Some(name.clone()),
            line: e.location().map(|l| l.line()),
            message: match &key {
                Some(k) => format!("{k}: {message}"),
                None => message,
            },
            key,
        }
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not a listen address: expected IP:PORT such as `127.0.0.1:7878`")
    })
}

fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "`{text}` is not a boolean: expected `true` or `false`"
        )),
    }
}

pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| t.split_at(i))
        .unwrap_or((t, "s"));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: expected e.g. `500ms`, `1s`, `24h`"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "`{text}` is not a duration: expected e.g. `500ms`, `1s`, `24h`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.yaml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn layers_defaults_file_env_flags() {
        let (_dir, path) = file("listen: 127.0.0.1:9000\ningest:\n  redis_url: redis://x:1\n");
        let mut flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let none = |_: &str| None;
        let c = load(&flags, &none).expect("load");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.ingest_redis_url, "redis://x:1");
        assert_eq!(c.ready_timeout, Duration::from_secs(1));
        let env = |k: &str| (k == "WEIR_LISTEN").then(|| "127.0.0.1:9001".to_string());
        assert_eq!(load(&flags, &env).expect("load").listen.port(), 9001);
        flags.listen = Some("127.0.0.1:9002".into());
        assert_eq!(load(&flags, &env).expect("load").listen.port(), 9002);
    }

    #[test]
    fn a_bad_key_is_named_with_file_and_line() {
        let (_dir, path) =
            file("listen: 127.0.0.1:9000\ningest:\n  redis_url: redis://x:1\n  strems: {}\n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let e = load(&flags, &|_| None).expect_err("bad key");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.key.as_deref(), Some("ingest.strems"), "{e}");
        assert!(e.to_string().contains("weir.yaml:4: ingest.strems"), "{e}");
    }

    #[test]
    fn auth_key_files_are_paths_relative_to_the_config_file() {
        let (dir, path) = file(
            "auth:\n  enabled: true\n  key_file: keys/new.key\n  previous_key_files: [keys/old.key, /abs/older.key]\n",
        );
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let c = load(&flags, &|_| None).expect("load");
        assert!(c.auth_enabled);
        assert_eq!(c.auth_key_file, Some(dir.path().join("keys/new.key")));
        assert_eq!(
            c.auth_previous_key_files,
            vec![
                dir.path().join("keys/old.key"),
                PathBuf::from("/abs/older.key")
            ]
        );
        // The key itself is not a setting: a `key:` is refused as an unknown key.
        let (_d2, bad) = file("auth:\n  key: c2VjcmV0\n");
        let e = load(
            &Flags {
                config: Some(bad),
                ..Flags::default()
            },
            &|_| None,
        )
        .expect_err("key text refused");
        assert_eq!(e.key.as_deref(), Some("auth.key"), "{e}");
    }

    #[test]
    fn tls_files_are_layered_and_come_in_pairs() {
        let (dir, path) = file("tls:\n  cert_file: tls/server.pem\n  key_file: /keys/server.key\n");
        let mut flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let tls = load(&flags, &|_| None).expect("load").tls.expect("tls");
        assert_eq!(tls.cert_file, dir.path().join("tls/server.pem"));
        assert_eq!(tls.key_file, PathBuf::from("/keys/server.key"));
        let env = |k: &str| (k == "WEIR_TLS_KEY_FILE").then(|| "/env/server.key".to_string());
        let tls = load(&flags, &env).expect("load").tls.expect("tls");
        assert_eq!(tls.key_file, PathBuf::from("/env/server.key"));
        flags.tls_key_file = Some(PathBuf::from("/flag/server.key"));
        let tls = load(&flags, &env).expect("load").tls.expect("tls");
        assert_eq!(tls.key_file, PathBuf::from("/flag/server.key"));
        // Plain HTTP by default; half a pair is refused, naming the missing key.
        assert_eq!(load(&Flags::default(), &|_| None).expect("load").tls, None);
        let cert_only = Flags {
            tls_cert_file: Some(PathBuf::from("/c.pem")),
            ..Flags::default()
        };
        let e = load(&cert_only, &|_| None).expect_err("no key");
        assert_eq!(e.key.as_deref(), Some("tls.key_file"), "{e}");
        let (_d2, bad) = file("tls:\n  cert: x.pem\n");
        let e = load(
            &Flags {
                config: Some(bad),
                ..Flags::default()
            },
            &|_| None,
        )
        .expect_err("unknown key");
        assert_eq!(e.key.as_deref(), Some("tls.cert"), "{e}");
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let c = load(&Flags::default(), &|_| None).expect("defaults");
        assert_eq!(c.body_limit, 10 << 20);
        assert_eq!(c.limits, crate::limits::LimitsConfig::default());
        let (_dir, path) = file(
            "limits:\n  body_bytes: 100\n  ingest_records: 3\n  record_bytes: 50\n  requests_per_second: 2.5\n  burst: 4\n  header_timeout: 2s\n  body_timeout: 500ms\n",
        );
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let c = load(&flags, &|_| None).expect("load");
        assert_eq!(c.body_limit, 100);
        assert_eq!(c.limits.ingest_records, 3);
        assert_eq!(c.limits.record_bytes, 50);
        assert_eq!(c.limits.requests_per_second, 2.5);
        assert_eq!(c.limits.burst, 4);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.body_timeout, Duration::from_millis(500));
        for (text, key) in [
            ("limits:\n  ingest_records: 0\n", "limits.ingest_records"),
            (
                "limits:\n  requests_per_second: -1\n",
                "limits.requests_per_second",
            ),
            ("limits:\n  header_timeout: soon\n", "limits.header_timeout"),
            ("limits:\n  body_timeout: 0s\n", "limits.body_timeout"),
            ("limits:\n  tls_handshakes: 0\n", "limits.tls_handshakes"),
            ("limits:\n  records: 5\n", "limits.records"),
        ] {
            let (_d, path) = file(text);
            let e = load(
                &Flags {
                    config: Some(path),
                    ..Flags::default()
                },
                &|_| None,
            )
            .expect_err(text);
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
        }
    }

    #[test]
    fn the_ingest_redis_ca_file_is_relative_to_the_file_and_needs_rediss() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Any PEM certificate will do: the server's own test certificate is not at hand, so
        // one made here.
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).expect("write");
        let config = dir.path().join("weir.yaml");
        std::fs::write(
            &config,
            "ingest:\n  redis_url: rediss://127.0.0.1:6390\n  redis_ca_file: ca.pem\n",
        )
        .expect("write");
        let flags = Flags {
            config: Some(config.clone()),
            ..Flags::default()
        };
        let c = load(&flags, &|_| None).expect("load");
        assert_eq!(c.ingest_redis_ca_file, Some(dir.path().join("ca.pem")));
        // The environment overrides it (and is checked the same way).
        let env = |k: &str| (k == "WEIR_INGEST_REDIS_CA_FILE").then(|| "/nowhere/ca.pem".into());
        let e = load(&flags, &env).expect_err("missing CA file");
        assert_eq!(e.key.as_deref(), Some("ingest.redis_ca_file"), "{e}");
        assert!(e.to_string().contains("/nowhere/ca.pem"), "{e}");
        // With a plain redis:// URL: refused, not ignored.
        let env = |k: &str| (k == "WEIR_INGEST_REDIS_URL").then(|| "redis://127.0.0.1:6390".into());
        let e = load(&flags, &env).expect_err("ca file with redis://");
        assert_eq!(e.key.as_deref(), Some("ingest.redis_ca_file"), "{e}");
        assert!(e.to_string().contains("rediss://"), "{e}");
        // Certificate verification cannot be turned off.
        let env = |k: &str| {
            (k == "WEIR_INGEST_REDIS_URL").then(|| "rediss://127.0.0.1:6390/#insecure".into())
        };
        let e = load(&Flags::default(), &env).expect_err("#insecure");
        assert_eq!(e.key.as_deref(), Some("ingest.redis_url"), "{e}");
    }

    #[test]
    fn a_password_in_the_redis_url_of_the_file_is_refused_not_shown() {
        let (_dir, path) = file("ingest:\n  redis_url: redis://:hunter2@127.0.0.1:6390\n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let e = load(&flags, &|_| None).expect_err("password in the file");
        assert_eq!(e.key.as_deref(), Some("ingest.redis_url"), "{e}");
        assert!(e.to_string().contains("WEIR_INGEST_REDIS_URL"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // From the environment it is taken.
        let env = |k: &str| {
            (k == "WEIR_INGEST_REDIS_URL").then(|| "redis://:hunter2@127.0.0.1:6390".to_string())
        };
        assert!(load(&Flags::default(), &env).is_ok());
    }

    #[test]
    fn the_readme_alerts_block_loads() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
                .expect("README");
        let block = readme
            .split("```yaml\nalerts:")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the README's alerts: block");
        let (_dir, path) = file(&format!("alerts:{block}"));
        let c = load(
            &Flags {
                config: Some(path),
                ..Flags::default()
            },
            &|_| None,
        )
        .expect("the README's alerts block");
        let alerts = c.alerts.expect("alerts");
        assert_eq!(alerts.rules.len(), 4);
        assert_eq!(alerts.policy.retries, 5);
        assert!(alerts.policy.circuit_breaker.is_some());
        // A bad rule names itself.
        let (_d, path) = file(
            "alerts:\n  webhook: { url: \"http://127.0.0.1:9/\" }\n  rules:\n    - { name: a, expr: \"weir_x > 1 for 1s\" }\n    - { name: b, expr: \"weir_x ~ 1 for 1s\" }\n",
        );
        let e = load(
            &Flags {
                config: Some(path),
                ..Flags::default()
            },
            &|_| None,
        )
        .expect_err("bad rule");
        assert_eq!(e.key.as_deref(), Some("alerts.rules[1].expr"), "{e}");
        let (_d, path) = file("alerts:\n  webhook: { url: \"http://u:pw@127.0.0.1:9/\" }\n");
        let e = load(
            &Flags {
                config: Some(path),
                ..Flags::default()
            },
            &|_| None,
        )
        .expect_err("password in URL");
        assert_eq!(e.key.as_deref(), Some("alerts.webhook.url"), "{e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn bad_env_and_profiles() {
        let env = |k: &str| (k == "WEIR_AUTH_ENABLED").then(|| "maybe".to_string());
        let e = load(&Flags::default(), &env).expect_err("bad env");
        assert_eq!(e.key.as_deref(), Some("WEIR_AUTH_ENABLED"));
        let prod = |k: &str| (k == "WEIR_PROFILE").then(|| "production".to_string());
        assert!(load(&Flags::default(), &prod).expect("load").auth_enabled);
        let key = |k: &str| (k == "WEIR_AUTH_KEY_FILE").then(|| "/keys/weir.key".to_string());
        assert_eq!(
            load(&Flags::default(), &key).expect("load").auth_key_file,
            Some(PathBuf::from("/keys/weir.key"))
        );
        assert!(
            !load(&Flags::default(), &|_| None)
                .expect("load")
                .auth_enabled
        );
    }
}
