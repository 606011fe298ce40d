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
use std::time::Duration;

/// How long establishing a TCP connection to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A self-reconnecting connection whose commands time out after `response_timeout`.
pub(crate) async fn connect(
    url: &str,
    response_timeout: Duration,
) -> Result<ConnectionManager, ConnectorError> {
    let client = redis::Client::open(url).map_err(|e| ConnectorError::Config {
        key: "url",
        reason: format!("`{}` is not a Redis URL: {e}", redact_url(url)),
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(4)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|source| ConnectorError::RedisConnect {
            url: redact_url(url),
            source,
        })
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
    let target = redact_url(url);
    let unreachable = |reason: String| ConnectorError::Unreachable {
        connector: "Redis",
        target: target.clone(),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| ConnectorError::Config {
        key: "url",
        reason: format!("`{target}` is not a Redis URL: {e}"),
    })?;
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
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
