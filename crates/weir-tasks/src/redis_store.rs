//! The shared store: tasks in Redis, queued on Redis Streams read through one consumer group,
//! so that several servers serve one queue.
//!
//! Keys (all under `prefix`):
//! - `{prefix}:task:{id}`: hash `status`, `rec` (the record's JSON), `late:N` (attempts that
//!   finished after the task had ended, discarded but kept), `late_n`;
//! - `{prefix}:q:{priority}`: one stream per priority, entries `id = task id`; consumer group
//!   `weir-tasks`, one consumer per server;
//! - `{prefix}:priorities`: sorted set of the priorities that have a stream;
//! - `{prefix}:idem:{key}`: idempotency key → task id (`SET NX` in the submit script);
//! - `{prefix}:live`, `{prefix}:finished`: sorted sets of queued/running tasks (by submit
//!   time) and finished ones (by finish time), for lists.
//!
//! Every write that must not race another server is one Lua script (atomic in Redis): submit
//! (idempotency + record + `XADD`), take (the `n` entries first in aging order across the
//! priority streams, delivered with `XREADGROUP`, skipping finished tasks), renew (`XCLAIM
//! JUSTID` of this server's entries only), takeover (`XAUTOCLAIM` after `claim_timeout`),
//! update (a non-terminal state, only if the task is not finished) and finish (the terminal
//! state only if the task is not finished yet, then `XACK` + `XDEL`; a late one is kept as a
//! `late` attempt).

use crate::config::StoreConfig;
use crate::error::TaskError;
use crate::model::{Attempt, TaskRecord, TaskStatus};
use redis::Value;
use redis::aio::ConnectionManager;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The consumer group every server reads the priority streams through.
const GROUP: &str = "weir-tasks";
/// Most writes sent to Redis in one pipeline.
const MAX_PIPELINE: usize = 512;

const SUBMIT: &str = r#"
-- KEYS: task hash, idem key ('' = none), stream, priorities, live
-- ARGV: task id, rec, priority, submitted ms, prefix
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    local status = redis.call('HGET', ARGV[5] .. ':task:' .. existing, 'status')
    return {0, existing, status or 'queued'}
  end
  redis.call('SET', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'rec', ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
return {1, ARGV[1], 'queued'}
"#;

/// Shared by take and takeover: whether a task is finished (or gone); acknowledges and
/// deletes its entry if so.
const SKIP_FINISHED: &str = r#"
local function task_of(prefix, stream, entry, fields)
  local id
  for i = 1, #fields, 2 do if fields[i] == 'id' then id = fields[i + 1] end end
  local status, rec
  if id then
    local h = redis.call('HMGET', prefix .. ':task:' .. id, 'status', 'rec')
    status, rec = h[1], h[2]
  end
  if not status or not rec or (status ~= 'queued' and status ~= 'running') then
    redis.call('XACK', stream, ARGV[2], entry)
    redis.call('XDEL', stream, entry)
    return nil
  end
  return rec
end
"#;

const TAKE: &str = r#"
-- KEYS: priorities. ARGV: prefix, group, consumer, n, aging ms
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local n, aging = tonumber(ARGV[4]), tonumber(ARGV[5])
local cands = {}
for _, p in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local stream = prefix .. ':q:' .. p
  local last
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if ok then
    for _, g in ipairs(groups) do
      local name, lid
      for i = 1, #g, 2 do
        if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then lid = g[i + 1] end
      end
      if name == group then last = lid end
    end
  end
  if not last then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    last = '0-0'
  end
  for _, e in ipairs(redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', n)) do
    local dash = string.find(e[1], '-', 1, true)
    local ms = tonumber(string.sub(e[1], 1, dash - 1))
    local sq = tonumber(string.sub(e[1], dash + 1))
    table.insert(cands, {ms - tonumber(p) * aging, ms, sq, stream})
  end
end
table.sort(cands, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end)
local per = {}
local order = {}
for i = 1, math.min(n, #cands) do
  local s = cands[i][4]
  if not per[s] then per[s] = 0; table.insert(order, s) end
  per[s] = per[s] + 1
end
local out = {}
for _, s in ipairs(order) do
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', per[s], 'STREAMS', s, '>')
  if got then
    for _, e in ipairs(got[1][2]) do
      local rec = task_of(prefix, s, e[1], e[2])
      if rec then table.insert(out, e[1]); table.insert(out, rec) end
    end
  end
end
return out
"#;

const TAKEOVER: &str = r#"
-- KEYS: priorities. ARGV: prefix, group, consumer, n, min idle ms
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local out = {}
for _, p in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if n <= 0 then break end
  local stream = prefix .. ':q:' .. p
  local ok, got = pcall(redis.call, 'XAUTOCLAIM', stream, group, consumer, ARGV[5], '0-0', 'COUNT', n)
  if ok then
    for _, e in ipairs(got[2]) do
      if e and e[2] then
        local rec = task_of(prefix, stream, e[1], e[2])
        if rec then table.insert(out, e[1]); table.insert(out, rec); n = n - 1 end
      end
    end
  end
end
return out
"#;

const RENEW: &str = r#"
-- ARGV: prefix, group, consumer, then (priority, entry, task id) triples.
-- Returns per triple: 0 held (idle time reset), 1 lost (another server took it over or it is
-- no longer pending), 2 finished (cancelled on another server, or expired).
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 3 do
  local stream = prefix .. ':q:' .. ARGV[i]
  local entry, id = ARGV[i + 1], ARGV[i + 2]
  local status = redis.call('HGET', prefix .. ':task:' .. id, 'status')
  if not status or (status ~= 'queued' and status ~= 'running') then
    table.insert(out, 2)
  else
    local p = redis.call('XPENDING', stream, group, entry, entry, 1)
    if p[1] and p[1][2] == consumer then
      redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
      table.insert(out, 0)
    else
      table.insert(out, 1)
    end
  end
end
return out
"#;

const UPDATE: &str = r#"
-- KEYS: task hash. ARGV: status, rec. Only while the task is not finished.
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rec', ARGV[2])
return 1
"#;

const FINISH: &str = r#"
-- KEYS: task hash, stream, live, finished, idem key ('' = none)
-- ARGV: group, entry ('' = none), status, rec, finished ms, ttl ms, task id,
--       late attempt ('' = none), expected rec ('' = any)
-- Returns 1 when this wrote the terminal state, 0 when the task had already finished (the
-- attempt is kept as late), 2 when the record changed since it was read (expected rec), -1
-- when the task is unknown.
local status = redis.call('HGET', KEYS[1], 'status')
local result
if not status then
  result = -1
elseif status ~= 'queued' and status ~= 'running' then
  if ARGV[8] ~= '' then
    local n = redis.call('HINCRBY', KEYS[1], 'late_n', 1)
    redis.call('HSET', KEYS[1], 'late:' .. n, ARGV[8])
  end
  result = 0
elseif ARGV[9] ~= '' and redis.call('HGET', KEYS[1], 'rec') ~= ARGV[9] then
  return 2
else
  redis.call('HSET', KEYS[1], 'status', ARGV[3], 'rec', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('ZREM', KEYS[3], ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
  if KEYS[5] ~= '' then redis.call('PEXPIRE', KEYS[5], ARGV[6]) end
  result = 1
end
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
return result
"#;

const ACK: &str = r#"
-- KEYS: stream. ARGV: group, entry.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"#;

/// A task taken from the queue (new, or taken over from another server).
pub(crate) struct Taken {
    pub entry: String,
    pub rec: TaskRecord,
}

/// What [`RedisStore::renew`] found for one held entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Still this server's (idle time reset).
    Held,
    /// Taken over by another server (this server was too slow to renew), or acknowledged.
    Lost,
    /// The task finished elsewhere (cancelled on another server) or expired.
    Finished,
}

/// The outcome of a submit.
pub(crate) struct Submitted {
    pub task_id: String,
    pub status: TaskStatus,
    pub created: bool,
}

struct Op {
    cmd: redis::Cmd,
    done: Option<oneshot::Sender<Result<Value, TaskError>>>,
}

/// The scripts' texts, sent with `EVAL` (Redis caches each compiled script by its hash, and
/// nothing breaks when a Redis restart empties that cache).
struct Scripts {
    all: Vec<String>,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            all: vec![
                SUBMIT.to_string(),
                format!("{SKIP_FINISHED}{TAKE}"),
                format!("{SKIP_FINISHED}{TAKEOVER}"),
                RENEW.to_string(),
                UPDATE.to_string(),
                FINISH.to_string(),
                ACK.to_string(),
            ],
        }
    }
}

const S_SUBMIT: usize = 0;
const S_TAKE: usize = 1;
const S_TAKEOVER: usize = 2;
const S_RENEW: usize = 3;
const S_UPDATE: usize = 4;
const S_FINISH: usize = 5;
const S_ACK: usize = 6;

/// The Redis task store of one server.
pub(crate) struct RedisStore {
    prefix: String,
    consumer: String,
    pub claim_timeout: Duration,
    ttl_ms: u64,
    aging_ms: i64,
    url: String,
    conn: ConnectionManager,
    client: redis::Client,
    /// Blocking connections for the synchronous reads (get, list, cancel).
    idle: Mutex<Vec<redis::Connection>>,
    scripts: Scripts,
    tx: Mutex<Option<mpsc::UnboundedSender<Op>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn store_error(url: &str, what: &str, e: impl std::fmt::Display) -> TaskError {
    TaskError::Store {
        path: url.to_string(),
        message: format!("{what}: {e}"),
    }
}

fn decode_rec(url: &str, id: &str, bytes: &[u8]) -> Result<TaskRecord, TaskError> {
    serde_json::from_slice(bytes)
        .map_err(|e| store_error(url, &format!("task {id} has an unreadable record"), e))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl RedisStore {
    /// Connects (within 5 s) and loads the scripts.
    pub async fn open(
        config: &StoreConfig,
        results_ttl: Duration,
        aging: Duration,
    ) -> Result<RedisStore, TaskError> {
        let url = config.redis_url().map_err(|m| TaskError::Invalid {
            field: "store",
            message: m,
        })?;
        let shown = weir_connectors::config::without_credentials(&url);
        let fail = |e: weir_connectors::ConnectorError| store_error(&shown, "connect", e);
        let client =
            weir_connectors::redis_client(&url, config.ca_file.as_deref()).map_err(fail)?;
        let conn = weir_connectors::connect_redis(
            &url,
            config.ca_file.as_deref(),
            Duration::from_secs(10),
        )
        .await
        .map_err(fail)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| store_error(&shown, "PING", e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(conn.clone(), rx, shown.clone()));
        Ok(RedisStore {
            prefix: config.prefix.clone(),
            consumer: config.consumer_name(),
            claim_timeout: config.claim_timeout,
            ttl_ms: results_ttl.as_millis() as u64,
            aging_ms: aging.as_millis().min(i64::MAX as u128) as i64,
            url: shown,
            conn,
            client,
            idle: Mutex::new(Vec::new()),
            scripts: Scripts::new(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Where the store is, for errors and logs (credentials removed).
    pub fn describe(&self) -> String {
        format!(
            "{} prefix {} consumer {}",
            self.url, self.prefix, self.consumer
        )
    }

    fn task_key(&self, id: &str) -> String {
        format!("{}:task:{id}", self.prefix)
    }

    fn stream_key(&self, priority: i32) -> String {
        format!("{}:q:{priority}", self.prefix)
    }

    fn idem_key(&self, key: &Option<String>) -> String {
        match key {
            Some(k) => format!("{}:idem:{k}", self.prefix),
            None => String::new(),
        }
    }

    fn eval(&self, script: usize, keys: &[String], args: Vec<Vec<u8>>) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.scripts.all[script]).arg(keys.len()).arg(keys);
        for a in args {
            cmd.arg(a);
        }
        cmd
    }

    fn send(&self, op: Op) -> Result<(), TaskError> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(op).map_err(|_| TaskError::ShutDown),
            None => Err(TaskError::ShutDown),
        }
    }

    /// Sends a write; its result is awaited only when `wait`.
    fn write(
        &self,
        script: usize,
        keys: &[String],
        args: Vec<Vec<u8>>,
        wait: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Value, TaskError>>>, TaskError> {
        let (done, rx) = if wait {
            let (d, r) = oneshot::channel();
            (Some(d), Some(r))
        } else {
            (None, None)
        };
        self.send(Op {
            cmd: self.eval(script, keys, args),
            done,
        })?;
        Ok(rx)
    }

    /// Submits a task (or finds the task of its idempotency key). Returns once Redis has it.
    pub async fn submit(&self, rec: &TaskRecord) -> Result<Submitted, TaskError> {
        let keys = [
            self.task_key(&rec.task_id),
            self.idem_key(&rec.idempotency_key),
            self.stream_key(rec.priority),
            format!("{}:priorities", self.prefix),
            format!("{}:live", self.prefix),
        ];
        let args = vec![
            rec.task_id.clone().into_bytes(),
            crate::store::encode(rec),
            rec.priority.to_string().into_bytes(),
            rec.submitted_ms.to_string().into_bytes(),
            self.prefix.clone().into_bytes(),
        ];
        let wait = self
            .write(S_SUBMIT, &keys, args, true)?
            .ok_or(TaskError::ShutDown)?;
        let value = wait.await.map_err(|_| TaskError::ShutDown)??;
        let Value::Array(items) = value else {
            return Err(store_error(
                &self.url,
                "submit",
                format!("unexpected reply {value:?}"),
            ));
        };
        let created = matches!(items.first(), Some(Value::Int(1)));
        let task_id = items.get(1).and_then(text).unwrap_or_default();
        let status = items
            .get(2)
            .and_then(text)
            .and_then(|s| s.parse().ok())
            .unwrap_or(TaskStatus::Queued);
        Ok(Submitted {
            task_id,
            status,
            created,
        })
    }

    fn taken(&self, value: Value) -> Result<Vec<Taken>, TaskError> {
        let Value::Array(items) = value else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let (Some(entry), Some(Value::BulkString(rec))) =
                (pair.first().and_then(text), pair.get(1))
            else {
                continue;
            };
            out.push(Taken {
                rec: decode_rec(&self.url, &entry, rec)?,
                entry,
            });
        }
        Ok(out)
    }

    /// TAKE or TAKEOVER: over the priority streams, for this consumer, at most `n`, with
    /// the aging step or the idle time.
    fn queue_script(&self, script: usize, n: usize, ms: i64) -> redis::Cmd {
        let keys = [format!("{}:priorities", self.prefix)];
        let args = vec![
            self.prefix.clone().into_bytes(),
            GROUP.as_bytes().to_vec(),
            self.consumer.clone().into_bytes(),
            n.to_string().into_bytes(),
            ms.to_string().into_bytes(),
        ];
        self.eval(script, &keys, args)
    }

    /// Takes up to `n` queued tasks, first in aging order across the priorities, for this
    /// server (they stay pending on its consumer until finished).
    pub async fn take(&self, n: usize) -> Result<Vec<Taken>, TaskError> {
        let value: Value = self
            .queue_script(S_TAKE, n, self.aging_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| store_error(&self.url, "take", e))?;
        self.taken(value)
    }

    /// Takes over up to `n` entries pending longer than `claim_timeout` on any consumer (a
    /// server that died, or this one before a restart).
    pub async fn takeover(&self, n: usize) -> Result<Vec<Taken>, TaskError> {
        let value: Value = self
            .queue_script(S_TAKEOVER, n, self.claim_timeout.as_millis() as i64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| store_error(&self.url, "takeover", e))?;
        self.taken(value)
    }

    /// Resets the idle time of the entries this server holds; says which it still holds.
    pub async fn renew(&self, held: &[(i32, String, String)]) -> Result<Vec<Claim>, TaskError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            GROUP.as_bytes().to_vec(),
            self.consumer.clone().into_bytes(),
        ];
        for (priority, entry, id) in held {
            args.push(priority.to_string().into_bytes());
            args.push(entry.clone().into_bytes());
            args.push(id.clone().into_bytes());
        }
        let codes: Vec<i64> = self
            .eval(S_RENEW, &[], args)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| store_error(&self.url, "renew", e))?;
        Ok(codes
            .into_iter()
            .map(|c| match c {
                0 => Claim::Held,
                1 => Claim::Lost,
                _ => Claim::Finished,
            })
            .collect())
    }

    /// Writes a non-terminal state (running, queued for a retry) unless the task finished.
    pub fn update(&self, rec: &TaskRecord) {
        let keys = [self.task_key(&rec.task_id)];
        let args = vec![
            rec.status.as_str().as_bytes().to_vec(),
            crate::store::encode(rec),
        ];
        if self.write(S_UPDATE, &keys, args, false).is_err() {
            tracing::debug!(target: "weir_tasks", "update after shutdown dropped");
        }
    }

    fn finish_keys(&self, rec: &TaskRecord) -> [String; 5] {
        [
            self.task_key(&rec.task_id),
            self.stream_key(rec.priority),
            format!("{}:live", self.prefix),
            format!("{}:finished", self.prefix),
            self.idem_key(&rec.idempotency_key),
        ]
    }

    fn finish_args(&self, rec: &TaskRecord, entry: Option<&str>, expected: &[u8]) -> Vec<Vec<u8>> {
        let late = match rec.attempts.last() {
            Some(a) if rec.status != TaskStatus::Cancelled => {
                let mut a = a.clone();
                a.error = Some(match a.error {
                    Some(e) => format!("{e} (finished after the task had ended: discarded)"),
                    None => "finished after the task had ended: discarded".into(),
                });
                serde_json::to_vec(&a).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        vec![
            GROUP.as_bytes().to_vec(),
            entry.unwrap_or("").as_bytes().to_vec(),
            rec.status.as_str().as_bytes().to_vec(),
            crate::store::encode(rec),
            rec.finished_ms.unwrap_or(0).to_string().into_bytes(),
            self.ttl_ms.max(1).to_string().into_bytes(),
            rec.task_id.clone().into_bytes(),
            late,
            expected.to_vec(),
        ]
    }

    /// Writes the terminal state once: only if the task has not finished yet (else the attempt
    /// is kept as late), then acknowledges its entry. Not awaited.
    pub fn finish(&self, rec: &TaskRecord, entry: Option<&str>) {
        let keys = self.finish_keys(rec);
        let args = self.finish_args(rec, entry, b"");
        if self.write(S_FINISH, &keys, args, false).is_err() {
            tracing::debug!(target: "weir_tasks", "finish after shutdown dropped");
        }
    }

    /// Acknowledges (and deletes) an entry whose task finished elsewhere.
    pub fn ack(&self, priority: i32, entry: &str) {
        let keys = [self.stream_key(priority)];
        let args = vec![GROUP.as_bytes().to_vec(), entry.as_bytes().to_vec()];
        let _ = self.write(S_ACK, &keys, args, false);
    }

    /// Waits until every write sent so far has been answered.
    #[cfg(test)]
    pub async fn flush(&self) -> Result<(), TaskError> {
        let keys = [format!("{}:flush", self.prefix)];
        // An UPDATE of a key that does not exist changes nothing.
        match self.write(
            S_UPDATE,
            &keys,
            vec![b"queued".to_vec(), b"".to_vec()],
            true,
        )? {
            Some(w) => w.await.map_err(|_| TaskError::ShutDown)?.map(|_| ()),
            None => Ok(()),
        }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, TaskError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .map_err(|e| store_error(&self.url, "connect", e))?;
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
                c
            }
        };
        let result = f(&mut conn);
        match &result {
            // A broken connection is dropped; the next call opens another.
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {}
            _ => self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn),
        }
        result.map_err(|e| store_error(&self.url, "read", e))
    }

    /// The record of a task with its late attempts, and the record's JSON as stored (for
    /// [`cancel`](Self::cancel)'s compare-and-set).
    pub fn get(&self, id: &str) -> Result<Option<(TaskRecord, Vec<u8>)>, TaskError> {
        let key = self.task_key(id);
        let fields: Vec<(String, Vec<u8>)> =
            self.with_conn(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        let mut rec = None;
        let mut late: Vec<(u64, Attempt)> = Vec::new();
        for (name, value) in fields {
            if name == "rec" {
                rec = Some((decode_rec(&self.url, id, &value)?, value));
            } else if let Some(n) = name.strip_prefix("late:")
                && let Ok(a) = serde_json::from_slice::<Attempt>(&value)
            {
                late.push((n.parse().unwrap_or(0), a));
            }
        }
        late.sort_by_key(|(n, _)| *n);
        Ok(rec.map(|(mut r, raw)| {
            r.attempts.extend(late.into_iter().map(|(_, a)| a));
            (r, raw)
        }))
    }

    /// Only the status of a task.
    pub fn status(&self, id: &str) -> Result<Option<TaskStatus>, TaskError> {
        let key = self.task_key(id);
        let status: Option<String> =
            self.with_conn(|c| redis::cmd("HGET").arg(&key).arg("status").query(c))?;
        Ok(status.and_then(|s| s.parse().ok()))
    }

    /// Cancels a task that is not finished and not held by this server: writes the cancelled
    /// record if the stored one is still `expected` (else the caller reads again). Returns
    /// whether it was written.
    pub fn cancel(&self, rec: &TaskRecord, expected: &[u8]) -> Result<Option<bool>, TaskError> {
        let keys = self.finish_keys(rec);
        let args = self.finish_args(rec, None, expected);
        let cmd = self.eval(S_FINISH, &keys, args);
        let code: i64 = self.with_conn(|c| cmd.query(c))?;
        Ok(match code {
            1 => Some(true),
            2 | 0 => Some(false),
            _ => None,
        })
    }

    /// Ids of queued and running tasks (newest first), then of finished ones (most recently
    /// finished first); finished ones older than `results_ttl` are dropped from the index.
    pub fn list_ids(&self, now_ms: u64) -> Result<(Vec<String>, Vec<String>), TaskError> {
        let live_key = format!("{}:live", self.prefix);
        let finished_key = format!("{}:finished", self.prefix);
        let expired = now_ms.saturating_sub(self.ttl_ms);
        let (live, finished): (Vec<String>, Vec<String>) = self.with_conn(|c| {
            redis::pipe()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&finished_key)
                .arg("-inf")
                .arg(expired)
                .ignore()
                .cmd("ZREVRANGE")
                .arg(&live_key)
                .arg(0)
                .arg(-1)
                .cmd("ZREVRANGE")
                .arg(&finished_key)
                .arg(0)
                .arg(-1)
                .query(c)
        })?;
        Ok((live, finished))
    }

    /// The records of `ids` (those still kept), in order.
    pub fn records(&self, ids: &[String]) -> Result<Vec<TaskRecord>, TaskError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.task_key(id)).collect();
        let values: Vec<Option<Vec<u8>>> = self.with_conn(|c| {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HGET").arg(k).arg("rec");
            }
            pipe.query(c)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(values) {
            if let Some(v) = value {
                out.push(decode_rec(&self.url, id, &v)?);
            }
        }
        Ok(out)
    }

    /// Stops the writer after every write sent so far.
    pub async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = writer {
            let _ = w.await;
        }
    }
}

/// Sends the writes in order, as pipelines of what has queued up.
async fn writer(mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Op>, url: String) {
    let mut ops = Vec::with_capacity(MAX_PIPELINE);
    while rx.recv_many(&mut ops, MAX_PIPELINE).await > 0 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for op in &ops {
            pipe.add_command(op.cmd.clone());
        }
        let results: Result<Vec<redis::RedisResult<Value>>, _> = pipe.query_async(&mut conn).await;
        match results {
            Ok(results) => {
                for (op, result) in ops.drain(..).zip(results) {
                    let result = result.map_err(|e| store_error(&url, "write", e));
                    if let Err(e) = &result {
                        tracing::error!(target: "weir_tasks", "task store write failed: {e}");
                    }
                    if let Some(done) = op.done {
                        let _ = done.send(result);
                    }
                }
            }
            Err(e) => {
                let e = store_error(&url, "write", e);
                tracing::error!(target: "weir_tasks", "task store write failed: {e}");
                for op in ops.drain(..) {
                    if let Some(done) = op.done {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TaskRequest, now_ms};
    use crate::service::new_record;

    async fn store(url: &str, prefix: &str, consumer: &str) -> RedisStore {
        let mut config = StoreConfig::redis(url, prefix);
        config.claim_timeout = Duration::from_millis(200);
        config.consumer = Some(consumer.into());
        RedisStore::open(&config, Duration::from_secs(60), Duration::from_secs(10))
            .await
            .unwrap()
    }

    /// Two servers' stores, `a` and `b`, under a fresh prefix.
    async fn pair(url: &str) -> (RedisStore, RedisStore) {
        let prefix = prefix();
        (
            store(url, &prefix, "a").await,
            store(url, &prefix, "b").await,
        )
    }

    fn prefix() -> String {
        format!(
            "weir-test:store:{}:{:08x}",
            std::process::id(),
            fastrand::u32(..)
        )
    }

    fn finished(rec: &TaskRecord, agent: &str, result: i64) -> TaskRecord {
        let mut rec = rec.clone();
        rec.status = TaskStatus::Succeeded;
        rec.result = Some(serde_json::json!(result));
        rec.finished_ms = Some(now_ms());
        rec.attempts.push(Attempt {
            agent: agent.into(),
            status: TaskStatus::Succeeded,
            error: None,
            execution_time: 0.01,
        });
        rec
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renewed_entries_stay_and_unrenewed_ones_are_taken_over() {
        let Some(url) = weir_connectors::testing::redis_url().await else {
            return;
        };
        let (a, b) = pair(&url).await;
        let rec = new_record(TaskRequest::new("work", serde_json::json!(1)), 1);
        assert!(a.submit(&rec).await.unwrap().created);
        let taken = a.take(10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].rec.task_id, rec.task_id);
        assert!(b.take(10).await.unwrap().is_empty(), "delivered once");
        let held = [(0, taken[0].entry.clone(), rec.task_id.clone())];
        // Renewed more often than claim_timeout: never taken over.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            assert_eq!(a.renew(&held).await.unwrap(), [Claim::Held]);
            assert!(b.takeover(10).await.unwrap().is_empty());
        }
        // Not renewed for longer than claim_timeout: `b` takes it over; `a` has lost it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let over = b.takeover(10).await.unwrap();
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].entry, taken[0].entry);
        assert_eq!(a.renew(&held).await.unwrap(), [Claim::Lost]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_terminal_write_happens_once_and_a_late_attempt_is_kept() {
        let Some(url) = weir_connectors::testing::redis_url().await else {
            return;
        };
        let (a, b) = pair(&url).await;
        let rec = new_record(TaskRequest::new("work", serde_json::json!(1)), 1);
        a.submit(&rec).await.unwrap();
        let taken = a.take(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let over = b.takeover(1).await.unwrap();
        assert_eq!(over.len(), 1);
        let entry = taken[0].entry.clone();
        // `b` finishes first; `a`, which was too slow, finishes late.
        b.finish(&finished(&over[0].rec, "b", 2), Some(&entry));
        b.flush().await.unwrap();
        a.finish(&finished(&taken[0].rec, "a", 1), Some(&entry));
        a.flush().await.unwrap();
        let (stored, _) = a.get(&rec.task_id).unwrap().unwrap();
        assert_eq!(stored.status, TaskStatus::Succeeded);
        assert_eq!(
            stored.result,
            Some(serde_json::json!(2)),
            "the first result stays"
        );
        let agents: Vec<&str> = stored.attempts.iter().map(|t| t.agent.as_str()).collect();
        assert_eq!(agents, ["b", "a"], "the late attempt is kept");
        assert!(
            stored.attempts[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("discarded")),
            "{:?}",
            stored.attempts[1]
        );
        assert_eq!(a.status(&rec.task_id).unwrap(), Some(TaskStatus::Succeeded));
        // The entry is acknowledged: nothing left to take over, and the holder learns it ended.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(b.takeover(10).await.unwrap().is_empty());
        let held = [(0, entry, rec.task_id.clone())];
        assert_eq!(a.renew(&held).await.unwrap(), [Claim::Finished]);
        // A cancel of a finished task writes nothing.
        let (stored, raw) = b.get(&rec.task_id).unwrap().unwrap();
        let mut cancelled = stored.clone();
        cancelled.status = TaskStatus::Cancelled;
        assert_eq!(b.cancel(&cancelled, &raw).unwrap(), Some(false));
        assert_eq!(b.status(&rec.task_id).unwrap(), Some(TaskStatus::Succeeded));
    }
}
