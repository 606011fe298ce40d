//! The routes: one table gives each route's method, path, role and handler. The router, the
//! role check and the OpenAPI document are all made from it, so they cannot drift apart.

use crate::App;
use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type AppState = Arc<App>;

/// Who may call a route (`admin` ⊇ `operator` ⊇ `viewer`; `ingest` may only ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No authentication (`/health`, `/ready`, `/openapi.json`).
    Public,
    Viewer,
    Operator,
    Admin,
    Ingest,
    /// `viewer`, or none with `metrics.public: true`.
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "none",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Metrics => "viewer (none with metrics.public)",
        }
    }
}

/// One route.
pub struct Route {
    pub method: Method,
    /// axum's syntax, which is also OpenAPI's: `/v1/pipelines/{name}`.
    pub path: &'static str,
    pub role: Role,
    pub summary: &'static str,
    handler: fn() -> MethodRouter<AppState>,
}

/// Every route of the server.
pub fn table() -> Vec<Route> {
    fn r(
        method: Method,
        path: &'static str,
        role: Role,
        summary: &'static str,
        handler: fn() -> MethodRouter<AppState>,
    ) -> Route {
        Route {
            method,
            path,
            role,
            summary,
            handler,
        }
    }
    vec![
        r(
            Method::GET,
            "/health",
            Role::Public,
            "200 while the process serves requests",
            || get(health),
        ),
        r(
            Method::GET,
            "/ready",
            Role::Public,
            "200 when every running pipeline's connectors answer and its checkpoints progress; else 503 with the reasons",
            || get(ready),
        ),
        r(
            Method::GET,
            "/metrics",
            Role::Metrics,
            "Prometheus (OpenMetrics) text: every pipeline's counters, HTTP requests",
            || get(metrics),
        ),
        r(
            Method::GET,
            "/openapi.json",
            Role::Public,
            "This document",
            || get(openapi),
        ),
        r(
            Method::POST,
            "/v1/pipelines",
            Role::Operator,
            "Submit a pipeline (YAML body) and start it: 201; 400 with file/line/key; 409 if the name is taken",
            || post(submit),
        ),
        r(
            Method::GET,
            "/v1/pipelines",
            Role::Viewer,
            "Every pipeline with name, status, records in/out",
            || get(list),
        ),
        r(
            Method::GET,
            "/v1/pipelines/{name}",
            Role::Viewer,
            "Status, graph, per-operator metrics, checkpoints, consumer lag, last error",
            || get(show),
        ),
        r(
            Method::DELETE,
            "/v1/pipelines/{name}",
            Role::Admin,
            "Stop and forget a pipeline; checkpoints kept unless ?purge=true",
            || delete(remove),
        ),
        r(
            Method::POST,
            "/v1/pipelines/{name}/stop",
            Role::Operator,
            "Stop with a checkpoint (not a drain); 200 when stopped",
            || post(stop),
        ),
        r(
            Method::POST,
            "/v1/pipelines/{name}/resume",
            Role::Operator,
            "Resume from the latest checkpoint",
            || post(resume),
        ),
        r(
            Method::GET,
            "/v1/pipelines/{name}/dead-letters",
            Role::Viewer,
            "The newest dead letters (?limit=N) with reason and provenance",
            || get(dead_letters),
        ),
        r(
            Method::GET,
            "/v1/pipelines/{name}/checkpoints",
            Role::Viewer,
            "The retained checkpoints (?limit=N, default 20), newest first: {id, outcome, started_at, duration_ms, bytes_written, total_bytes, incremental, reason}",
            || get(checkpoints),
        ),
        r(
            Method::POST,
            "/v1/schemas",
            Role::Admin,
            "Register a schema (YAML or JSON body); 409 with the evolution rule it breaks",
            || post(register_schema),
        ),
        r(
            Method::GET,
            "/v1/schemas",
            Role::Viewer,
            "Every schema",
            || get(list_schemas),
        ),
        r(
            Method::GET,
            "/v1/schemas/{name}",
            Role::Viewer,
            "One schema, all versions",
            || get(show_schema),
        ),
        r(
            Method::POST,
            "/v1/ingest/{schema}",
            Role::Ingest,
            "Validate records (JSON object, array or NDJSON) and append them durably: 202 {accepted}",
            || post(ingest),
        ),
        r(
            Method::POST,
            "/v1/tasks",
            Role::Operator,
            "Submit a task {action, data, priority?, timeout?, agent?, idempotency_key?}: 202 {task_id, status} once durably queued; 400 bad input or no agent; 503 shutting down",
            || post(crate::tasks::submit),
        ),
        r(
            Method::GET,
            "/v1/tasks",
            Role::Viewer,
            "Tasks, queued and running first, then the most recently finished: {tasks: [{task_id, action, status, priority, agent, attempts, submitted_at, finished_at, error}]}; ?status=&action=&limit= (default and most 1000); 400 on a bad parameter",
            || get(crate::tasks::list),
        ),
        r(
            Method::GET,
            "/v1/tasks/{id}",
            Role::Viewer,
            "A task: {task_id, status, result, error, execution_time, attempts, agent}; 404 unknown",
            || get(crate::tasks::get),
        ),
        r(
            Method::POST,
            "/v1/tasks/{id}/cancel",
            Role::Operator,
            "Cancel a queued or running task: 200 with the task; 404 unknown; 409 already finished",
            || post(crate::tasks::cancel),
        ),
        r(
            Method::GET,
            "/v1/agents",
            Role::Viewer,
            "Every agent: {agents: [{name, capabilities, health, in_flight, concurrency, ...}]}",
            || get(crate::tasks::agents),
        ),
        r(
            Method::GET,
            "/",
            Role::Public,
            "The dashboard (HTML); its API calls carry the token",
            crate::dashboard::index,
        ),
        r(
            Method::GET,
            "/dashboard/{*path}",
            Role::Public,
            "The dashboard's assets",
            crate::dashboard::assets,
        ),
        r(
            Method::GET,
            "/v1/whoami",
            Role::Viewer,
            "The caller's {name, role} (anonymous admin with auth disabled)",
            crate::dashboard::whoami,
        ),
        r(
            Method::GET,
            "/v1/alerts",
            Role::Viewer,
            "Every alert rule (alerts: in the server config) with its state (inactive, pending, firing), value, threshold and last notification",
            crate::alerts::route,
        ),
        r(
            Method::GET,
            "/v1/events",
            Role::Viewer,
            "Server-Sent Events, about once a second: every pipeline's status and counters in the first event, then only the pipelines that changed (and those gone)",
            crate::events::route,
        ),
    ]
}

/// The role a request needs, from the table.
pub fn role_of(method: &Method, path: &str) -> Option<Role> {
    table()
        .into_iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.role)
}

/// The router made from [`table`].
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in table() {
        router = router.route(route.path, (route.handler)());
    }
    let body_limit = state.config.body_limit;
    // Outermost first: the role check, then the token's request budget, then the body read
    // within its size and time limits (a refused request's body is never read).
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::read_body,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The role check of every route: with `auth.enabled: true` a route that needs a role
/// ([`crate::auth::needed`]) needs a valid bearer token (else 401) whose role covers it (else
/// 403); the [`weir_auth::Identity`] goes on in the request's extensions. Mutating requests,
/// refused or not, are written to the audit log. With `auth.enabled: false` every request
/// passes (and the server listens on loopback only).
async fn authorize(
    State(app): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let role = matched
        .as_ref()
        .and_then(|m| role_of(request.method(), m.as_str()));
    let Some(role) = role else {
        return ApiError::not_found("no such route").into_response();
    };
    let route = matched
        .as_ref()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let audited = crate::auth::mutating(&method);
    let started = std::time::Instant::now();
    let mut identity = None;
    if let (Some(auth), Some(need)) = (
        app.auth.as_ref(),
        crate::auth::needed(role, app.config.metrics_public),
    ) {
        // A token that verifies but lacks the role still says who tried (for the audit log).
        let checked = match auth.authenticate(request.headers()) {
            Ok(who) => match who.require(need) {
                Ok(()) => Ok(who),
                Err(e) => Err((Some(who), e)),
            },
            Err(e) => Err((None, e)),
        };
        match checked {
            Ok(who) => {
                request.extensions_mut().insert(who.clone());
                identity = Some(who);
            }
            Err((who, e)) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let code = match status {
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::FORBIDDEN => "forbidden",
                    _ => "internal",
                };
                // The message names what is wrong, never the token.
                let message = e.to_string();
                if audited {
                    crate::auth::audit(
                        who.as_ref(),
                        &method,
                        &route,
                        &path,
                        status.as_u16(),
                        Some(&message),
                    );
                }
                let mut response = ApiError::new(status, code, message).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        axum::http::header::WWW_AUTHENTICATE,
                        axum::http::HeaderValue::from_static("Bearer"),
                    );
                }
                app.metrics
                    .http_request(&route, status.as_u16(), started.elapsed().as_secs_f64());
                return response;
            }
        }
    }
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if audited {
        crate::auth::audit(identity.as_ref(), &method, &route, &path, status, None);
    }
    app.metrics
        .http_request(&route, status, started.elapsed().as_secs_f64());
    response
}

/// The OpenAPI 3 document of [`table`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in table() {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "x-weir-role": route.role.as_str(),
            "parameters": params,
            "responses": {
                "default": {
                    "description": "JSON; errors are {\"error\": {\"code\", \"message\"}}",
                    "content": {"application/json": {}}
                }
            },
        });
        if route.role != Role::Public {
            op["security"] = json!([{ "bearer": [] }]);
        }
        entry[route.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Weir server", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn ready(State(app): State<AppState>) -> Response {
    let (ok, body) = app.ready.check(&app.manager).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            weir_telemetry::CONTENT_TYPE,
        )],
        app.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    axum::Json(openapi_document())
}

async fn submit(State(app): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8 text"))?;
    let described = app.manager.submit(text).await?;
    Ok((StatusCode::CREATED, axum::Json(described)).into_response())
}

async fn list(State(app): State<AppState>) -> impl IntoResponse {
    axum::Json(app.manager.list())
}

async fn show(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(app.manager.describe(&name)?).into_response())
}

async fn stop(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(app.manager.stop(&name).await?).into_response())
}

async fn resume(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(app.manager.resume(&name).await?).into_response())
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

async fn remove(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(app.manager.delete(&name, q.purge).await?).into_response())
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn dead_letters(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(axum::Json(app.manager.dead_letters(&name, limit)?).into_response())
}

async fn checkpoints(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(20).min(1_000);
    let manager = app.manager.clone();
    // Reads every retained checkpoint's metadata: off the async workers.
    let history = tokio::task::spawn_blocking(move || manager.checkpoints(&name, limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(axum::Json(history).into_response())
}

async fn register_schema(State(app): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8 text"))?;
    // JSON is YAML: one parser takes both.
    let schema = weir_schema::Schema::from_yaml(&text, "request body").map_err(|e| {
        ApiError::bad_request("invalid_schema", e.to_string()).with("file", "request body")
    })?;
    let registry = app.registry.clone();
    let registered = tokio::task::spawn_blocking(move || registry.register(&schema))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::conflict("incompatible_schema", e.to_string()))?;
    app.ingest.schemas_changed();
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "name": registered.name,
            "version": registered.version,
            "created": registered.created,
            "changes": registered.changes,
        })),
    )
        .into_response())
}

async fn list_schemas(State(app): State<AppState>) -> Result<Response, ApiError> {
    let list = app
        .registry
        .list()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let value = serde_json::to_value(&list).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "schemas": value })).into_response())
}

async fn show_schema(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let versions = app
        .registry
        .versions(&name)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no schema named `{name}`")));
    }
    let mut out = Vec::new();
    for v in versions {
        let schema = app
            .registry
            .get(&name, weir_schema::VersionSpec::Exact(v))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let def: Value = serde_yaml::from_str(&schema.to_yaml())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(json!({"version": v, "definition": def}));
    }
    Ok(axum::Json(json!({"name": name, "versions": out})).into_response())
}

async fn ingest(
    State(app): State<AppState>,
    Path(schema): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    )
                })?,
        ),
        None => None,
    };
    let accepted = app.ingest.ingest(&schema, &body, key).await?;
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({"accepted": accepted.accepted})),
    )
        .into_response();
    if accepted.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_with_its_role() {
        let doc = openapi_document();
        for route in table() {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            assert_eq!(op["x-weir-role"], route.role.as_str());
        }
    }

    #[test]
    fn roles_follow_the_contract() {
        assert_eq!(role_of(&Method::GET, "/health"), Some(Role::Public));
        assert_eq!(
            role_of(&Method::DELETE, "/v1/pipelines/{name}"),
            Some(Role::Admin)
        );
        assert_eq!(
            role_of(&Method::POST, "/v1/ingest/{schema}"),
            Some(Role::Ingest)
        );
        assert_eq!(role_of(&Method::POST, "/v1/schemas"), Some(Role::Admin));
        assert_eq!(role_of(&Method::GET, "/v1/schemas"), Some(Role::Viewer));
        assert_eq!(role_of(&Method::GET, "/nope"), None);
    }
}
