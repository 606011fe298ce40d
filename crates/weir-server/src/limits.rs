//! The server's input limits (`limits:` in the server config): request body size (413), records
//! per ingest request and size of one record (413, in [`crate::ingest`]), requests per token per
//! second (429 with `Retry-After`, on weir-resilience's [`RateLimiter`]), and the timeouts that
//! drop slow clients (slowloris): the request head (and, with HTTPS, the TLS handshake) must
//! arrive within `header_timeout`, the body within `body_timeout`; with HTTPS at most
//! `tls_handshakes` handshakes are in progress at once ([`crate::tls`]).
//!
//! The connections are served here ([`serve`]) rather than by `axum::serve`, which has no
//! header read timeout: hyper's HTTP/1 connection with its timer and `header_read_timeout`.

use crate::App;
use crate::error::ApiError;
use crate::routes::{Role, role_of};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use weir_resilience::RateLimiter;

/// The limits in force (see the module docs); defaults in [`LimitsConfig::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// `limits.ingest_records`: most records in one ingest request.
    pub ingest_records: usize,
    /// `limits.record_bytes`: largest record of an ingest request (its JSON as appended).
    pub record_bytes: usize,
    /// `limits.requests_per_second`: per token (one shared budget for requests without one);
    /// `0` turns the limit off.
    pub requests_per_second: f64,
    /// `limits.burst`: requests a token may send at once before the rate applies.
    pub burst: u32,
    /// `limits.header_timeout`: the request line and headers must arrive within this.
    pub header_timeout: Duration,
    /// `limits.body_timeout`: the whole body must arrive within this.
    pub body_timeout: Duration,
    /// `limits.tls_handshakes`: most TLS handshakes in progress at once (HTTPS only); beyond
    /// it new connections wait to be accepted.
    pub tls_handshakes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            ingest_records: 100_000,
            record_bytes: 1 << 20,
            requests_per_second: 1000.0,
            burst: 2000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            tls_handshakes: 256,
        }
    }
}

/// The per-token request budget.
#[derive(Debug)]
pub struct RequestLimiter {
    limiter: Option<RateLimiter>,
    per_second: f64,
    burst: u32,
}

impl RequestLimiter {
    /// The budget of `config`; `Err` names the setting when the rate cannot work.
    pub fn new(config: &LimitsConfig) -> Result<Self, String> {
        let limiter = if config.requests_per_second == 0.0 {
            None
        } else {
            Some(
                RateLimiter::try_per_second_f64(config.requests_per_second)
                    .map_err(|_| {
                        format!(
                            "limits.requests_per_second: expected a positive number (or 0 for no limit), got {}",
                            config.requests_per_second
                        )
                    })?
                    .per_key(),
            )
        };
        Ok(RequestLimiter {
            limiter,
            per_second: config.requests_per_second,
            burst: config.burst.max(1),
        })
    }

    /// Takes one request of `key`'s budget, or answers how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        match &self.limiter {
            Some(l) => l.try_acquire_key(key, self.burst),
            None => Ok(()),
        }
    }
}

/// The rate check of every route that needs a token (a route layer inside the role check, so
/// it knows the token): over its budget a token gets 429 with `Retry-After` (whole seconds,
/// rounded up), counted in `weir_rate_limited_total{policy="api"}`. Requests without a token
/// (authentication disabled) share one budget.
pub async fn rate_limit(
    State(app): State<Arc<App>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let role = matched
        .as_ref()
        .and_then(|m| role_of(request.method(), m.as_str()));
    let public = match role {
        None | Some(Role::Public) => true,
        Some(Role::Metrics) => app.config.metrics_public,
        Some(_) => false,
    };
    if public {
        return next.run(request).await;
    }
    let identity = request.extensions().get::<weir_auth::Identity>();
    let (key, who) = match identity {
        Some(i) => (i.token_id.as_str(), format!("token `{}`", i.name)),
        None => ("-", "requests without a token".to_string()),
    };
    if let Err(wait) = app.request_limiter.check(key) {
        app.metrics.api_rate_limited();
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        let message = format!(
            "too many requests: {who} is over limits.requests_per_second ({} per second, burst {}); retry after {seconds} s",
            app.request_limiter.per_second, app.request_limiter.burst
        );
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            .with("limit", "limits.requests_per_second")
            .with("retry_after", seconds)
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    next.run(request).await
}

/// Reads the request body before the handler, within `limits.body_timeout` (else 408, and the
/// connection is closed) and `limits.body_bytes` (else 413: at once when `Content-Length` says
/// so, else as soon as the body grows past it).
pub async fn read_body(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let limit = app.config.body_limit;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit, declared);
    }
    let (parts, body) = request.into_parts();
    let collect = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
                    .into_response()
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large(limit, None));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<_, Response>(buf)
    };
    let timeout = app.config.limits.body_timeout;
    let body = match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return close(response),
        Err(_) => {
            let response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within limits.body_timeout ({} ms)",
                    timeout.as_millis()
                ),
            )
            .with("limit", "limits.body_timeout")
            .into_response();
            return close(response);
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn too_large(limit: usize, declared: Option<u64>) -> Response {
    let size = match declared {
        Some(n) => format!("{n} bytes"),
        None => "more".to_string(),
    };
    close(
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is {size} than limits.body_bytes ({limit} bytes) allows"),
        )
        .with("limit", "limits.body_bytes")
        .with("max", limit)
        .into_response(),
    )
}

/// The rest of the body is not read: the connection is closed after this answer.
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves `router` on `listener` (plain TCP, or [`crate::tls::TlsListener`], which hands over
/// connections whose TLS handshake is done) until `shutdown` completes, then lets the requests
/// in flight finish. Each connection is HTTP/1.1 with `header_timeout` on the request head (a client that
/// trickles its headers is dropped).
pub async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    header_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection holds a sender; `recv` answers `None` once all are gone.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            // A listener waits out its own accept errors (out of file descriptors and the
            // like) rather than spinning.
            (stream, _) = listener.accept() => stream,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection closed: {e}");
                    }
                    drop(open);
                    return;
                }
                _ = stop.changed() => {}
            }
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_token_with_a_burst() {
        let limiter = RequestLimiter::new(&LimitsConfig {
            requests_per_second: 2.0,
            burst: 2,
            ..LimitsConfig::default()
        })
        .expect("limiter");
        assert!(limiter.check("t1").is_ok());
        assert!(limiter.check("t1").is_ok());
        let wait = limiter.check("t1").expect_err("over the budget");
        // Two per second, a burst of two: the next is about half a second away.
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.check("t2").is_ok());
        let off = RequestLimiter::new(&LimitsConfig {
            requests_per_second: 0.0,
            ..LimitsConfig::default()
        })
        .expect("no limit");
        for _ in 0..10_000 {
            assert!(off.check("t1").is_ok());
        }
        let e = RequestLimiter::new(&LimitsConfig {
            requests_per_second: -1.0,
            ..LimitsConfig::default()
        })
        .expect_err("negative");
        assert!(e.contains("limits.requests_per_second"), "{e}");
    }
}
