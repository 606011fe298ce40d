//! Alert rules (`alerts:` in the server config): each rule is a metric expression with a
//! threshold and a duration, e.g. `weir_dead_letters_total rate > 10/s for 1m`, evaluated every
//! `evaluate_every` from the server's own metrics registry (the `/metrics` text). A rule whose
//! condition has held for its duration fires; when the condition stops holding it resolves.
//! Both events are POSTed as JSON to the webhook under a weir-resilience policy (the `policy:`
//! block of the `http` sink: retries, backoff, timeouts, circuit breaker) and are visible at
//! `GET /v1/alerts`.
//!
//! An expression: `METRIC[{label="value",...}] [rate[WINDOW]|sum|max|min] OP NUMBER[/s] for
//! DURATION` with `OP` one of `>`, `>=`, `<`, `<=`. `rate` is the per-second increase of a
//! counter over the last `WINDOW` (default 30 s; `rate[10s]`), summed over the matching series
//! (a series that restarts, or appears, counts from zero); `sum` (the default), `max` and
//! `min` aggregate the current values. A rule without matching series has no value and does
//! not hold.

use crate::App;
use crate::error::ApiError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use weir_resilience::{Policy, PolicyConfig, Retryable};

/// `alerts:` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// How often the rules are evaluated (default `10s`).
    evaluate_every: Option<String>,
    webhook: WebhookFile,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    /// Timeout of each request (default `10s`).
    timeout: Option<String>,
    /// Retries, backoff, timeouts, circuit breaker: the `policy:` block of the `http` sink.
    policy: Option<PolicyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    expr: String,
}

/// The alert rules in force.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub evaluate_every: Duration,
    pub webhook: String,
    pub timeout: Duration,
    pub policy: PolicyConfig,
    pub rules: Vec<Rule>,
}

impl AlertsConfig {
    /// Checks the file's block; `Err((key, message))` names the key, e.g.
    /// `alerts.rules[0].expr`.
    pub fn from_file(file: &AlertsFile) -> Result<Self, (String, String)> {
        let evaluate_every = match &file.evaluate_every {
            Some(t) => {
                crate::config::duration(t).map_err(|e| ("alerts.evaluate_every".to_string(), e))?
            }
            None => Duration::from_secs(10),
        };
        if evaluate_every.is_zero() {
            return Err((
                "alerts.evaluate_every".into(),
                "must be longer than zero".into(),
            ));
        }
        let url = file.webhook.url.trim();
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ("alerts.webhook.url".to_string(), format!("not a URL: {e}")))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err((
                "alerts.webhook.url".into(),
                format!(
                    "expected an http:// or https:// URL, got `{}:`",
                    parsed.scheme()
                ),
            ));
        }
        if parsed.password().is_some() {
            return Err((
                "alerts.webhook.url".into(),
                "a password in the URL is refused: secrets never go in the config text".into(),
            ));
        }
        let timeout = match &file.webhook.timeout {
            Some(t) => {
                crate::config::duration(t).map_err(|e| ("alerts.webhook.timeout".to_string(), e))?
            }
            None => Duration::from_secs(10),
        };
        if timeout.is_zero() {
            return Err((
                "alerts.webhook.timeout".into(),
                "must be longer than zero".into(),
            ));
        }
        let policy = file.webhook.policy.clone().unwrap_or_default();
        policy
            .validate()
            .map_err(|e| ("alerts.webhook.policy".to_string(), e.to_string()))?;
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err((
                    format!("alerts.rules[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if rules.iter().any(|other| other.name == r.name) {
                return Err((
                    format!("alerts.rules[{i}].name"),
                    format!("`{}` is the name of an earlier rule", r.name),
                ));
            }
            let expr = Expr::parse(&r.expr).map_err(|e| (format!("alerts.rules[{i}].expr"), e))?;
            rules.push(Rule {
                name: r.name.clone(),
                expr,
            });
        }
        Ok(AlertsConfig {
            evaluate_every,
            webhook: url.to_string(),
            timeout,
            policy,
            rules,
        })
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub expr: Expr,
}

/// How a rule combines the matching series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Rate,
    Sum,
    Max,
    Min,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

/// A parsed rule expression (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub metric: String,
    pub labels: Vec<(String, String)>,
    pub aggregate: Aggregate,
    /// For `rate`: the window the increase is measured over.
    pub window: Duration,
    pub op: Op,
    pub threshold: f64,
    pub duration: Duration,
}

const EXPR_FORM: &str = "expected `METRIC[{label=\"value\"}] [rate[WINDOW]|sum|max|min] >|>=|<|<= NUMBER[/s] for DURATION`, e.g. `weir_dead_letters_total rate > 10/s for 1m`";

/// The window of `rate` when the expression gives none.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let bad = |why: &str| format!("`{text}`: {why}; {EXPR_FORM}");
        let t = text.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(t.len());
        let metric = &t[..name_end];
        if metric.is_empty() || metric.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("no metric name"));
        }
        let mut rest = &t[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| bad("no `}` after the labels"))?;
            labels = parse_labels(&inner[..close]).ok_or_else(|| bad("bad labels"))?;
            rest = &inner[close + 1..];
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut window = DEFAULT_WINDOW;
        let (aggregate, words) = match words.first().copied() {
            Some("rate") => (Aggregate::Rate, &words[1..]),
            Some(w) if w.starts_with("rate[") && w.ends_with(']') => {
                window = crate::config::duration(&w[5..w.len() - 1]).map_err(|e| bad(&e))?;
                if window.is_zero() {
                    return Err(bad("the window of `rate` must be longer than zero"));
                }
                (Aggregate::Rate, &words[1..])
            }
            Some("sum") => (Aggregate::Sum, &words[1..]),
            Some("max") => (Aggregate::Max, &words[1..]),
            Some("min") => (Aggregate::Min, &words[1..]),
            _ => (Aggregate::Sum, &words[..]),
        };
        let [op, number, for_, duration] = words else {
            return Err(bad("expected a comparison, a threshold and `for DURATION`"));
        };
        let op = match *op {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            other => return Err(bad(&format!("`{other}` is not a comparison"))),
        };
        let (number, per_second) = match number.strip_suffix("/s") {
            Some(n) => (n, true),
            None => (*number, false),
        };
        if per_second && aggregate != Aggregate::Rate {
            return Err(bad("`/s` needs `rate`"));
        }
        let threshold: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad(&format!("`{number}` is not a number")))?;
        if *for_ != "for" {
            return Err(bad(&format!("expected `for`, got `{for_}`")));
        }
        let duration = crate::config::duration(duration).map_err(|e| bad(&e))?;
        Ok(Expr {
            text: t.to_string(),
            metric: metric.to_string(),
            labels,
            aggregate,
            window,
            op,
            threshold,
            duration,
        })
    }

    /// Whether a sample's labels (the text between `{` and `}`) match the rule's.
    fn matches(&self, labels: &[(String, String)]) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.iter().any(|(k2, v2)| k == k2 && v == v2))
    }
}

/// `a="x",b="y"` → pairs (escapes `\"`, `\\`, `\n` resolved); `None` when malformed.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        let mut chars = after.trim_start().char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let body = &after.trim_start()[1..];
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end?;
        out.push((key.to_string(), value));
        rest = body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// The samples of a Prometheus/OpenMetrics text: (name, labels, value).
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines().filter_map(|line| {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                // The closing brace outside any quoted label value.
                let mut quoted = false;
                let mut escaped = false;
                let mut close = None;
                for (i, c) in line[open..].char_indices() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => quoted = !quoted,
                        '}' if !quoted => {
                            close = Some(open + i);
                            break;
                        }
                        _ => {}
                    }
                }
                let close = close?;
                (&line[..=close], &line[close + 1..])
            }
            None => line.split_once(' ')?,
        };
        let value = rest.split_whitespace().next()?.parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or(l)),
            None => (series, ""),
        };
        Some((name, labels, value))
    })
}

/// Where a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// It holds, not yet for the rule's duration.
    Pending,
    /// It has held for the duration; a `firing` notification was sent.
    Firing,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

#[derive(Debug, Default)]
struct RuleState {
    phase: Phase,
    value: Option<f64>,
    /// Since when the condition holds.
    holding_since: Option<(Instant, SystemTime)>,
    fired_at: Option<SystemTime>,
    resolved_at: Option<SystemTime>,
    /// For `rate`: each series' last value and when it was read.
    previous: HashMap<String, f64>,
    previous_at: Option<Instant>,
    /// For `rate`: the increase of each evaluation step in the window (from, to, increase).
    steps: std::collections::VecDeque<(Instant, Instant, f64)>,
    last_delivery: Option<Value>,
    notifications: u64,
}

/// A notification on its way to the webhook.
struct Notification {
    rule: usize,
    body: Value,
}

/// The rules and their states (shared by the evaluator, the sender and `GET /v1/alerts`).
pub struct Alerts {
    config: Option<AlertsConfig>,
    states: Mutex<Vec<RuleState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Why a webhook call failed.
#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error("the webhook answered {0}")]
    Status(u16),
    #[error("cannot reach the webhook: {0}")]
    Transport(String),
}

impl Retryable for WebhookError {
    fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            WebhookError::Transport(_) => true,
        }
    }
}

impl Alerts {
    /// No rules (`alerts:` absent).
    pub fn none() -> Arc<Alerts> {
        Arc::new(Alerts {
            config: None,
            states: Mutex::new(Vec::new()),
        })
    }

    /// Starts evaluating `config`'s rules against `metrics` every `evaluate_every`, and the
    /// sender of their notifications. Both stop when the returned handles are aborted.
    pub fn start(
        config: AlertsConfig,
        metrics: weir_telemetry::Metrics,
    ) -> Result<(Arc<Alerts>, Vec<tokio::task::JoinHandle<()>>), String> {
        let policy: Policy<WebhookError> = config
            .policy
            .build()
            .map_err(|e| format!("alerts.webhook.policy: {e}"))?;
        let client = weir_connectors::http_client()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("alerts.webhook: cannot build an HTTP client: {e}"))?;
        let states = config.rules.iter().map(|_| RuleState::default()).collect();
        let every = config.evaluate_every;
        let url = config.webhook.clone();
        let alerts = Arc::new(Alerts {
            config: Some(config),
            states: Mutex::new(states),
        });
        tracing::info!(
            rules = alerts.config.as_ref().map_or(0, |c| c.rules.len()),
            "alert rules evaluated every {} ms, notifications to the webhook",
            every.as_millis()
        );
        // In order: a rule's `resolved` never overtakes its `firing`.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Notification>(1024);
        let sender = {
            let alerts = alerts.clone();
            tokio::spawn(async move {
                while let Some(n) = rx.recv().await {
                    let status = n.body["status"].as_str().unwrap_or_default().to_string();
                    let body = n.body.to_string();
                    let outcome = policy
                        .call(|| {
                            let request = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(body.clone());
                            async move {
                                let response = request.send().await.map_err(|e| {
                                    WebhookError::Transport(e.without_url().to_string())
                                })?;
                                let s = response.status().as_u16();
                                if (200..300).contains(&s) {
                                    Ok(())
                                } else {
                                    Err(WebhookError::Status(s))
                                }
                            }
                        })
                        .await;
                    let delivery = match &outcome {
                        Ok(()) => {
                            json!({"status": status, "outcome": "delivered", "at": rfc3339(SystemTime::now())})
                        }
                        Err(e) => {
                            tracing::warn!(
                                rule = n.body["rule"].as_str().unwrap_or_default(),
                                "alert notification ({status}) not delivered: {e}"
                            );
                            json!({"status": status, "outcome": "failed", "error": e.to_string(), "at": rfc3339(SystemTime::now())})
                        }
                    };
                    if let Some(state) = lock(&alerts.states).get_mut(n.rule) {
                        state.last_delivery = Some(delivery);
                    }
                }
            })
        };
        let evaluator = {
            let alerts = alerts.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let text = metrics.render();
                    for n in alerts.evaluate(&text, Instant::now(), SystemTime::now()) {
                        if tx.try_send(n).is_err() {
                            tracing::warn!("alert notifications are backing up: one was dropped");
                        }
                    }
                }
            })
        };
        Ok((alerts, vec![evaluator, sender]))
    }

    /// One evaluation of every rule over the metrics `text`; answers the notifications due.
    fn evaluate(&self, text: &str, now: Instant, wall: SystemTime) -> Vec<Notification> {
        let Some(config) = &self.config else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut states = lock(&self.states);
        for (i, (rule, state)) in config.rules.iter().zip(states.iter_mut()).enumerate() {
            let value = value_of(&rule.expr, text, state, now);
            state.value = value;
            let holds = value.is_some_and(|v| rule.expr.op.holds(v, rule.expr.threshold));
            let body = |status: &str, state: &RuleState| {
                json!({
                    "status": status,
                    "rule": rule.name,
                    "expr": rule.expr.text,
                    "value": state.value,
                    "threshold": rule.expr.threshold,
                    "since": state.holding_since.map(|(_, w)| rfc3339(w)),
                    "fired_at": state.fired_at.map(rfc3339),
                    "resolved_at": state.resolved_at.map(rfc3339),
                })
            };
            if holds {
                let since = *state.holding_since.get_or_insert((now, wall));
                if state.phase != Phase::Firing {
                    if now.duration_since(since.0) >= rule.expr.duration {
                        state.phase = Phase::Firing;
                        state.fired_at = Some(wall);
                        state.resolved_at = None;
                        state.notifications += 1;
                        tracing::warn!(rule = %rule.name, value = ?state.value, "alert firing: {}", rule.expr.text);
                        out.push(Notification {
                            rule: i,
                            body: body("firing", state),
                        });
                    } else {
                        state.phase = Phase::Pending;
                    }
                }
            } else {
                if state.phase == Phase::Firing {
                    state.resolved_at = Some(wall);
                    state.notifications += 1;
                    tracing::info!(rule = %rule.name, value = ?state.value, "alert resolved: {}", rule.expr.text);
                    out.push(Notification {
                        rule: i,
                        body: body("resolved", state),
                    });
                }
                state.phase = Phase::Inactive;
                state.holding_since = None;
            }
        }
        out
    }

    /// `GET /v1/alerts`.
    pub fn view(&self) -> Value {
        let Some(config) = &self.config else {
            return json!({"evaluate_every": null, "rules": []});
        };
        let states = lock(&self.states);
        let rules: Vec<Value> = config
            .rules
            .iter()
            .zip(states.iter())
            .map(|(rule, s)| {
                json!({
                    "name": rule.name,
                    "expr": rule.expr.text,
                    "state": s.phase.as_str(),
                    "value": s.value,
                    "threshold": rule.expr.threshold,
                    "for_seconds": rule.expr.duration.as_secs_f64(),
                    "since": s.holding_since.map(|(_, w)| rfc3339(w)),
                    "fired_at": s.fired_at.map(rfc3339),
                    "resolved_at": s.resolved_at.map(rfc3339),
                    "notifications": s.notifications,
                    "last_delivery": s.last_delivery,
                })
            })
            .collect();
        json!({
            "evaluate_every_seconds": config.evaluate_every.as_secs_f64(),
            "rules": rules,
        })
    }
}

/// The rule's value over `text`: the aggregate of the matching series, or for `rate` the sum of
/// the series' increases over the window, per second. `None`: no matching series (or, for
/// `rate`, the first evaluation).
fn value_of(expr: &Expr, text: &str, state: &mut RuleState, now: Instant) -> Option<f64> {
    let mut value: Option<f64> = None;
    let mut current = HashMap::new();
    for (name, labels, v) in samples(text) {
        if name != expr.metric {
            continue;
        }
        let pairs = parse_labels(labels).unwrap_or_default();
        if !expr.matches(&pairs) {
            continue;
        }
        match expr.aggregate {
            Aggregate::Rate => {
                current.insert(labels.to_string(), v);
            }
            Aggregate::Sum => value = Some(value.unwrap_or(0.0) + v),
            Aggregate::Max => value = Some(value.map_or(v, |m: f64| m.max(v))),
            Aggregate::Min => value = Some(value.map_or(v, |m: f64| m.min(v))),
        }
    }
    if expr.aggregate != Aggregate::Rate {
        return value;
    }
    if let Some(at) = state.previous_at {
        let increase: f64 = current
            .iter()
            .map(|(series, v)| match state.previous.get(series) {
                Some(p) if v >= p => v - p,
                // A new series counts from zero, a restarted one from its reset.
                _ => *v,
            })
            .sum();
        state.steps.push_back((at, now, increase));
    }
    let matched = !current.is_empty();
    state.previous = current;
    state.previous_at = Some(now);
    // Steps that began before the window are forgotten (the last one is always kept).
    while state.steps.len() > 1
        && state
            .steps
            .front()
            .is_some_and(|(from, _, _)| now.duration_since(*from) > expr.window)
    {
        state.steps.pop_front();
    }
    let from = state.steps.front()?.0;
    let seconds = now.duration_since(from).as_secs_f64();
    if !matched || seconds <= 0.0 {
        return None;
    }
    Some(state.steps.iter().map(|(_, _, inc)| inc).sum::<f64>() / seconds)
}

/// `GET /v1/alerts`: every rule with its state, value and last notification.
pub fn route() -> MethodRouter<Arc<App>> {
    get(|State(app): State<Arc<App>>| async move {
        Ok::<Response, ApiError>(axum::Json(app.alerts.view()).into_response())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_or_say_what_is_expected() {
        let e = Expr::parse("weir_dead_letters_total rate > 10/s for 1m").expect("rate");
        assert_eq!(e.metric, "weir_dead_letters_total");
        assert_eq!(e.aggregate, Aggregate::Rate);
        assert_eq!(e.window, DEFAULT_WINDOW);
        let w = Expr::parse("weir_dead_letters_total rate[5s] > 1 for 0s").expect("window");
        assert_eq!(w.window, Duration::from_secs(5));
        assert_eq!(e.op, Op::Gt);
        assert_eq!(e.threshold, 10.0);
        assert_eq!(e.duration, Duration::from_secs(60));
        let e = Expr::parse(r#"weir_checkpoints_total{outcome="failed"} rate > 0 for 30s"#)
            .expect("labels");
        assert_eq!(e.labels, vec![("outcome".into(), "failed".into())]);
        let e = Expr::parse("weir_circuit_breaker_state max >= 2 for 0s").expect("max");
        assert_eq!((e.aggregate, e.op), (Aggregate::Max, Op::Ge));
        let e = Expr::parse("weir_consumer_lag > 1000 for 5m").expect("sum");
        assert_eq!(e.aggregate, Aggregate::Sum);
        for bad in [
            "",
            "weir_x > 1",
            "weir_x >> 1 for 1s",
            "weir_x > ten for 1s",
            "weir_x > 1/s for 1s",
            "weir_x > 1 during 1s",
            "weir_x{a=b} > 1 for 1s",
            "weir_x > 1 for soon",
            "weir_x rate[0s] > 1 for 1s",
            "weir_x rate[x] > 1 for 1s",
        ] {
            let e = Expr::parse(bad).expect_err(bad);
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    fn config(expr: &str) -> AlertsConfig {
        AlertsConfig {
            evaluate_every: Duration::from_secs(1),
            webhook: "http://127.0.0.1:1/".into(),
            timeout: Duration::from_secs(1),
            policy: PolicyConfig::default(),
            rules: vec![Rule {
                name: "r".into(),
                expr: Expr::parse(expr).expect("expr"),
            }],
        }
    }

    fn alerts(expr: &str) -> Alerts {
        let config = config(expr);
        Alerts {
            states: Mutex::new(config.rules.iter().map(|_| RuleState::default()).collect()),
            config: Some(config),
        }
    }

    fn text(a: u64, b: u64) -> String {
        format!(
            "# TYPE weir_dead_letters counter\nweir_dead_letters_total{{pipeline=\"a\",operator=\"x y}}\"}} {a}\nweir_dead_letters_total{{pipeline=\"b\"}} {b}\nweir_other_total 99\n# EOF\n"
        )
    }

    #[test]
    fn a_rate_rule_fires_after_its_duration_and_resolves() {
        let a = alerts("weir_dead_letters_total rate[1s] > 10/s for 2s");
        let t0 = Instant::now();
        let w = SystemTime::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // First evaluation: no rate yet.
        assert!(a.evaluate(&text(0, 0), at(0), w).is_empty());
        // 30/s: pending, then firing once the condition held 2 s.
        assert!(a.evaluate(&text(20, 10), at(1), w).is_empty());
        assert_eq!(a.view()["rules"][0]["state"], "pending");
        assert!(a.evaluate(&text(40, 20), at(2), w).is_empty());
        let fired = a.evaluate(&text(60, 30), at(3), w);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].body["status"], "firing");
        assert_eq!(fired[0].body["value"], 30.0);
        assert_eq!(a.view()["rules"][0]["state"], "firing");
        // Still firing: no second notification.
        assert!(a.evaluate(&text(80, 40), at(4), w).is_empty());
        // Dead letters stop: resolved.
        let resolved = a.evaluate(&text(80, 40), at(5), w);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].body["status"], "resolved");
        assert_eq!(resolved[0].body["value"], 0.0);
        assert_eq!(a.view()["rules"][0]["state"], "inactive");
        // A restarted series counts from its reset, not as a negative rate.
        assert!(a.evaluate(&text(5, 40), at(6), w).is_empty());
        assert_eq!(a.view()["rules"][0]["value"], 5.0);
    }

    #[test]
    fn a_rate_is_measured_over_its_window() {
        let a = alerts("weir_dead_letters_total rate[4s] > 10/s for 0s");
        let t0 = Instant::now();
        let w = SystemTime::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(a.evaluate(&text(0, 0), at(0), w).is_empty());
        // A burst every other second still averages 20/s over the window: it fires, and holds.
        assert_eq!(a.evaluate(&text(40, 0), at(1), w).len(), 1);
        assert!(a.evaluate(&text(40, 0), at(2), w).is_empty());
        assert_eq!(a.view()["rules"][0]["value"], 20.0);
        assert!(a.evaluate(&text(80, 0), at(3), w).is_empty());
        assert!(a.evaluate(&text(80, 0), at(4), w).is_empty());
        assert_eq!(a.view()["rules"][0]["state"], "firing");
        // Quiet since 3: at 5 the window (1..5) averages 40 / 4 = 10/s, not over 10: resolved.
        let resolved = a.evaluate(&text(80, 0), at(5), w);
        assert_eq!(resolved.len(), 1, "{:?}", a.view());
        assert_eq!(a.view()["rules"][0]["value"], 10.0);
        assert!(a.evaluate(&text(80, 0), at(9), w).is_empty());
        assert_eq!(a.view()["rules"][0]["value"], 0.0);
    }

    #[test]
    fn labels_and_gauges() {
        let a = alerts(r#"weir_dead_letters_total{pipeline="b"} max >= 7 for 0s"#);
        let now = Instant::now();
        assert!(a.evaluate(&text(100, 6), now, SystemTime::now()).is_empty());
        assert_eq!(a.evaluate(&text(100, 7), now, SystemTime::now()).len(), 1);
        let none = alerts("weir_missing_total sum > 0 for 0s");
        assert!(
            none.evaluate(&text(1, 1), now, SystemTime::now())
                .is_empty()
        );
        assert_eq!(none.view()["rules"][0]["value"], Value::Null);
    }
}
