//! HTTPS for `weir serve`: with `tls.cert_file` and `tls.key_file` (PEM) the server speaks
//! TLS only (rustls, ring provider; HTTP/1.1).
//!
//! A [`TlsListener`] is an [`axum::serve::Listener`]: a task accepts TCP connections and runs
//! each handshake in a task of its own (so a slow client cannot hold up the others); finished
//! handshakes are handed to the accept loop. A handshake must finish within
//! `limits.header_timeout`, and at most `limits.tls_handshakes` are in progress at once: with
//! all in use the next connection waits for a free slot and no other is accepted (they wait
//! in the kernel's backlog) until a handshake ends, so clients that connect and never send a
//! ClientHello cost a bounded number of tasks and buffers. Outcomes are counted in
//! `weir_tls_handshakes_total{outcome}`, the waits in `weir_tls_handshakes_waited_total`. A
//! plain-HTTP client fails the handshake and is disconnected. On SIGHUP the certificate and
//! key are read again: new connections use the new certificate; a file that cannot be used
//! keeps the old one and logs an error naming the file.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use weir_telemetry::Handshake;

/// The bounds of the handshakes in progress (`limits.tls_handshakes`, `limits.header_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Most handshakes in progress at once.
    pub max: usize,
    /// How long a client may take to complete its handshake.
    pub timeout: Duration,
}

/// The certificate and key files (`tls.cert_file`, `tls.key_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Reads the certificate chain and the key and makes the server's TLS configuration. The
/// error names the file (and the key, `tls.cert_file` or `tls.key_file`) at fault.
pub fn load(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    weir_connectors::tls::install_provider();
    let cert_file = &files.cert_file;
    let key_file = &files.key_file;
    let at =
        |key: &str, path: &Path, message: String| format!("{key} {}: {message}", path.display());
    let pem = std::fs::read(cert_file).map_err(|e| {
        at(
            "tls.cert_file",
            cert_file,
            format!("cannot read the file: {e}"),
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            at(
                "tls.cert_file",
                cert_file,
                format!("not a PEM certificate file: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(at(
            "tls.cert_file",
            cert_file,
            "no certificate in the file: expected PEM `-----BEGIN CERTIFICATE-----` blocks".into(),
        ));
    }
    let pem = std::fs::read(key_file).map_err(|e| {
        at(
            "tls.key_file",
            key_file,
            format!("cannot read the file: {e}"),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        at(
            "tls.key_file",
            key_file,
            format!("no private key in the file (expected PEM, PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            at(
                "tls.key_file",
                key_file,
                format!(
                    "the key does not go with the certificate of {}: {e}",
                    cert_file.display()
                ),
            )
        })?;
    // axum serves HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections for axum; see the module's documentation.
pub struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Serves TLS on `listener` with `config` (from [`load`] of `files`) within `limits`,
    /// counting handshakes in `metrics`, and reloads `files` on SIGHUP.
    pub fn new(
        listener: TcpListener,
        files: TlsFiles,
        config: Arc<rustls::ServerConfig>,
        limits: HandshakeLimits,
        metrics: weir_telemetry::Metrics,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let current = Arc::new(RwLock::new(config));
        // Registered before the first connection, so that no SIGHUP finds the default action
        // (which would end the process).
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let (sender, connections) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max.max(1)));
        metrics.serve_tls();
        let accept = {
            let current = current.clone();
            tokio::spawn(async move {
                // Whether the last connection found every slot in use (logged once per spell).
                let mut saturated = false;
                loop {
                    let (tcp, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, as axum does.
                            tracing::warn!("accepting a connection failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    // A slot for its handshake; with none free this connection waits and
                    // nothing more is accepted (one waiting connection at most).
                    let slot = match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            saturated = false;
                            slot
                        }
                        Err(_) => {
                            metrics.tls_handshake_waited();
                            if !saturated {
                                saturated = true;
                                tracing::warn!(
                                    "{} TLS handshakes in progress (limits.tls_handshakes): new connections wait until one ends",
                                    limits.max
                                );
                            }
                            match slots.clone().acquire_owned().await {
                                Ok(slot) => slot,
                                // The semaphore is never closed.
                                Err(_) => return,
                            }
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let config = match current.read() {
                        Ok(c) => c.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let sender = sender.clone();
                    let metrics = metrics.clone();
                    let timeout = limits.timeout;
                    tokio::spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                metrics.tls_handshake(Handshake::Ok);
                                // The slot is held until the connection is handed over.
                                let _ = sender.send((stream, peer)).await;
                            }
                            Ok(Err(e)) => {
                                metrics.tls_handshake(Handshake::Failed);
                                tracing::debug!(%peer, "TLS handshake with {peer} failed: {e}")
                            }
                            Err(_) => {
                                metrics.tls_handshake(Handshake::TimedOut);
                                tracing::debug!(
                                    %peer,
                                    "TLS handshake with {peer} not done within limits.header_timeout ({timeout:?})"
                                )
                            }
                        }
                        drop(slot);
                    });
                }
            })
        };
        let reload = tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match load(&files) {
                    Ok(config) => {
                        match current.write() {
                            Ok(mut c) => *c = config,
                            Err(poisoned) => *poisoned.into_inner() = config,
                        }
                        tracing::info!(
                            cert_file = %files.cert_file.display(),
                            key_file = %files.key_file.display(),
                            "SIGHUP: TLS certificate reloaded from {} and {}; new connections use it",
                            files.cert_file.display(),
                            files.key_file.display()
                        );
                    }
                    Err(e) => tracing::error!(
                        "SIGHUP: TLS reload failed, keeping the previous certificate: {e}"
                    ),
                }
            }
        });
        Ok(TlsListener {
            connections,
            local,
            tasks: vec![accept, reload],
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept task holds a sender until the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
