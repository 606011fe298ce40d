//! Authentication of `weir serve`'s requests and the audit log of its mutating ones.
//!
//! The keys are loaded once at start ([`Auth::load`], refused with the key and file named);
//! each request's bearer token is verified against them and the revocation list in the data
//! directory (re-read when it changes), and its role compared with the route's role from the
//! route table ([`needed`], the one mapping of the server's route roles to token roles).

use crate::config::ServerConfig;
use crate::routes;
use axum::http::{HeaderMap, Method};
use std::time::{SystemTime, UNIX_EPOCH};
use weir_auth::{AuthError, Identity, KeyRing, Revocations, Role};

/// The keys and revocation list of a server with `auth.enabled: true`.
#[derive(Debug)]
pub struct Auth {
    ring: KeyRing,
    revoked: Revocations,
}

impl Auth {
    /// The keys of `config` (`auth.key_file` or `WEIR_AUTH_KEY_FILE`, `auth.previous_key_files`).
    /// `None` with authentication disabled. The error names the setting and the file.
    pub fn load(config: &ServerConfig) -> Result<Option<Auth>, String> {
        if !config.auth_enabled {
            return Ok(None);
        }
        let Some(signing) = &config.auth_key_file else {
            return Err(
                "auth.key_file: authentication is enabled but no signing key is set: set `auth.key_file` or WEIR_AUTH_KEY_FILE to a file made by `weir token keygen FILE`"
                    .into(),
            );
        };
        let ring = KeyRing::load(signing, &config.auth_previous_key_files).map_err(|e| {
            let setting = match &e {
                AuthError::Key { path, .. } if path != signing => "auth.previous_key_files",
                _ => "auth.key_file",
            };
            format!("{setting}: {e}")
        })?;
        Ok(Some(Auth {
            ring,
            revoked: Revocations::in_data_dir(&config.data_dir),
        }))
    }

    /// Who sent a request with `headers`: a valid, unexpired, unrevoked bearer token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let value = match headers.get(axum::http::header::AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| {
                AuthError::Malformed("the Authorization header is not visible ASCII".into())
            })?),
            None => None,
        };
        let token = weir_auth::bearer(value)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ring.verify(token, now, Some(&self.revoked))
    }
}

/// The token role a route needs, from its role in the route table; `None`: no token needed.
/// `/metrics` needs `viewer` unless `metrics.public: true`.
pub fn needed(role: routes::Role, metrics_public: bool) -> Option<Role> {
    match role {
        routes::Role::Public => None,
        routes::Role::Metrics if metrics_public => None,
        routes::Role::Metrics | routes::Role::Viewer => Some(Role::Viewer),
        routes::Role::Operator => Some(Role::Operator),
        routes::Role::Admin => Some(Role::Admin),
        routes::Role::Ingest => Some(Role::Ingest),
    }
}

/// Whether requests with `method` change something and so are audited.
pub fn mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// One line of the audit log (`tracing` target `weir::audit`): who (token name, role and id,
/// or `-` when no valid token was shown), what (method, route, path), and the outcome.
pub fn audit(
    identity: Option<&Identity>,
    method: &Method,
    route: &str,
    path: &str,
    status: u16,
    refusal: Option<&str>,
) {
    let (name, role, token_id) = match identity {
        Some(i) => (i.name.as_str(), i.role.as_str(), i.token_id.as_str()),
        None => ("-", "-", "-"),
    };
    let outcome = match (refusal, status) {
        (Some(_), 401) => "unauthenticated",
        (Some(_), _) => "forbidden",
        (None, 200..=399) => "ok",
        (None, _) => "failed",
    };
    tracing::info!(
        target: "weir::audit",
        token_name = name,
        role,
        token_id,
        method = method.as_str(),
        route,
        path,
        status,
        outcome,
        reason = refusal.unwrap_or(""),
        "audit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_role_maps_to_a_token_role() {
        for route in routes::table() {
            let need = needed(route.role, false);
            assert_eq!(
                need.is_none(),
                route.role == routes::Role::Public,
                "{} {}",
                route.method,
                route.path
            );
        }
        assert_eq!(needed(routes::Role::Metrics, false), Some(Role::Viewer));
        assert_eq!(needed(routes::Role::Metrics, true), None);
        assert_eq!(needed(routes::Role::Ingest, false), Some(Role::Ingest));
    }

    #[test]
    fn enabled_without_a_key_or_with_a_bad_one_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = ServerConfig::defaults(crate::config::Profile::Production);
        c.data_dir = dir.path().join("data");
        let e = Auth::load(&c).expect_err("no key");
        assert!(e.contains("auth.key_file"), "{e}");
        let key = dir.path().join("weir.key");
        c.auth_key_file = Some(key.clone());
        let e = Auth::load(&c).expect_err("missing key");
        assert!(e.contains("auth.key_file") && e.contains("weir.key"), "{e}");
        weir_auth::generate_key(&key).expect("keygen");
        assert!(Auth::load(&c).expect("load").is_some());
        c.auth_previous_key_files = vec![dir.path().join("old.key")];
        let e = Auth::load(&c).expect_err("missing old key");
        assert!(
            e.contains("auth.previous_key_files") && e.contains("old.key"),
            "{e}"
        );
    }
}
