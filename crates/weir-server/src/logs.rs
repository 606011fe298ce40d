//! Request context for the server's logs: every HTTP request runs in a `request` span with a
//! `request_id` (the caller's `X-Request-Id` when it sends a usable one, else a new one), which
//! the response returns in `X-Request-Id`; events of the handler, and of pipelines it starts,
//! carry it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// The header that carries the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id kept; longer (or non-printable) ones are replaced by a new id.
const MAX_ID_LEN: usize = 128;

/// A new id: 16 hex digits, unique in the process and unpredictable across processes.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

/// The incoming id if it is usable (printable ASCII, at most [`MAX_ID_LEN`] bytes).
fn incoming(request: &Request) -> Option<String> {
    let v = request.headers().get(&REQUEST_ID)?.to_str().ok()?.trim();
    let ok = !v.is_empty() && v.len() <= MAX_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
}

/// The middleware: runs the request in its span, logs its outcome (`info` for requests that
/// change something, `debug` for reads) and returns the id.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = incoming(&request).unwrap_or_else(new_id);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(%method, %path, status, seconds, "request failed");
        } else if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            tracing::debug!(%method, %path, status, seconds, "request");
        } else {
            tracing::info!(%method, %path, status, seconds, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_differ() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn incoming_ids_are_checked() {
        let with = |v: &str| {
            let r = Request::builder()
                .header("x-request-id", v)
                .body(axum::body::Body::empty())
                .unwrap();
            incoming(&r)
        };
        assert_eq!(with("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(with("has space"), None);
        assert_eq!(with(&"x".repeat(200)), None);
    }
}
