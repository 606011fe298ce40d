//! `weir serve`: the long-running platform.
//!
//! Owns the HTTP server (axum on tokio) with the routes of the contract (`SERVE.md`; the
//! OpenAPI document at `/openapi.json` is made from the same route table), the pipeline
//! manager (any number of pipelines on the runtime of `weir run`, checkpoints and desired
//! state in the data dir, resumed after a restart), the ingest endpoint (validated records
//! appended atomically to Redis streams, with idempotency keys), the task routes over
//! `weir-tasks`, request ids in the logs, readiness checks, the layered
//! server configuration, HTTPS ([`tls`]: rustls, the certificate reloaded on SIGHUP), and the
//! remote client ([`client::RemoteEnvironment`], `https://` with a CA file).

pub mod alerts;
pub mod auth;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod ingest;
pub mod limits;
pub mod logs;
pub mod manager;
pub mod ready;
pub mod routes;
pub mod tasks;
pub mod tls;

use config::ServerConfig;
use manager::Manager;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers share.
pub struct App {
    pub config: ServerConfig,
    pub manager: Arc<Manager>,
    pub registry: weir_schema::Registry,
    pub ingest: ingest::Ingest,
    pub ready: ready::Ready,
    /// The one registry of `/metrics` (every pipeline's job, HTTP requests).
    pub metrics: weir_telemetry::Metrics,
    /// The task queue (`/v1/tasks`, `/v1/agents`).
    pub tasks: Arc<weir_tasks::TaskService>,
    /// The keys and revocation list; `None` with `auth.enabled: false`.
    pub auth: Option<auth::Auth>,
    /// The per-token request budget (`limits.requests_per_second`).
    pub request_limiter: limits::RequestLimiter,
    /// The alert rules and their states (`alerts:`, `GET /v1/alerts`).
    pub alerts: Arc<alerts::Alerts>,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Refused configuration (exit 2).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the server until SIGTERM or SIGINT: then stops every pipeline with a checkpoint,
/// finishes the requests in flight and returns.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    // Registered before anything runs, so that no signal finds the default action.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let shutdown = async move {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            signal,
            "received {signal}: finishing requests in flight, stopping every pipeline with a checkpoint"
        );
    };
    serve_until(config, shutdown, |_| {}).await
}

/// [`serve`] until `shutdown` completes; `bound` hears the address listened on.
pub async fn serve_until(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    // Before any HTTP client is built (reqwest has no crypto provider of its own).
    weir_connectors::tls::install_provider();
    // The keys are checked before anything else: a bad key refuses the start (exit 2).
    let auth = auth::Auth::load(&config).map_err(ServeError::Config)?;
    // So are the certificate and key: a file that cannot be used refuses the start (exit 2).
    let tls = match &config.tls {
        Some(files) => Some((files.clone(), tls::load(files).map_err(ServeError::Config)?)),
        None => None,
    };
    if auth.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::Config(format!(
            "listen {}: with auth.enabled: false the server listens on loopback only (127.0.0.1 or ::1)",
            config.listen
        )));
    }
    let request_limiter =
        limits::RequestLimiter::new(&config.limits).map_err(ServeError::Config)?;
    let metrics = weir_telemetry::Metrics::new();
    metrics.serve_api();
    let manager = Manager::open(&config.data_dir, metrics.clone()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("data dir {}: {e}", config.data_dir.display()),
        )
    })?;
    let registry = weir_schema::Registry::open(manager.registry_dir())
        .map_err(|e| ServeError::Config(format!("schema registry: {e}")))?;
    let tasks = tasks::open(&config.data_dir, config.agents.as_deref(), &metrics).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen {}: {e}", config.listen)))?;
    let local = listener.local_addr()?;
    let listener = match tls {
        Some((files, server_config)) => Err(tls::TlsListener::new(
            listener,
            files,
            server_config,
            tls::HandshakeLimits {
                max: config.limits.tls_handshakes,
                timeout: config.limits.header_timeout,
            },
            metrics.clone(),
        )?),
        None => Ok(listener),
    };
    let scheme = if listener.is_ok() { "http" } else { "https" };
    let (alerts, alert_tasks) = match config.alerts.clone() {
        Some(rules) => alerts::Alerts::start(rules, metrics.clone()).map_err(ServeError::Config)?,
        None => (alerts::Alerts::none(), Vec::new()),
    };
    let app = Arc::new(App {
        ingest: ingest::Ingest::new(
            config.ingest_redis_url.clone(),
            config.ingest_streams.clone(),
            config.idempotency_ttl,
            registry.clone(),
        )
        .with_limits(config.limits.ingest_records, config.limits.record_bytes)
        .with_ca_file(config.ingest_redis_ca_file.clone()),
        ready: ready::Ready::new(config.ready_timeout, config.ready_cache),
        registry,
        metrics,
        tasks: tasks.clone(),
        manager: manager.clone(),
        auth,
        request_limiter,
        alerts,
        config,
    });
    if app.auth.is_some() {
        tracing::info!(
            data_dir = %manager.data_dir().display(),
            "data dir {}; authentication enabled: every route but /health, /ready, /openapi.json{} needs a bearer token",
            manager.data_dir().display(),
            if app.config.metrics_public {
                ", /metrics"
            } else {
                ""
            }
        );
    } else {
        tracing::info!(
            data_dir = %manager.data_dir().display(),
            "data dir {}; authentication disabled (auth.enabled: false): local development only, listening on loopback only",
            manager.data_dir().display()
        );
    }
    for problem in manager.restore().await {
        tracing::warn!("{problem}");
    }
    let poller = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                manager.poll();
            }
        })
    };
    // The address line last: a script waiting for it knows the server is up.
    tracing::info!(address = %local, "listening on {scheme}://{local}");
    bound(local);
    let header_timeout = app.config.limits.header_timeout;
    let router = routes::router(app).layer(axum::middleware::from_fn(logs::request_context));
    // `Ok`: plain HTTP; `Err`: HTTPS. Both through the same accept loop (its header timeout
    // applies to a TLS connection once the handshake is done).
    match listener {
        Ok(plain) => {
            use axum::serve::ListenerExt;
            let plain = plain.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            limits::serve(plain, router, shutdown, header_timeout).await?
        }
        Err(tls) => limits::serve(tls, router, shutdown, header_timeout).await?,
    }
    poller.abort();
    for task in alert_tasks {
        task.abort();
    }
    // Running tasks stay `running` on disk and run again at the next start (at-least-once).
    tasks.shutdown().await;
    manager.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
