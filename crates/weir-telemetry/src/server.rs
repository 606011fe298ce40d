//! `GET /metrics` for a one-off run (`weir run --metrics-listen ADDR`): an axum server on its
//! own thread and current-thread runtime, so the run's task threads are not involved.

use crate::{CONTENT_TYPE, Metrics, TelemetryError};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::Instant;

/// A running `/metrics` server; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// `PORT` alone means loopback (`127.0.0.1:PORT`); otherwise `HOST:PORT`.
fn parse_addr(addr: &str) -> Result<SocketAddr, TelemetryError> {
    let bad = || TelemetryError::BadAddress(addr.to_string());
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    addr.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

async fn serve_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    let started = Instant::now();
    let body = metrics.render();
    metrics.http_request("/metrics", 200, started.elapsed().as_secs_f64());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

impl MetricsServer {
    /// Listens on `addr` (`HOST:PORT`, or a port on loopback) and serves `GET /metrics` from
    /// `metrics` until dropped. The address is bound before this returns, so a taken port is
    /// an error here.
    pub fn start(addr: &str, metrics: Metrics) -> Result<MetricsServer, TelemetryError> {
        let socket = parse_addr(addr)?;
        let listen_error = |source| TelemetryError::Listen {
            addr: addr.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(socket).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let local = listener.local_addr().map_err(listen_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(metrics);
        let thread = std::thread::Builder::new()
            .name("weir:metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "the metrics server cannot listen");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the metrics server stopped");
                    }
                })
            })
            .map_err(TelemetryError::Runtime)?;
        tracing::info!(addr = %local, "serving metrics at http://{local}/metrics");
        Ok(MetricsServer {
            addr: local,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the actual port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_means_loopback() {
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(matches!(
            parse_addr("nowhere"),
            Err(TelemetryError::BadAddress(_))
        ));
    }
}
