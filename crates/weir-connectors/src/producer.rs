//! The producer client: applications send schema-checked events into Redis Streams.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_connectors::ProducerError> {
//! use weir_connectors::{Producer, ProducerConfig};
//! let client = Producer::connect(ProducerConfig::new("redis://127.0.0.1:6390")).await?;
//! client.data("analytics.pageview").user("u42").field("page", "/x").send().await?;
//!
//! // Fire and forget, over a bounded queue: a full queue is an error, never a silent drop.
//! let background = client.background(10_000);
//! background.data("analytics.pageview").user("u42").field("page", "/y").enqueue()?;
//! background.flush().await?;
//! # Ok(()) }
//! ```
//!
//! Events of schema `NAME` go to the stream `events:NAME` by default (see
//! [`ProducerConfig::stream_prefix`]). With a registry, every event is validated against the
//! latest version of its schema before it is sent: an invalid event is refused at the source,
//! with the field and the reason.

use crate::{ConnectorError, RedisStreamWriter, RedisStreamWriterConfig, StreamId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use weir_schema::{ErrorClass, Registry, Schema, ValidationError, VersionSpec};
use weir_types::{Record, Value};

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub url: String,
    /// Events of schema `NAME` go to `<stream_prefix>NAME`. Default `events:`.
    pub stream_prefix: String,
    /// Validate events against the latest schema version in this registry before sending.
    pub registry: Option<std::path::PathBuf>,
    /// Approximate stream length to trim to (`MAXLEN ~`); `None`: no trimming.
    pub max_len: Option<usize>,
}

impl ProducerConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ProducerConfig {
            url: url.into(),
            stream_prefix: "events:".into(),
            registry: None,
            max_len: None,
        }
    }
}

/// Why an event was not sent. [`ProducerError::class`] tells validation, schema and
/// connection problems apart.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Validation(Box<ValidationError>),
    #[error("schema: {0}")]
    Schema(String),
    #[error(transparent)]
    Connection(#[from] ConnectorError),
    #[error(
        "the producer queue is full ({capacity} events waiting); slow down or raise its capacity"
    )]
    QueueFull { capacity: usize },
    #[error("the producer was closed")]
    Closed,
}

impl ProducerError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ProducerError::Validation(_) => ErrorClass::Validation,
            ProducerError::Schema(_) => ErrorClass::Schema,
            ProducerError::Connection(_) | ProducerError::QueueFull { .. } => {
                ErrorClass::Connection
            }
            ProducerError::Closed => ErrorClass::Internal,
        }
    }
}

struct Inner {
    config: ProducerConfig,
    writers: tokio::sync::Mutex<HashMap<String, RedisStreamWriter>>,
    registry: Option<Registry>,
    schemas: Mutex<HashMap<String, Arc<Schema>>>,
}

/// Sends events into Redis Streams. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    pub async fn connect(config: ProducerConfig) -> Result<Self, ProducerError> {
        let registry = config
            .registry
            .as_ref()
            .map(Registry::open)
            .transpose()
            .map_err(|e| ProducerError::Schema(e.to_string()))?;
        let producer = Producer {
            inner: Arc::new(Inner {
                config,
                writers: tokio::sync::Mutex::new(HashMap::new()),
                registry,
                schemas: Mutex::new(HashMap::new()),
            }),
        };
        Ok(producer)
    }

    /// Starts an event of the given schema.
    pub fn data(&self, schema: &str) -> Event<'_> {
        Event {
            target: Target::Direct(self),
            schema: schema.to_string(),
            record: Record::new(),
        }
    }

    /// A fire-and-forget front with a bounded queue of `capacity` events, drained by a
    /// background task in batches.
    pub fn background(&self, capacity: usize) -> BackgroundProducer {
        let capacity = capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<(String, Record)>(capacity);
        let producer = self.clone();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let failures_task = failures.clone();
        let (flush_tx, mut flush_rx) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>(16);
        let task = tokio::spawn(async move {
            let mut batch: Vec<(String, Record)> = Vec::new();
            loop {
                tokio::select! {
                    received = rx.recv_many(&mut batch, 1000) => {
                        if received == 0 { break; }
                        for (schema, record) in batch.drain(..) {
                            if let Err(e) = producer.send(&schema, record).await {
                                failures_task.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                            }
                        }
                    }
                    Some(done) = flush_rx.recv() => {
                        // Everything queued before the flush request is in the channel.
                        while let Ok(item) = rx.try_recv() {
                            if let Err(e) = producer.send(&item.0, item.1).await {
                                failures_task.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                            }
                        }
                        let _ = done.send(());
                    }
                }
            }
        });
        BackgroundProducer {
            tx,
            capacity,
            failures,
            flush_tx,
            _task: Arc::new(task),
        }
    }

    fn schema(&self, name: &str) -> Result<Option<Arc<Schema>>, ProducerError> {
        let Some(registry) = &self.inner.registry else {
            return Ok(None);
        };
        let mut cache = self.inner.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(name) {
            return Ok(Some(s.clone()));
        }
        let schema = Arc::new(
            registry
                .get(name, VersionSpec::Latest)
                .map_err(|e| ProducerError::Schema(e.to_string()))?,
        );
        cache.insert(name.to_string(), schema.clone());
        Ok(Some(schema))
    }

    /// Validates (when a registry is configured) and writes one event.
    async fn send(&self, schema: &str, record: Record) -> Result<StreamId, ProducerError> {
        let record = match self.schema(schema)? {
            Some(s) => s
                .validate(record)
                .map_err(|e| ProducerError::Validation(Box::new(e)))?,
            None => record,
        };
        let stream = format!("{}{schema}", self.inner.config.stream_prefix);
        let mut writers = self.inner.writers.lock().await;
        if !writers.contains_key(&stream) {
            let mut config = RedisStreamWriterConfig::new(&self.inner.config.url, &stream);
            config.max_len = self.inner.config.max_len;
            writers.insert(stream.clone(), RedisStreamWriter::connect(config).await?);
        }
        let writer = writers.get_mut(&stream).ok_or(ProducerError::Closed)?;
        let ids = writer.write(std::slice::from_ref(&record)).await?;
        ids.first().copied().ok_or(ProducerError::Closed)
    }
}

enum Target<'a> {
    Direct(&'a Producer),
    Background(&'a BackgroundProducer),
}

/// An event being built; finish with [`Event::send`] or (in the background) [`Event::enqueue`].
pub struct Event<'a> {
    target: Target<'a>,
    schema: String,
    record: Record,
}

impl Event<'_> {
    /// Sets `user_id`.
    pub fn user(self, id: impl Into<Value>) -> Self {
        self.field("user_id", id)
    }

    /// Sets `ts` to the current time.
    pub fn now(self) -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.field("ts", Value::Timestamp(ms))
    }

    /// Sets a field.
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.record.set(name, value.into());
        self
    }

    /// Validates and writes the event; returns its stream id.
    pub async fn send(self) -> Result<StreamId, ProducerError> {
        match self.target {
            Target::Direct(p) => p.send(&self.schema, self.record).await,
            Target::Background(b) => {
                b.tx.send((self.schema, self.record))
                    .await
                    .map_err(|_| ProducerError::Closed)?;
                Ok(StreamId::ZERO)
            }
        }
    }

    /// Queues the event without waiting; a full queue is reported, not dropped silently.
    pub fn enqueue(self) -> Result<(), ProducerError> {
        match self.target {
            Target::Background(b) => {
                b.tx.try_send((self.schema, self.record))
                    .map_err(|e| match e {
                        mpsc::error::TrySendError::Full(_) => ProducerError::QueueFull {
                            capacity: b.capacity,
                        },
                        mpsc::error::TrySendError::Closed(_) => ProducerError::Closed,
                    })
            }
            Target::Direct(_) => Err(ProducerError::Schema(
                "enqueue needs a background producer (Producer::background)".into(),
            )),
        }
    }
}

/// Fire-and-forget sending over a bounded queue.
#[derive(Clone)]
pub struct BackgroundProducer {
    tx: mpsc::Sender<(String, Record)>,
    capacity: usize,
    failures: Arc<Mutex<Vec<ProducerError>>>,
    flush_tx: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl BackgroundProducer {
    pub fn data(&self, schema: &str) -> Event<'_> {
        Event {
            target: Target::Background(self),
            schema: schema.to_string(),
            record: Record::new(),
        }
    }

    /// Waits until every queued event was sent; returns the failures since the last flush
    /// (events that failed validation or could not be written), never hiding one.
    pub async fn flush(&self) -> Result<Vec<ProducerError>, ProducerError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.flush_tx
            .send(done)
            .await
            .map_err(|_| ProducerError::Closed)?;
        wait.await.map_err(|_| ProducerError::Closed)?;
        Ok(std::mem::take(
            &mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}
