//! Helpers for tests that need the real services started by `scripts/services.sh`.
//!
//! A test asks for a service and gets its URL, or `None` when it is not reachable and the test
//! should return early. With `WEIR_REQUIRE_SERVICES=1` (CI sets it) an unreachable service
//! fails the test instead of skipping it.

use std::time::Duration;

/// Default Redis URL of `scripts/services.sh`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6390";
/// Default ClickHouse HTTP URL of `scripts/services.sh`.
pub const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:8124";

/// The Redis URL from `WEIR_TEST_REDIS_URL` (default [`DEFAULT_REDIS_URL`]) if Redis answers
/// PING there. Otherwise skips (`None`) or, under `WEIR_REQUIRE_SERVICES=1`, panics.
pub async fn redis_url() -> Option<String> {
    let url = env_or("WEIR_TEST_REDIS_URL", DEFAULT_REDIS_URL);
    let reachable = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
        Some(pong == "PONG")
    };
    let ok = tokio::time::timeout(Duration::from_secs(3), reachable)
        .await
        .ok()
        .flatten()
        .unwrap_or(false);
    available("Redis", url, ok)
}

/// The ClickHouse URL from `WEIR_TEST_CLICKHOUSE_URL` (default [`DEFAULT_CLICKHOUSE_URL`]) if
/// `/ping` answers there. Otherwise skips (`None`) or, under `WEIR_REQUIRE_SERVICES=1`, panics.
pub async fn clickhouse_url() -> Option<String> {
    let url = env_or("WEIR_TEST_CLICKHOUSE_URL", DEFAULT_CLICKHOUSE_URL);
    let reachable = async {
        let client = crate::http_client()
            .timeout(Duration::from_secs(3))
            .build()
            .ok()?;
        let ping = format!("{}/ping", url.trim_end_matches('/'));
        let response = client.get(ping).send().await.ok()?;
        Some(response.status().is_success())
    };
    let ok = reachable.await.unwrap_or(false);
    available("ClickHouse", url, ok)
}

/// A name unique to this process and call, for streams, groups and tables of one test.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn services_required() -> bool {
    matches!(
        std::env::var("WEIR_REQUIRE_SERVICES").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

fn available(service: &str, url: String, reachable: bool) -> Option<String> {
    if reachable {
        return Some(url);
    }
    let shown = crate::error::redact_url(&url);
    if services_required() {
        panic!(
            "{service} not reachable at {shown} and WEIR_REQUIRE_SERVICES=1: \
             start it with `bash scripts/services.sh start`"
        );
    }
    eprintln!(
        "skipping: {service} not reachable at {shown} (start it with `bash scripts/services.sh start`)"
    );
    None
}
