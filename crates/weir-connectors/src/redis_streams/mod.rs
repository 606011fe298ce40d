//! Redis Streams: a consumer-group reader and a (optionally idempotent) writer.

mod decode;
mod id;
mod options;
mod reader;
mod sink;
mod source;
mod writer;

pub use decode::{FieldEncoding, InvalidEntry, StreamBatch, StreamEntry};
pub use id::StreamId;
pub use options::{RedisStreamSinkOptions, RedisStreamSourceOptions};
pub use reader::{
    ConsumerLag, GroupStart, ReconnectBudget, RedisStreamReader, RedisStreamReaderConfig,
    StreamAcker,
};
pub use sink::RedisStreamSink;
pub use source::{RedisStreamSource, RedisStreamSourceConfig};
pub use writer::{IdempotentWrite, RedisStreamWriter, RedisStreamWriterConfig};

use crate::ConnectorError;
use crate::error::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::path::Path;
use std::time::Duration;

/// How long establishing a TCP connection to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis client for `url`: `redis://`, or `rediss://` (TLS) verified against the system's
/// roots or, with `ca_file`, only against that file's CA. `rediss://...#insecure` (no
/// verification) is refused, and so is a `ca_file` with a plain `redis://` URL.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, ConnectorError> {
    let shown = redact_url(url);
    let not_a_url = |e: redis::RedisError| ConnectorError::Config {
        key: "url",
        reason: format!("`{shown}` is not a Redis URL: {e}"),
    };
    let client = redis::Client::open(url).map_err(not_a_url)?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => Err(ConnectorError::Config {
            key: "url",
            reason: format!(
                "`{shown}` turns off certificate verification (`#insecure`), which Weir does not allow: give the server's CA with `ca_file`"
            ),
        }),
        redis::ConnectionAddr::TcpTls { .. } => {
            crate::tls::install_provider();
            match ca_file {
                None => Ok(client),
                Some(path) => {
                    let ca =
                        crate::tls::CaFile::read(path).map_err(|e| ConnectorError::Config {
                            key: "ca_file",
                            reason: e.to_string(),
                        })?;
                    redis::Client::build_with_tls(
                        url,
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(ca.pem().to_vec()),
                        },
                    )
                    .map_err(not_a_url)
                }
            }
        }
        _ if ca_file.is_some() => Err(ConnectorError::Config {
            key: "ca_file",
            reason: format!(
                "a CA file applies to rediss:// (TLS) URLs only, and the URL is `{shown}`"
            ),
        }),
        _ => Ok(client),
    }
}

/// A failed connection as an error: a TLS failure says so (and is not retried).
pub(crate) fn connect_error(url: &str, source: redis::RedisError) -> ConnectorError {
    match crate::tls::tls_failure(&source) {
        Some(reason) => ConnectorError::Tls {
            connector: "Redis",
            url: redact_url(url),
            reason,
        },
        None => ConnectorError::RedisConnect {
            url: redact_url(url),
            source,
        },
    }
}

/// A self-reconnecting connection (of [`client`]) whose commands time out after
/// `response_timeout`; a TLS failure is a [`ConnectorError::Tls`]. Used by the connectors and
/// the Redis task store.
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
    response_timeout: Duration,
) -> Result<ConnectionManager, ConnectorError> {
    let client = client(url, ca_file)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(4)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|source| connect_error(url, source))
}

/// `PING`, expecting `PONG`.
pub(crate) async fn ping(conn: &mut ConnectionManager, stream: &str) -> Result<(), ConnectorError> {
    let pong: String = redis::cmd("PING")
        .query_async(conn)
        .await
        .map_err(|e| ConnectorError::redis("PING", stream, e))?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(ConnectorError::reply(
            "PING",
            stream,
            format!("expected PONG, found {pong:?}"),
        ))
    }
}

/// Connectivity check: connects to Redis and sends `PING` (each step within 5 s).
pub async fn check(url: &str) -> Result<(), ConnectorError> {
    check_with_ca(url, None).await
}

/// [`check`] with the `ca_file` of a `rediss://` URL.
pub async fn check_with_ca(url: &str, ca_file: Option<&Path>) -> Result<(), ConnectorError> {
    let target = redact_url(url);
    let unreachable = |reason: String| ConnectorError::Unreachable {
        connector: "Redis",
        target: target.clone(),
        reason,
    };
    let client = client(url, ca_file)?;
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| match connect_error(url, e) {
            tls @ ConnectorError::Tls { .. } => tls,
            other => unreachable(match other {
                ConnectorError::RedisConnect { source, .. } => source.to_string(),
                other => other.to_string(),
            }),
        })?;
    let pong: String =
        tokio::time::timeout(CONNECT_TIMEOUT, redis::cmd("PING").query_async(&mut conn))
            .await
            .map_err(|_| unreachable(format!("no answer to PING within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(format!("PING failed: {e}")))?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(unreachable(format!("PING answered `{pong}`")))
    }
}
