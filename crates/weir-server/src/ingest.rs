//! `POST /v1/ingest/{schema}`: records validated against the registry, then appended to the
//! schema's Redis stream in one Lua script (all of a request or nothing), with the request's
//! `Idempotency-Key` stored by the same script.

use crate::error::ApiError;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use weir_schema::{Registry, Schema, VersionSpec};
use weir_types::Record;

/// Appends every record (ARGV[3..]) to the stream KEYS[1] as the field ARGV[2], unless the
/// idempotency key KEYS[2] (when given) was seen: then it answers what the first request did.
/// Redis runs a script atomically, and it is replicated and written to the append-only file
/// as one unit: a crash leaves all of the request's records and its key, or none.
const APPEND: &str = r#"
if #KEYS > 1 then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {1, tonumber(seen)} end
end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[i])
end
local n = #ARGV - 2
if #KEYS > 1 then redis.call('SET', KEYS[2], n, 'EX', ARGV[1]) end
return {0, n}
"#;

/// At most this many bad records are described in a 400 (the count is always given).
const MAX_REPORTED: usize = 1000;

/// The ingest endpoint's state.
pub struct Ingest {
    url: String,
    ca_file: Option<std::path::PathBuf>,
    streams: BTreeMap<String, String>,
    ttl: Duration,
    registry: Registry,
    conn: OnceCell<ConnectionManager>,
    schemas: Mutex<HashMap<String, Arc<Schema>>>,
    script: redis::Script,
    limits: BodyLimits,
}

/// `limits.ingest_records` and `limits.record_bytes`: beyond either, a request gets 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub records: usize,
    pub record_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            records: usize::MAX,
            record_bytes: usize::MAX,
        }
    }
}

/// The outcome of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub accepted: u64,
    /// The idempotency key was seen: nothing was appended.
    pub replayed: bool,
}

impl Ingest {
    pub fn new(
        url: String,
        streams: BTreeMap<String, String>,
        ttl: Duration,
        registry: Registry,
    ) -> Self {
        Ingest {
            url,
            ca_file: None,
            streams,
            ttl,
            registry,
            conn: OnceCell::new(),
            schemas: Mutex::new(HashMap::new()),
            script: redis::Script::new(APPEND),
            limits: BodyLimits::default(),
        }
    }

    /// At most `records` records per request, each at most `record_bytes` as JSON.
    pub fn with_limits(mut self, records: usize, record_bytes: usize) -> Self {
        self.limits = BodyLimits {
            records,
            record_bytes,
        };
        self
    }

    /// Trusts only the CA certificates of `ca_file` for a `rediss://` URL
    /// (`ingest.redis_ca_file`).
    pub fn with_ca_file(mut self, ca_file: Option<std::path::PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Forgets cached schemas (a new version was registered).
    pub fn schemas_changed(&self) {
        self.schemas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn schema(&self, name: &str) -> Result<Arc<Schema>, ApiError> {
        let mut cache = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(name) {
            return Ok(s.clone());
        }
        let schema = self
            .registry
            .get(name, VersionSpec::Latest)
            .map_err(|e| ApiError::not_found(format!("schema `{name}`: {e}")))?;
        let schema = Arc::new(schema);
        cache.insert(name.to_string(), schema.clone());
        Ok(schema)
    }

    async fn conn(&self) -> Result<ConnectionManager, ApiError> {
        self.conn
            .get_or_try_init(|| async {
                // The connectors' client: `rediss://` verified against the system's roots or
                // `ingest.redis_ca_file`; a TLS failure says so (and names no password).
                weir_connectors::connect_redis(
                    &self.url,
                    self.ca_file.as_deref(),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|e| match e {
                    weir_connectors::ConnectorError::Config { .. } => {
                        ApiError::internal(format!("ingest Redis: {e}"))
                    }
                    weir_connectors::ConnectorError::Tls { .. } => ApiError::unavailable(
                        "redis_unavailable",
                        format!("ingest Redis: {e} (ingest.redis_ca_file)"),
                    ),
                    other => {
                        ApiError::unavailable("redis_unavailable", format!("ingest Redis: {other}"))
                    }
                })
            })
            .await
            .cloned()
    }

    /// Validates the body's records and appends them; see the module docs.
    pub async fn ingest(
        &self,
        schema_name: &str,
        body: &[u8],
        key: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        let stream = self.streams.get(schema_name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no ingest stream is configured for schema `{schema_name}` (server config: ingest.streams)"
            ))
        })?;
        let schema = self.schema(schema_name)?;
        let payloads = validate_body(&schema, body, self.limits)?;
        if payloads.is_empty() {
            return Ok(Accepted {
                accepted: 0,
                replayed: false,
            });
        }
        let mut conn = self.conn().await?;
        let mut invocation = self.script.key(stream);
        if let Some(k) = key {
            invocation.key(format!("weir:idempotency:{stream}:{k}"));
        }
        invocation.arg(self.ttl.as_secs().max(1)).arg("data");
        for p in &payloads {
            invocation.arg(&p[..]);
        }
        let (seen, n): (i64, u64) = invocation.invoke_async(&mut conn).await.map_err(|e| {
            ApiError::unavailable(
                "redis_unavailable",
                format!("appending to the stream `{stream}` failed: {e}"),
            )
        })?;
        Ok(Accepted {
            accepted: n,
            replayed: seen == 1,
        })
    }
}

/// Parses one JSON object, a JSON array or NDJSON; validates every record; returns each valid
/// record as JSON, or a 400 naming every bad record (index from 0) and field. More records
/// than `limits.records`, or a record whose JSON is longer than `limits.record_bytes`: 413
/// naming the limit (and the record's index).
pub fn validate_body(
    schema: &Schema,
    body: &[u8],
    limits: BodyLimits,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let values = parse_body(body)?;
    if values.len() > limits.records {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "the request holds {} records; limits.ingest_records allows {} per request: send them in several requests",
                values.len(),
                limits.records
            ),
        )
        .with("limit", "limits.ingest_records")
        .with("max", limits.records)
        .with("records", values.len()));
    }
    let mut out = Vec::with_capacity(values.len());
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    for (index, value) in values.into_iter().enumerate() {
        let record = match Record::from_json(value) {
            Ok(r) => r,
            Err(e) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(json!({"index": index, "message": e.to_string(), "fields": []}));
                }
                continue;
            }
        };
        match schema.validate(record) {
            Ok(record) => {
                let mut buf = Vec::with_capacity(128);
                record.write_json(&mut buf);
                if buf.len() > limits.record_bytes {
                    return Err(ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "record_too_large",
                        format!(
                            "record {index} is {} bytes as JSON; limits.record_bytes allows {}; nothing was appended",
                            buf.len(),
                            limits.record_bytes
                        ),
                    )
                    .with("limit", "limits.record_bytes")
                    .with("max", limits.record_bytes)
                    .with("index", index));
                }
                if bad_count == 0 {
                    out.push(buf);
                }
            }
            Err(e) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    let fields: Vec<Value> = e
                        .problems()
                        .iter()
                        .map(|p| json!({"field": &*p.field, "problem": p.to_string()}))
                        .collect();
                    bad.push(json!({"index": index, "message": e.to_string(), "fields": fields}));
                }
            }
        }
    }
    if bad_count > 0 {
        let first = bad
            .first()
            .and_then(|b| b["message"].as_str())
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::bad_request(
            "invalid_records",
            format!(
                "{bad_count} record(s) do not match schema {}; nothing was appended. First: record {}: {first}",
                schema.name(),
                bad.first().map(|b| b["index"].clone()).unwrap_or_default()
            ),
        )
        .with("invalid", bad_count)
        .with("records", bad));
    }
    Ok(out)
}

fn parse_body(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let mut values = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (count, item) in stream.enumerate() {
        let value = item.map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!(
                    "the body is not JSON, a JSON array or NDJSON: record {count} (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            )
            .with("index", count)
            .with("line", e.line())
        })?;
        match value {
            Value::Array(items) if count == 0 => values.extend(items),
            other => values.push(other),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_yaml(
            "name: t.e\nfields:\n  - { name: id, type: int, required: true }\n  - { name: page, type: string }\n",
            "t.yaml",
        )
        .expect("schema")
    }

    #[test]
    fn object_array_and_ndjson() {
        let s = schema();
        assert_eq!(
            validate_body(&s, br#"{"id": 1}"#, BodyLimits::default())
                .expect("one")
                .len(),
            1
        );
        assert_eq!(
            validate_body(&s, br#"[{"id": 1}, {"id": 2}]"#, BodyLimits::default())
                .expect("array")
                .len(),
            2
        );
        assert_eq!(
            validate_body(
                &s,
                b"{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n",
                BodyLimits::default()
            )
            .expect("ndjson")
            .len(),
            3
        );
    }

    #[test]
    fn every_bad_record_is_named_with_its_field() {
        let s = schema();
        let e = validate_body(
            &s,
            b"{\"id\": 1}\n{\"page\": \"x\"}\n{\"id\": \"no\"}\n",
            BodyLimits::default(),
        )
        .expect_err("invalid");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        let body = e.body();
        let records = body["error"]["records"].as_array().expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["index"], 1);
        assert_eq!(records[0]["fields"][0]["field"], "id");
        assert_eq!(records[1]["index"], 2);
        assert_eq!(records[1]["fields"][0]["field"], "id");
    }

    #[test]
    fn too_many_records_or_too_large_a_record_is_413_naming_it() {
        let s = schema();
        let limits = BodyLimits {
            records: 2,
            record_bytes: 30,
        };
        let e = validate_body(&s, b"{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n", limits)
            .expect_err("three records");
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "too_many_records");
        assert!(e.message.contains("limits.ingest_records"), "{}", e.message);
        let long = format!(
            "[{{\"id\": 1}}, {{\"id\": 2, \"page\": \"{}\"}}]",
            "x".repeat(40)
        );
        let e = validate_body(&s, long.as_bytes(), limits).expect_err("a long record");
        assert_eq!(e.code, "record_too_large");
        assert_eq!(e.body()["error"]["index"], 1);
        assert!(e.message.contains("record 1"), "{}", e.message);
        assert_eq!(
            validate_body(&s, b"[{\"id\": 1}, {\"id\": 2}]", limits)
                .expect("within the limits")
                .len(),
            2
        );
    }

    #[test]
    fn broken_json_names_the_record() {
        let e = validate_body(
            &schema(),
            b"{\"id\": 1}\n{\"id\": \n",
            BodyLimits::default(),
        )
        .expect_err("json");
        assert_eq!(e.code, "invalid_json");
        assert_eq!(e.body()["error"]["index"], 1);
    }
}
