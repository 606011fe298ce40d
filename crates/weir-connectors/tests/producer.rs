//! The producer client against the real Redis.

use weir_connectors::{Producer, ProducerConfig, ProducerError, testing};
use weir_schema::{ErrorClass, Registry};

fn registry_with_pageview(dir: &std::path::Path) -> std::path::PathBuf {
    let schemas = dir.join("schemas");
    let registry = Registry::open(&schemas).unwrap();
    std::fs::write(
        dir.join("pv.yaml"),
        "name: analytics.pageview\nfields:\n  - { name: user_id, type: string, required: true }\n  - { name: page, type: string, required: true }\n",
    )
    .unwrap();
    registry.register_file(dir.join("pv.yaml")).unwrap();
    schemas
}

async fn stream_len(url: &str, stream: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn send_validates_against_the_registry_and_writes() {
    let Some(url) = testing::redis_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProducerConfig::new(&url);
    config.registry = Some(registry_with_pageview(dir.path()));
    config.stream_prefix = format!("{}:", testing::unique_name("producer"));
    let stream = format!("{}analytics.pageview", config.stream_prefix);
    let client = Producer::connect(config).await.unwrap();

    client
        .data("analytics.pageview")
        .user("u1")
        .field("page", "/x")
        .send()
        .await
        .unwrap();
    let refused = client
        .data("analytics.pageview")
        .user("u2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Validation);
    assert!(refused.to_string().contains("page"), "{refused}");
    let unknown = client.data("no.such").user("u").send().await.unwrap_err();
    assert_eq!(unknown.class(), ErrorClass::Schema);
    assert_eq!(stream_len(&url, &stream).await, 1);
}

#[tokio::test]
async fn background_queue_reports_when_full_and_flushes_the_rest() {
    let Some(url) = testing::redis_url().await else {
        return;
    };
    let mut config = ProducerConfig::new(&url);
    config.stream_prefix = format!("{}:", testing::unique_name("bg"));
    let stream = format!("{}clicks", config.stream_prefix);
    let client = Producer::connect(config).await.unwrap();
    let background = client.background(100);
    // On this single-threaded test runtime the queue cannot drain while we do not await.
    let mut full = 0;
    for i in 0..150 {
        match background.data("clicks").field("n", i).enqueue() {
            Ok(()) => {}
            Err(ProducerError::QueueFull { capacity }) => {
                assert_eq!(capacity, 100);
                full += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(full, 50, "every refused event is reported");
    let failures = background.flush().await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(stream_len(&url, &stream).await, 100);
}
