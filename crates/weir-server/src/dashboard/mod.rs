//! The dashboard of `weir serve`: hand-written HTML, CSS and JavaScript modules (no build step,
//! no third-party code) embedded in the binary and served at `/` and `/dashboard/*` without a
//! role (the page is public; every API call it makes carries the user's token). Also
//! `GET /v1/whoami`, which tells the page who the token is and so which buttons to show.

use crate::App;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::json;
use std::sync::Arc;

/// Every asset: name under `/dashboard/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/api.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/graph.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// `GET /`: the page.
pub fn index() -> MethodRouter<Arc<App>> {
    get(|| async { asset("index.html") })
}

/// `GET /dashboard/{*path}`: the page's assets.
pub fn assets() -> MethodRouter<Arc<App>> {
    get(|Path(path): Path<String>| async move { asset(&path) })
}

/// `GET /v1/whoami`: `{name, role, auth}` of the caller's token (the identity the `authorize`
/// middleware put in the request). With `auth.enabled: false` everyone is `anonymous` with the
/// role `admin`.
pub fn whoami() -> MethodRouter<Arc<App>> {
    get(
        |State(app): State<Arc<App>>, identity: Option<axum::Extension<weir_auth::Identity>>| async move {
            match identity {
                Some(axum::Extension(who)) => axum::Json(json!({
                    "name": who.name,
                    "role": who.role.as_str(),
                    "auth": true,
                }))
                .into_response(),
                None if app.auth.is_none() => {
                    axum::Json(json!({"name": "anonymous", "role": "admin", "auth": false}))
                        .into_response()
                }
                // The middleware lets no request through here without an identity.
                None => crate::error::ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "no bearer token",
                )
                .into_response(),
            }
        },
    )
}

fn asset(path: &str) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => crate::error::ApiError::not_found(format!("no dashboard asset `{path}`"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn assets_are_small_and_self_contained() {
        let total: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total < 300 * 1024, "dashboard assets are {total} bytes");
        for (name, _, bytes) in ASSETS {
            // No third-party or remote code: every URL the page loads is its own (the SVG
            // namespace is a name, not something loaded).
            let text = String::from_utf8_lossy(bytes).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{name} refers to a remote URL"
            );
        }
    }
}
