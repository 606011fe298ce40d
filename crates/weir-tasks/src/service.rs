//! [`TaskService`]: the queue, the dispatcher, supervision and retention.

use crate::agent::{Agent, HealthProbe, TaskInput};
use crate::config::{AgentSpec, AgentsConfig, HealthConfig, StoreType, validate_policy};
use crate::error::{AgentError, TaskError};
use crate::metrics::{Counters, TaskMetrics};
use crate::model::{
    Attempt, MAX_LIST, TaskAccepted, TaskFilter, TaskRecord, TaskRequest, TaskStatus, TaskSummary,
    TaskView, now_ms,
};
use crate::redis_store::{Claim, RedisStore, Taken};
use crate::store::{Store, Write, encode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use weir_resilience::{Backoff, BreakerPermit, BreakerState, CircuitBreaker, RateLimiter};

/// An agent as `GET /v1/agents` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    /// Its name.
    pub name: String,
    /// The actions it serves, sorted.
    pub capabilities: Vec<String>,
    /// `healthy`, `unhealthy` (health check failing), `circuit_open` or `half_open` (breaker).
    pub health: String,
    /// Attempts running on it now.
    pub in_flight: usize,
    /// Its `concurrency`.
    pub concurrency: usize,
    /// Attempts that succeeded on it.
    pub succeeded: u64,
    /// Attempts that failed or timed out on it.
    pub failed: u64,
    /// Mean attempt latency in seconds (none before the first attempt).
    pub latency: Option<f64>,
}

/// What [`TaskService::cancel`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The task was queued or running and is now `cancelled`.
    Cancelled(TaskView),
    /// The task had already finished; nothing changed.
    AlreadyFinished(TaskView),
    /// No such task (never submitted, or removed after `results_ttl`).
    NotFound,
}

struct AgentSlot {
    name: String,
    capabilities: HashSet<String>,
    concurrency: usize,
    agent: Arc<dyn Agent>,
    breaker: Option<CircuitBreaker>,
    limiter: Option<RateLimiter>,
    timeout: Option<Duration>,
    retries: u32,
    backoff: Backoff,
    health: Option<(HealthProbe, HealthConfig)>,
    healthy: AtomicBool,
    /// Changed only under the state lock.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    latency_us: AtomicU64,
    latency_n: AtomicU64,
}

impl AgentSlot {
    fn routable(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self
                .breaker
                .as_ref()
                .is_none_or(|b| b.state() != BreakerState::Open)
    }

    fn view(&self) -> AgentView {
        let mut capabilities: Vec<String> = self.capabilities.iter().cloned().collect();
        capabilities.sort();
        let health = if !self.healthy.load(Ordering::Relaxed) {
            "unhealthy"
        } else {
            match self.breaker.as_ref().map(|b| b.state()) {
                Some(BreakerState::Open) => "circuit_open",
                Some(BreakerState::HalfOpen) => "half_open",
                _ => "healthy",
            }
        };
        let n = self.latency_n.load(Ordering::Relaxed);
        AgentView {
            name: self.name.clone(),
            capabilities,
            health: health.into(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            concurrency: self.concurrency,
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            latency: (n > 0)
                .then(|| self.latency_us.load(Ordering::Relaxed) as f64 / n as f64 / 1e6),
        }
    }
}

type QueueKey = (String, Option<String>);
type Order = (i64, u64);

struct Live {
    rec: TaskRecord,
    order: Order,
    queued: bool,
    running_on: Option<usize>,
    attempt_started: Option<Instant>,
    cancel: Arc<Notify>,
    /// The task's stream entry, pending on this server (Redis store only).
    entry: Option<String>,
}

impl Live {
    fn new(rec: TaskRecord, order: Order, entry: Option<String>) -> Live {
        Live {
            rec,
            order,
            queued: false,
            running_on: None,
            attempt_started: None,
            cancel: Arc::new(Notify::new()),
            entry,
        }
    }
}

impl State {
    /// Takes a task that left `live` out of its queue, if it was queued.
    fn unqueue(&mut self, live: &Live) {
        if live.queued {
            if let Some(q) = self
                .queues
                .get_mut(&(live.rec.action.clone(), live.rec.pin.clone()))
            {
                q.remove(&live.order);
            }
            self.queued -= 1;
        }
    }
}

#[derive(Default)]
struct State {
    live: HashMap<String, Live>,
    queues: HashMap<QueueKey, BTreeMap<Order, String>>,
    idem: HashMap<String, String>,
    /// Finished tasks by finish time, with their idempotency key.
    finished: BTreeMap<(u64, String), Option<String>>,
    next_seq: u64,
    queued: usize,
    running: usize,
    closed: bool,
}

/// Where tasks are kept.
enum Backend {
    /// The embedded store: every task of the queue is in this process.
    Fjall(Store),
    /// Redis: this process holds only the tasks it took from the shared queue.
    Redis(Box<RedisStore>),
}

struct Shared {
    store: Backend,
    /// The sum of the agents' concurrency: the most tasks this server holds (Redis store).
    capacity: usize,
    /// Wakes the feeder (Redis store): a submit, or a slot freed.
    feed: Notify,
    agents: Vec<AgentSlot>,
    state: Mutex<State>,
    wake: Notify,
    finished_signal: Notify,
    counters: Counters,
    results_ttl: Duration,
    aging_ms: i64,
    default_timeout: Duration,
}

struct Dispatch {
    task_id: String,
    agent: usize,
    permit: Option<BreakerPermit>,
    input: TaskInput,
    timeout: Duration,
    cancel: Arc<Notify>,
}

enum Outcome {
    Done(Result<serde_json::Value, AgentError>),
    Cancelled,
}

/// The task service: submit, get, cancel, agents, metrics, shutdown. Runs its dispatcher,
/// health checks and retention sweeper on the current tokio runtime.
pub struct TaskService {
    shared: Arc<Shared>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("agents", &self.shared.agents.len())
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TaskService {
    /// Opens the store in `data_dir` (created if missing) with the agents of `config`, recovers
    /// its tasks (running ones are requeued) and starts dispatching. Needs a tokio runtime.
    pub async fn open(data_dir: &Path, config: AgentsConfig) -> Result<TaskService, TaskError> {
        Self::open_with(data_dir, config, Vec::new()).await
    }

    /// [`open`](Self::open) with in-process agents added to those of the file.
    pub async fn open_with(
        data_dir: &Path,
        config: AgentsConfig,
        extra: Vec<AgentSpec>,
    ) -> Result<TaskService, TaskError> {
        let mut specs = config.specs().map_err(|e| TaskError::Invalid {
            field: "agents",
            message: e.to_string(),
        })?;
        specs.extend(extra);
        let mut agents = Vec::with_capacity(specs.len());
        let mut names = HashSet::new();
        for spec in specs {
            if !names.insert(spec.name.clone()) {
                return Err(TaskError::Invalid {
                    field: "agents",
                    message: format!("agent {:?} is declared twice", spec.name),
                });
            }
            validate_policy(&spec.policy).map_err(|(key, message)| TaskError::Invalid {
                field: "agents",
                message: format!("agent {:?}: {key}: {message}", spec.name),
            })?;
            let p = &spec.policy;
            let breaker = p
                .circuit_breaker
                .clone()
                .map(|c| CircuitBreaker::named(spec.name.clone(), c));
            let limiter = match &p.rate_limit {
                Some(r) => Some(RateLimiter::try_per_second_f64(r.per_second).map_err(|e| {
                    TaskError::Invalid {
                        field: "agents",
                        message: format!("agent {:?}: policy.rate_limit: {e}", spec.name),
                    }
                })?),
                None => None,
            };
            agents.push(AgentSlot {
                name: spec.name,
                capabilities: spec.capabilities,
                concurrency: spec.concurrency.max(1),
                agent: spec.agent,
                breaker,
                limiter,
                timeout: p.timeout,
                retries: p.retries,
                backoff: p.backoff.clone(),
                health: spec.health,
                healthy: AtomicBool::new(true),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                succeeded: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                latency_us: AtomicU64::new(0),
                latency_n: AtomicU64::new(0),
            });
        }
        let (store, records) = match config.store.store_type {
            StoreType::Fjall => {
                let dir = data_dir.to_path_buf();
                let (store, records) = tokio::task::spawn_blocking(move || Store::open(&dir))
                    .await
                    .map_err(|e| TaskError::Store {
                        path: data_dir.display().to_string(),
                        message: e.to_string(),
                    })??;
                (Backend::Fjall(store), records)
            }
            StoreType::Redis => {
                let store =
                    RedisStore::open(&config.store, config.results_ttl, config.aging).await?;
                (Backend::Redis(Box::new(store)), Vec::new())
            }
        };
        let capacity = agents.iter().map(|a| a.concurrency).sum();
        let shared = Arc::new(Shared {
            store,
            capacity,
            feed: Notify::new(),
            agents,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            finished_signal: Notify::new(),
            counters: Counters::default(),
            results_ttl: config.results_ttl,
            aging_ms: config.aging.as_millis().min(i64::MAX as u128) as i64,
            default_timeout: config.default_timeout,
        });
        shared.recover(records);
        let service = TaskService {
            shared: shared.clone(),
            background: Mutex::new(Vec::new()),
        };
        let mut background = Vec::new();
        background.push(tokio::spawn(dispatcher(shared.clone())));
        match &shared.store {
            Backend::Fjall(_) => background.push(tokio::spawn(sweeper(shared.clone()))),
            // Redis expires finished tasks itself (PEXPIRE at the terminal write).
            Backend::Redis(_) => {
                background.push(tokio::spawn(feeder(shared.clone())));
                background.push(tokio::spawn(renewer(shared.clone())));
            }
        }
        for i in 0..shared.agents.len() {
            if shared.agents[i].health.is_some() {
                background.push(tokio::spawn(health_loop(shared.clone(), i)));
            }
        }
        *service.background.lock().unwrap_or_else(|p| p.into_inner()) = background;
        Ok(service)
    }

    /// Accepts a task: once this returns, the task is on disk (fsynced). A request whose
    /// `idempotency_key` matches a kept task returns that task and creates nothing.
    pub async fn submit(&self, request: TaskRequest) -> Result<TaskAccepted, TaskError> {
        let s = &self.shared;
        if request.action.trim().is_empty() {
            return Err(TaskError::Invalid {
                field: "action",
                message: "expected a non-empty action".into(),
            });
        }
        if !s.servable(&request.action, request.agent.as_deref()) {
            return Err(TaskError::NoAgent {
                action: request.action,
                agent: request.agent,
            });
        }
        if let Backend::Redis(redis) = &s.store {
            let rec = {
                let mut st = lock(&s.state);
                if st.closed {
                    return Err(TaskError::ShutDown);
                }
                st.next_seq += 1;
                new_record(request, st.next_seq)
            };
            let submitted = redis.submit(&rec).await?;
            if submitted.created {
                s.counters.count(TaskStatus::Queued);
                s.feed.notify_one();
            }
            return Ok(TaskAccepted {
                task_id: submitted.task_id,
                status: submitted.status,
                created: submitted.created,
            });
        }
        let wait = {
            let mut st = lock(&s.state);
            if st.closed {
                return Err(TaskError::ShutDown);
            }
            if let Some(existing) = request
                .idempotency_key
                .as_ref()
                .and_then(|k| st.idem.get(k))
                .cloned()
            {
                Err(existing)
            } else {
                let seq = st.next_seq;
                st.next_seq += 1;
                let rec = new_record(request, seq);
                let task_id = rec.task_id.clone();
                if let Some(k) = &rec.idempotency_key {
                    st.idem.insert(k.clone(), task_id.clone());
                }
                // Sent under the lock: a task's writes reach the writer in the order of its
                // transitions.
                let wait = s
                    .fjall()
                    .send_durable(vec![Write::Put(task_id.clone(), encode(&rec))]);
                let order = s.order(&rec);
                st.live.insert(task_id.clone(), Live::new(rec, order, None));
                Ok((task_id, wait))
            }
        };
        let (task_id, wait) = match wait {
            Ok(w) => w,
            Err(existing) => {
                // The first submit may still be waiting for its sync: wait for ours too.
                s.fjall().write_durable(Vec::new()).await?;
                let status = self
                    .get(&existing)?
                    .map(|v| v.status)
                    .unwrap_or(TaskStatus::Queued);
                return Ok(TaskAccepted {
                    task_id: existing,
                    status,
                    created: false,
                });
            }
        };
        let written = match wait {
            Ok(w) => w.await.map_err(|_| TaskError::ShutDown).and_then(|r| r),
            Err(e) => Err(e),
        };
        let mut st = lock(&s.state);
        if let Err(e) = written {
            if let Some(live) = st.live.remove(&task_id)
                && let Some(k) = &live.rec.idempotency_key
            {
                st.idem.remove(k);
            }
            return Err(e);
        }
        s.counters.count(TaskStatus::Queued);
        let status = match st.live.get(&task_id) {
            Some(_) => {
                s.enqueue(&mut st, &task_id);
                TaskStatus::Queued
            }
            // Cancelled while its write was syncing.
            None => TaskStatus::Cancelled,
        };
        drop(st);
        s.wake.notify_one();
        Ok(TaskAccepted {
            task_id,
            status,
            created: true,
        })
    }

    /// The task, if known (kept until `results_ttl` after it finished).
    pub fn get(&self, task_id: &str) -> Result<Option<TaskView>, TaskError> {
        self.shared.get(task_id)
    }

    /// Tasks matching `filter`: queued and running ones first (newest submitted first), then
    /// finished ones (most recently finished first), at most `filter.limit` (default and most
    /// [`MAX_LIST`]).
    pub fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, TaskError> {
        let limit = filter.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
        let s = &self.shared;
        if let Backend::Redis(redis) = &s.store {
            let (live, finished) = redis.list_ids(now_ms())?;
            let mut out = Vec::new();
            for ids in [live, finished] {
                for chunk in ids.chunks(256) {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    for rec in redis.records(chunk)? {
                        if out.len() < limit && filter.matches(&rec) {
                            out.push(rec.summary());
                        }
                    }
                }
            }
            return Ok(out);
        }
        let (mut live, finished): (Vec<(u64, TaskSummary)>, Vec<String>) = {
            let st = lock(&s.state);
            let live = st
                .live
                .values()
                .filter(|l| filter.matches(&l.rec))
                .map(|l| (l.rec.seq, l.rec.summary()))
                .collect();
            let finished = if filter.status.is_none_or(TaskStatus::is_terminal) {
                st.finished.keys().rev().map(|(_, id)| id.clone()).collect()
            } else {
                Vec::new()
            };
            (live, finished)
        };
        live.sort_by_key(|t| std::cmp::Reverse(t.0));
        let mut out: Vec<TaskSummary> = live.into_iter().take(limit).map(|(_, t)| t).collect();
        for id in finished {
            if out.len() >= limit {
                break;
            }
            let recent = s
                .fjall()
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .cloned();
            let rec = match recent {
                Some(rec) => Some((*rec).clone()),
                None => s.fjall().get(&id)?,
            };
            if let Some(rec) = rec
                && filter.matches(&rec)
            {
                out.push(rec.summary());
            }
        }
        Ok(out)
    }

    /// Only the task's status (cheaper than [`get`](Self::get) for live tasks).
    pub fn status(&self, task_id: &str) -> Result<Option<TaskStatus>, TaskError> {
        if let Backend::Redis(redis) = &self.shared.store {
            return redis.status(task_id);
        }
        {
            let st = lock(&self.shared.state);
            if let Some(live) = st.live.get(task_id) {
                return Ok(Some(live.rec.status));
            }
        }
        Ok(self.shared.get(task_id)?.map(|v| v.status))
    }

    /// Cancels a queued or running task (a running attempt is dropped: an `http` request is
    /// abandoned, a `command` process group killed).
    pub fn cancel(&self, task_id: &str) -> Result<CancelOutcome, TaskError> {
        let s = &self.shared;
        let mut st = lock(&s.state);
        if st.closed {
            return Err(TaskError::ShutDown);
        }
        let Some(live) = st.live.get_mut(task_id) else {
            drop(st);
            if let Backend::Redis(redis) = &s.store {
                return s.cancel_shared(redis, task_id);
            }
            return Ok(match s.get(task_id)? {
                Some(view) => CancelOutcome::AlreadyFinished(view),
                None => CancelOutcome::NotFound,
            });
        };
        if let Some(agent) = live.running_on {
            let elapsed = live
                .attempt_started
                .map(|t| t.elapsed())
                .unwrap_or_default();
            live.rec.attempts.push(Attempt {
                agent: s.agents[agent].name.clone(),
                status: TaskStatus::Cancelled,
                error: Some("cancelled".into()),
                execution_time: elapsed.as_secs_f64(),
            });
            live.cancel.notify_one();
        }
        let view = s.finalize(
            &mut st,
            task_id,
            TaskStatus::Cancelled,
            None,
            Some("cancelled".into()),
        );
        drop(st);
        s.wake.notify_one();
        Ok(match view {
            Some(v) => CancelOutcome::Cancelled(v),
            None => CancelOutcome::NotFound,
        })
    }

    /// Waits until the task is finished or `limit` passes; returns its latest view.
    pub async fn wait(
        &self,
        task_id: &str,
        limit: Duration,
    ) -> Result<Option<TaskView>, TaskError> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.shared.finished_signal.notified();
            let view = self.get(task_id)?;
            match &view {
                Some(v) if !v.status.is_terminal() && Instant::now() < deadline => {}
                _ => return Ok(view),
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Every agent, in declaration order.
    pub fn agents(&self) -> Vec<AgentView> {
        self.shared.agents.iter().map(AgentSlot::view).collect()
    }

    /// The most attempts ever in flight at once on each agent (by name).
    pub fn max_in_flight(&self) -> Vec<(String, usize)> {
        self.shared
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.max_in_flight.load(Ordering::Relaxed)))
            .collect()
    }

    /// The task metrics now.
    pub fn metrics(&self) -> TaskMetrics {
        let st = lock(&self.shared.state);
        let (queued, running) = (st.queued as u64, st.running as u64);
        drop(st);
        self.shared.counters.snapshot(queued, running)
    }

    /// Stops dispatching, abandons running attempts (they stay `running` on disk and are
    /// requeued by the next open: at-least-once), and closes the store after a final sync.
    pub async fn shutdown(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            for live in st.live.values() {
                if live.running_on.is_some() {
                    live.cancel.notify_one();
                }
            }
        }
        let background: Vec<JoinHandle<()>> = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for h in &background {
            h.abort();
        }
        for h in background {
            let _ = h.await;
        }
        // The abandoned attempts see `closed` and return at once; wait for them to let go.
        for _ in 0..500 {
            if lock(&self.shared.state).running == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match &self.shared.store {
            Backend::Fjall(_) => {
                let shared = self.shared.clone();
                let _ = tokio::task::spawn_blocking(move || shared.fjall().close()).await;
            }
            Backend::Redis(redis) => redis.close().await,
        }
    }
}

impl Drop for TaskService {
    fn drop(&mut self) {
        for h in self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }
}

impl Shared {
    /// Whether an agent has `action` as a capability (and is `pin`, if given).
    fn servable(&self, action: &str, pin: Option<&str>) -> bool {
        self.agents
            .iter()
            .any(|a| a.capabilities.contains(action) && pin.is_none_or(|p| p == a.name))
    }

    /// The embedded store; only called on its paths (the Redis store returns before them).
    fn fjall(&self) -> &Store {
        match &self.store {
            Backend::Fjall(store) => store,
            Backend::Redis(_) => unreachable!("an embedded-store path with the Redis store"),
        }
    }

    /// Writes a live task's non-terminal state (running, queued again for a retry).
    fn persist(&self, rec: &TaskRecord) {
        match &self.store {
            Backend::Fjall(store) => {
                store.write(vec![Write::Put(rec.task_id.clone(), encode(rec))], None)
            }
            Backend::Redis(redis) => redis.update(rec),
        }
    }

    /// Cancels a task this server does not hold (Redis store): compare-and-set of its record,
    /// read again when another server changed it in between.
    fn cancel_shared(&self, redis: &RedisStore, task_id: &str) -> Result<CancelOutcome, TaskError> {
        for _ in 0..20 {
            let Some((mut rec, raw)) = redis.get(task_id)? else {
                return Ok(CancelOutcome::NotFound);
            };
            if rec.status.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(rec.view()));
            }
            rec.status = TaskStatus::Cancelled;
            rec.finished_ms = Some(now_ms());
            rec.result = None;
            rec.error = Some("cancelled".into());
            match redis.cancel(&rec, &raw)? {
                Some(true) => {
                    self.counters.count(TaskStatus::Cancelled);
                    self.finished_signal.notify_waiters();
                    return Ok(CancelOutcome::Cancelled(rec.view()));
                }
                Some(false) => continue,
                None => return Ok(CancelOutcome::NotFound),
            }
        }
        Err(TaskError::Store {
            path: redis.describe(),
            message: format!("task {task_id} kept changing while being cancelled"),
        })
    }

    /// Takes tasks from the shared queue into this server's (Redis store): a task found
    /// `running` was on a server that stopped renewing it, and runs again (at-least-once).
    fn hold(&self, taken: Vec<Taken>) {
        let mut st = lock(&self.state);
        for Taken { entry, mut rec } in taken {
            if st.live.contains_key(&rec.task_id) {
                continue;
            }
            if rec.status == TaskStatus::Running {
                rec.status = TaskStatus::Queued;
                rec.recovered += 1;
            }
            let servable = self.servable(&rec.action, rec.pin.as_deref());
            let id = rec.task_id.clone();
            let action = rec.action.clone();
            // Ties broken by this server's own sequence: the record's `seq` is the submitting
            // server's, and two servers' can be equal.
            let order = (self.order(&rec).0, st.next_seq);
            st.next_seq += 1;
            st.live
                .insert(id.clone(), Live::new(rec, order, Some(entry)));
            if servable {
                self.enqueue(&mut st, &id);
            } else {
                self.finalize(
                    &mut st,
                    &id,
                    TaskStatus::Failed,
                    None,
                    Some(format!(
                        "no agent of the server that took it serves action {action:?} (servers sharing a store need the same agents)"
                    )),
                );
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// A task's place in the queue: the aging rule. Priority p is ordered as if submitted
    /// p × aging earlier; ties by submission order.
    fn order(&self, rec: &TaskRecord) -> Order {
        let head_start = (rec.priority as i64).saturating_mul(self.aging_ms);
        (
            (rec.submitted_ms as i64).saturating_sub(head_start),
            rec.seq,
        )
    }

    fn enqueue(&self, st: &mut State, task_id: &str) {
        let Some(live) = st.live.get_mut(task_id) else {
            return;
        };
        if live.queued || live.running_on.is_some() {
            return;
        }
        live.queued = true;
        let key = (live.rec.action.clone(), live.rec.pin.clone());
        let order = live.order;
        st.queues
            .entry(key)
            .or_default()
            .insert(order, task_id.to_string());
        st.queued += 1;
    }

    fn get(&self, task_id: &str) -> Result<Option<TaskView>, TaskError> {
        if let Backend::Redis(redis) = &self.store {
            return Ok(redis.get(task_id)?.map(|(rec, _)| rec.view()));
        }
        {
            let st = lock(&self.state);
            if let Some(live) = st.live.get(task_id) {
                return Ok(Some(live.rec.view()));
            }
        }
        if let Some(rec) = self
            .fjall()
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task_id)
        {
            return Ok(Some(rec.view()));
        }
        Ok(self.fjall().get(task_id)?.map(|r| r.view()))
    }

    fn recover(&self, records: Vec<TaskRecord>) {
        let mut st = lock(&self.state);
        let now = now_ms();
        let ttl = self.results_ttl.as_millis() as u64;
        let mut writes = Vec::new();
        let mut pending = Vec::new();
        for mut rec in records {
            st.next_seq = st.next_seq.max(rec.seq + 1);
            if rec.status.is_terminal() {
                let finished = rec.finished_ms.unwrap_or(now);
                if finished.saturating_add(ttl) <= now {
                    writes.push(Write::Delete(rec.task_id));
                    continue;
                }
                if let Some(k) = &rec.idempotency_key {
                    st.idem.insert(k.clone(), rec.task_id.clone());
                }
                st.finished
                    .insert((finished, rec.task_id), rec.idempotency_key);
                continue;
            }
            if rec.status == TaskStatus::Running {
                // At-least-once: the attempt may have run; it runs again.
                rec.status = TaskStatus::Queued;
                rec.recovered += 1;
                writes.push(Write::Put(rec.task_id.clone(), encode(&rec)));
            }
            if let Some(k) = &rec.idempotency_key {
                st.idem.insert(k.clone(), rec.task_id.clone());
            }
            let order = self.order(&rec);
            let id = rec.task_id.clone();
            let servable = self.servable(&rec.action, rec.pin.as_deref());
            st.live.insert(id.clone(), Live::new(rec, order, None));
            pending.push((id, servable));
        }
        if !writes.is_empty() {
            self.fjall().write(writes, None);
        }
        for (id, servable) in pending {
            if servable {
                self.enqueue(&mut st, &id);
            } else {
                let action = st
                    .live
                    .get(&id)
                    .map(|l| l.rec.action.clone())
                    .unwrap_or_default();
                self.finalize(
                    &mut st,
                    &id,
                    TaskStatus::Failed,
                    None,
                    Some(format!(
                        "no configured agent serves action {action:?} any more"
                    )),
                );
            }
        }
    }

    /// Ends a live task: records the terminal status, counts it, and writes it.
    fn finalize(
        &self,
        st: &mut State,
        task_id: &str,
        status: TaskStatus,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Option<TaskView> {
        let live = st.live.remove(task_id)?;
        st.unqueue(&live);
        let mut rec = live.rec;
        let now = now_ms();
        rec.status = status;
        rec.finished_ms = Some(now);
        rec.result = result;
        rec.error = error;
        self.counters.count(status);
        if let Some(started) = rec.started_ms {
            self.counters
                .observe_duration(now.saturating_sub(started) as f64 / 1000.0);
        }
        let view = rec.view();
        match &self.store {
            Backend::Fjall(store) => {
                st.finished
                    .insert((now, rec.task_id.clone()), rec.idempotency_key.clone());
                let bytes = encode(&rec);
                let id = rec.task_id.clone();
                store
                    .recent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), Arc::new(rec));
                store.write(vec![Write::Put(id.clone(), bytes)], Some(id));
            }
            Backend::Redis(redis) => {
                redis.finish(&rec, live.entry.as_deref());
                self.feed.notify_one();
            }
        }
        self.finished_signal.notify_waiters();
        Some(view)
    }

    /// Chooses an agent for a task: capable, routable, not blocked this round; among them the
    /// ones it has not failed on yet (if any is routable, the task waits for one of those);
    /// then the least loaded with a free slot.
    fn choose(&self, live: &Live, blocked: &[bool]) -> Option<usize> {
        let rec = &live.rec;
        let capable = |a: &AgentSlot| {
            a.capabilities.contains(&rec.action) && rec.pin.as_ref().is_none_or(|p| *p == a.name)
        };
        let tried = |a: &AgentSlot| rec.attempts.iter().any(|t| t.agent == a.name);
        let candidates: Vec<usize> = (0..self.agents.len())
            .filter(|&i| !blocked[i] && capable(&self.agents[i]) && self.agents[i].routable())
            .collect();
        let untried: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !tried(&self.agents[i]))
            .collect();
        let pool = if untried.is_empty() {
            candidates
        } else {
            untried
        };
        pool.into_iter()
            .filter(|&i| {
                let a = &self.agents[i];
                a.in_flight.load(Ordering::Relaxed) < a.concurrency
            })
            .min_by(|&x, &y| {
                let load = |i: usize| {
                    let a = &self.agents[i];
                    a.in_flight.load(Ordering::Relaxed) as f64 / a.concurrency as f64
                };
                load(x).total_cmp(&load(y)).then(x.cmp(&y))
            })
    }

    /// Takes every task that can start now, in queue order, and reserves its agent slot.
    fn pick(&self) -> Vec<Dispatch> {
        let mut st = lock(&self.state);
        if st.closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut blocked = vec![false; self.agents.len()];
        const LOOKAHEAD: usize = 32;
        loop {
            if self
                .agents
                .iter()
                .all(|a| a.in_flight.load(Ordering::Relaxed) >= a.concurrency)
            {
                break;
            }
            let mut best: Option<(Order, QueueKey, String, usize)> = None;
            for (key, queue) in &st.queues {
                for (order, id) in queue.iter().take(LOOKAHEAD) {
                    if best.as_ref().is_some_and(|b| *order >= b.0) {
                        break;
                    }
                    let Some(live) = st.live.get(id) else {
                        continue;
                    };
                    if let Some(agent) = self.choose(live, &blocked) {
                        best = Some((*order, key.clone(), id.clone(), agent));
                        break;
                    }
                }
            }
            let Some((order, key, id, agent)) = best else {
                break;
            };
            let slot = &self.agents[agent];
            let permit = match &slot.breaker {
                Some(b) => match b.try_acquire() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        blocked[agent] = true;
                        continue;
                    }
                },
                None => None,
            };
            if let Some(q) = st.queues.get_mut(&key) {
                q.remove(&order);
            }
            st.queued -= 1;
            st.running += 1;
            let n = slot.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            slot.max_in_flight.fetch_max(n, Ordering::Relaxed);
            let default_timeout = self.default_timeout;
            let Some(live) = st.live.get_mut(&id) else {
                continue;
            };
            live.queued = false;
            live.running_on = Some(agent);
            live.attempt_started = Some(Instant::now());
            let rec = &mut live.rec;
            let first = rec.started_ms.is_none();
            if first {
                rec.started_ms = Some(now_ms());
                rec.budget = Some(slot.retries.saturating_add(1));
            }
            rec.status = TaskStatus::Running;
            rec.agent = Some(slot.name.clone());
            let timeout = rec
                .timeout_ms
                .map(Duration::from_millis)
                .or(slot.timeout)
                .unwrap_or(default_timeout);
            let input = TaskInput {
                task_id: id.clone(),
                action: rec.action.clone(),
                data: rec.data.clone(),
                attempt: rec.attempts.len() as u32 + 1,
            };
            self.persist(rec);
            let cancel = live.cancel.clone();
            if first {
                self.counters.count(TaskStatus::Running);
            }
            out.push(Dispatch {
                task_id: id,
                agent,
                permit,
                input,
                timeout,
                cancel,
            });
        }
        out
    }

    /// Records an attempt's outcome: success ends the task; a failure retries (another agent
    /// first) while the budget lasts, else ends it `failed` or `timed_out`.
    fn finish_attempt(self: &Arc<Self>, d: Dispatch, outcome: Outcome, elapsed: Duration) {
        let slot = &self.agents[d.agent];
        let mut st = lock(&self.state);
        slot.in_flight.fetch_sub(1, Ordering::Relaxed);
        st.running -= 1;
        match (&outcome, d.permit) {
            (Outcome::Done(Ok(_)), Some(p)) => p.success(),
            (Outcome::Done(Err(_)), Some(p)) => p.failure(),
            _ => {}
        }
        if let Outcome::Done(r) = &outcome {
            if r.is_ok() {
                slot.succeeded.fetch_add(1, Ordering::Relaxed);
            } else {
                slot.failed.fetch_add(1, Ordering::Relaxed);
            }
            slot.latency_us
                .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
            slot.latency_n.fetch_add(1, Ordering::Relaxed);
        }
        if st.closed {
            // Shutting down: the task stays `running` on disk and is requeued on open.
            return;
        }
        let Outcome::Done(result) = outcome else {
            // Cancelled: `cancel` already ended the task.
            drop(st);
            self.wake.notify_one();
            return;
        };
        let Some(live) = st.live.get_mut(&d.task_id) else {
            drop(st);
            self.wake.notify_one();
            return;
        };
        live.running_on = None;
        live.attempt_started = None;
        match result {
            Ok(value) => {
                live.rec.attempts.push(Attempt {
                    agent: slot.name.clone(),
                    status: TaskStatus::Succeeded,
                    error: None,
                    execution_time: elapsed.as_secs_f64(),
                });
                self.finalize(
                    &mut st,
                    &d.task_id,
                    TaskStatus::Succeeded,
                    Some(value),
                    None,
                );
            }
            Err(error) => {
                let timed_out = matches!(error, AgentError::TimedOut(_));
                let status = if timed_out {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                live.rec.attempts.push(Attempt {
                    agent: slot.name.clone(),
                    status,
                    error: Some(error.to_string()),
                    execution_time: elapsed.as_secs_f64(),
                });
                let made = live.rec.attempts.len() as u32;
                let budget = live.rec.budget.unwrap_or(1);
                if made < budget {
                    live.rec.status = TaskStatus::Queued;
                    self.persist(&live.rec);
                    // The backoff of the agent that ran the first attempt.
                    let first_agent = live.rec.attempts[0].agent.clone();
                    let delay = self
                        .agents
                        .iter()
                        .find(|a| a.name == first_agent)
                        .and_then(|a| a.backoff.delays().nth(made as usize - 1))
                        .unwrap_or_default();
                    if delay.is_zero() {
                        self.enqueue(&mut st, &d.task_id);
                    } else {
                        let shared = self.clone();
                        let id = d.task_id.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let mut st = lock(&shared.state);
                            if !st.closed {
                                shared.enqueue(&mut st, &id);
                            }
                            drop(st);
                            shared.wake.notify_one();
                        });
                    }
                } else {
                    let message = live
                        .rec
                        .attempts
                        .iter()
                        .enumerate()
                        .map(|(i, a)| {
                            format!(
                                "attempt {} on {}: {}",
                                i + 1,
                                a.agent,
                                a.error.as_deref().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.finalize(&mut st, &d.task_id, status, None, Some(message));
                }
            }
        }
        drop(st);
        self.wake.notify_one();
    }
}

async fn run_attempt(shared: Arc<Shared>, d: Dispatch) {
    let started = Instant::now();
    let outcome = {
        let slot = &shared.agents[d.agent];
        let work = async {
            if let Some(limiter) = &slot.limiter {
                limiter.acquire().await;
            }
            match tokio::time::timeout(d.timeout, slot.agent.run(&d.input)).await {
                Ok(r) => r,
                Err(_) => Err(AgentError::TimedOut(d.timeout)),
            }
        };
        tokio::select! {
            r = work => Outcome::Done(r),
            () = d.cancel.notified() => Outcome::Cancelled,
        }
    };
    shared.finish_attempt(d, outcome, started.elapsed());
}

async fn dispatcher(shared: Arc<Shared>) {
    loop {
        for d in shared.pick() {
            tokio::spawn(run_attempt(shared.clone(), d));
        }
        // Woken by submits and finished attempts; the tick catches breakers that turned
        // half-open and health changes.
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.wake.notified()).await;
    }
}

async fn sweeper(shared: Arc<Shared>) {
    let tick = (shared.results_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let ttl = shared.results_ttl.as_millis() as u64;
    loop {
        tokio::time::sleep(tick).await;
        let now = now_ms();
        let mut st = lock(&shared.state);
        let mut writes = Vec::new();
        while let Some(((finished, _), _)) = st.finished.first_key_value() {
            if finished.saturating_add(ttl) > now {
                break;
            }
            let Some(((_, id), key)) = st.finished.pop_first() else {
                break;
            };
            if let Some(key) = key
                && st.idem.get(&key) == Some(&id)
            {
                st.idem.remove(&key);
            }
            shared
                .fjall()
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            writes.push(Write::Delete(id));
        }
        if !writes.is_empty() {
            shared.fjall().write(writes, None);
        }
    }
}

async fn health_loop(shared: Arc<Shared>, index: usize) {
    let slot = &shared.agents[index];
    let Some((probe, config)) = &slot.health else {
        return;
    };
    let mut failures = 0u32;
    loop {
        match probe.check(config.timeout).await {
            Ok(()) => {
                failures = 0;
                if !slot.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(target: "weir_tasks", agent = %slot.name, "agent healthy again: back in routing");
                    shared.wake.notify_one();
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= config.unhealthy_after && slot.healthy.swap(false, Ordering::Relaxed)
                {
                    tracing::warn!(target: "weir_tasks", agent = %slot.name, "agent unhealthy ({e}): out of routing");
                }
            }
        }
        tokio::time::sleep(config.interval).await;
    }
}

/// A new task's record, queued, with a fresh id.
pub(crate) fn new_record(request: TaskRequest, seq: u64) -> TaskRecord {
    TaskRecord {
        task_id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        action: request.action,
        data: request.data,
        priority: request.priority,
        timeout_ms: request.timeout.map(|t| t.as_millis() as u64),
        pin: request.agent,
        idempotency_key: request.idempotency_key,
        status: TaskStatus::Queued,
        submitted_ms: now_ms(),
        seq,
        started_ms: None,
        finished_ms: None,
        result: None,
        error: None,
        attempts: Vec::new(),
        agent: None,
        budget: None,
        recovered: 0,
    }
}

/// Keeps this server's share of the Redis queue full: takes over entries of dead servers
/// (every quarter of `claim_timeout`), then takes new ones, never more than its free agent
/// capacity, so that no server hoards the queue.
async fn feeder(shared: Arc<Shared>) {
    let Backend::Redis(redis) = &shared.store else {
        return;
    };
    let takeover_every = (redis.claim_timeout / 4).max(Duration::from_millis(25));
    let mut last_takeover: Option<Instant> = None;
    // How long to wait for a wake-up before polling again (other servers' submits wake no one
    // here).
    const POLL: Duration = Duration::from_millis(20);
    loop {
        let notified = shared.feed.notified();
        let free = {
            let st = lock(&shared.state);
            if st.closed {
                return;
            }
            shared.capacity.saturating_sub(st.live.len())
        };
        let mut asked = 0;
        let mut got = 0;
        if free > 0 {
            let mut taken = Vec::new();
            if last_takeover.is_none_or(|t| t.elapsed() >= takeover_every) {
                last_takeover = Some(Instant::now());
                match redis.takeover(free).await {
                    Ok(t) => {
                        if !t.is_empty() {
                            tracing::info!(target: "weir_tasks", "took over {} task(s) of a server that stopped renewing them", t.len());
                        }
                        taken = t;
                    }
                    Err(e) => tracing::warn!(target: "weir_tasks", "task takeover failed: {e}"),
                }
            }
            asked = free - taken.len().min(free);
            if asked > 0 {
                match redis.take(asked).await {
                    Ok(t) => taken.extend(t),
                    Err(e) => {
                        tracing::warn!(target: "weir_tasks", "taking tasks failed: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            got = taken.len();
            if got > 0 {
                shared.hold(taken);
            }
        }
        if free == 0 || got < asked.max(1) {
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    }
}

/// Renews the entries this server holds every third of `claim_timeout` (their idle time
/// reset, so no other server takes them over), and lets go of tasks that finished elsewhere
/// (cancelled on another server) or that another server took over.
async fn renewer(shared: Arc<Shared>) {
    let Backend::Redis(redis) = &shared.store else {
        return;
    };
    let every = redis.claim_timeout / 3;
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<(i32, String, String)> = {
            let st = lock(&shared.state);
            st.live
                .values()
                .filter_map(|l| {
                    l.entry
                        .clone()
                        .map(|e| (l.rec.priority, e, l.rec.task_id.clone()))
                })
                .collect()
        };
        let codes = match redis.renew(&held).await {
            Ok(codes) => codes,
            Err(e) => {
                tracing::warn!(target: "weir_tasks", "renewing held tasks failed: {e}");
                continue;
            }
        };
        let mut st = lock(&shared.state);
        for ((priority, entry, id), code) in held.into_iter().zip(codes) {
            let running = st.live.get(&id).is_some_and(|l| l.running_on.is_some());
            // A running attempt another server also runs goes on: the terminal write decides.
            if code == Claim::Held || (code == Claim::Lost && running) {
                continue;
            }
            let Some(live) = st.live.remove(&id) else {
                continue;
            };
            st.unqueue(&live);
            if live.running_on.is_some() {
                live.cancel.notify_one();
            }
            if code == Claim::Finished {
                redis.ack(priority, &entry);
            }
        }
        drop(st);
        shared.feed.notify_one();
    }
}
