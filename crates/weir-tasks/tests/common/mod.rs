//! A small HTTP/1.1 test server on 127.0.0.1 that echoes POST bodies, counts requests in
//! flight (and their maximum), and can be told to fail or to fail its health check; plain or
//! HTTPS (a certificate and key in PEM files, made by the test).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Counters {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub served: AtomicUsize,
    pub failed: AtomicUsize,
    /// Answer POSTs with 500.
    pub failing: AtomicBool,
    /// Start failing after this many POSTs (0: never).
    pub fail_after: AtomicUsize,
    /// Answer GET /health with 503.
    pub unhealthy: AtomicBool,
    /// Milliseconds each POST takes.
    pub delay_ms: AtomicUsize,
}

pub struct TestServer {
    pub url: String,
    pub counters: Arc<Counters>,
}

impl TestServer {
    pub async fn start(delay_ms: usize) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counters = Arc::new(Counters::default());
        counters.delay_ms.store(delay_ms, Ordering::SeqCst);
        let c = counters.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, c.clone()));
            }
        });
        TestServer { url, counters }
    }

    /// An HTTPS server with the certificate chain of `cert` and the key of `key` (PEM); its
    /// URL is `https://localhost:PORT`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> TestServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, c) = (acceptor.clone(), c.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, c).await;
                    }
                });
            }
        });
        TestServer { url, counters }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, c: Arc<Counters>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let (status, reply) = if head.starts_with("GET /health") {
            if c.unhealthy.load(Ordering::SeqCst) {
                ("503 Service Unavailable", b"{}".to_vec())
            } else {
                ("200 OK", b"{}".to_vec())
            }
        } else {
            let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let delay = c.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            }
            let served = c.served.fetch_add(1, Ordering::SeqCst) + 1;
            let fail_after = c.fail_after.load(Ordering::SeqCst);
            if fail_after > 0 && served >= fail_after {
                c.failing.store(true, Ordering::SeqCst);
            }
            let r = if c.failing.load(Ordering::SeqCst) {
                c.failed.fetch_add(1, Ordering::SeqCst);
                (
                    "500 Internal Server Error",
                    b"{\"error\":\"down\"}".to_vec(),
                )
            } else {
                ("200 OK", body)
            };
            c.in_flight.fetch_sub(1, Ordering::SeqCst);
            r
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err()
            || stream.write_all(&reply).await.is_err()
            || stream.flush().await.is_err()
        {
            return;
        }
    }
}
