//! `weir serve` with `auth.enabled: true`, as a process: every route of the router's own table
//! against tokens made by `weir token` (no token, expired, another key's, a forged signature,
//! the wrong role, the right role), revocation while the server runs, the audit log, and the
//! refusal to start with a missing or too-open key.

mod auth_server;

use auth_server::{Server, free_port, keygen, weir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_server::routes::{self, Role as RouteRole};

/// `weir token create`: (token, token id).
fn create(key: &Path, role: &str, name: &str) -> (String, String) {
    let out = weir()
        .args([
            "token", "create", "--role", role, "--ttl", "1h", "--name", name,
        ])
        .arg("--key-file")
        .arg(key)
        .output()
        .expect("run weir token create");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    // "token ID for `NAME` with role ..."
    let err = String::from_utf8_lossy(&out.stderr);
    let id = err
        .split_whitespace()
        .nth(1)
        .expect("the token id on stderr")
        .to_string();
    (token, id)
}

/// One HTTP/1.1 request on a fresh connection: (status, body). The body is read only when the
/// response has a Content-Length (the event stream has none and never ends).
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read the response head");
        assert!(n == 1, "{method} {path}: connection closed in the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head}"));
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    let body = match length {
        Some(n) => {
            let mut body = vec![0u8; n];
            stream.read_exact(&mut body).expect("read the body");
            String::from_utf8_lossy(&body).to_string()
        }
        None => String::new(),
    };
    (status, body)
}

/// A route's path with every parameter filled with a dummy value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "dummy-auth-matrix"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The token role a route needs (`None`: public), and one role that does not cover it.
fn roles(role: RouteRole) -> Option<(&'static str, &'static str)> {
    match role {
        RouteRole::Public => None,
        RouteRole::Viewer | RouteRole::Metrics => Some(("viewer", "ingest")),
        RouteRole::Operator => Some(("operator", "viewer")),
        RouteRole::Admin => Some(("admin", "operator")),
        RouteRole::Ingest => Some(("ingest", "viewer")),
    }
}

#[test]
fn every_route_of_the_table_checks_its_token_and_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    let other = dir.path().join("other.key");
    keygen(&key);
    keygen(&other);
    let tokens: std::collections::HashMap<&str, String> = ["admin", "operator", "viewer", "ingest"]
        .into_iter()
        .map(|r| (r, create(&key, r, &format!("matrix-{r}")).0))
        .collect();
    // Expired: made by the library an hour and a minute ago, valid for an hour.
    let ring = weir_auth::KeyRing::load(&key, &[]).expect("key");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (expired, _) = ring
        .issue(
            "matrix-expired",
            weir_auth::Role::Admin,
            Duration::from_secs(3600),
            now - 3660,
        )
        .expect("issue");
    // Signed by a key the server does not know, and the admin token with a forged signature.
    let (foreign, _) = create(&other, "admin", "matrix-foreign");
    let forged = {
        let admin = &tokens["admin"];
        let (rest, sig) = admin.rsplit_once('.').expect("a JWT");
        let mut sig: Vec<char> = sig.chars().collect();
        sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
        format!("{rest}.{}", sig.into_iter().collect::<String>())
    };
    let server = Server::start(
        dir.path(),
        &key,
        "ingest:\n  redis_url: redis://127.0.0.1:6390\n",
    );
    let port = server.port;

    let table = routes::table();
    assert!(
        table.len() >= 15,
        "the router's table has {} routes",
        table.len()
    );
    let mut checked = 0;
    for route in &table {
        let method = route.method.as_str();
        let path = concrete(route.path);
        let what = format!("{method} {} ({path})", route.path);
        let Some((right, wrong)) = roles(route.role) else {
            let (status, _) = request(port, method, &path, None);
            assert!(
                status != 401 && status != 403,
                "{what} is public but answered {status}"
            );
            continue;
        };
        let (status, body) = request(port, method, &path, None);
        assert_eq!(status, 401, "{what} without a token: {body}");
        assert!(body.contains("\"error\""), "{what}: JSON error: {body}");
        for (kind, token) in [
            ("expired", &expired),
            ("another key's", &foreign),
            ("forged", &forged),
        ] {
            let (status, body) = request(port, method, &path, Some(token));
            assert_eq!(status, 401, "{what} with an {kind} token: {body}");
            assert!(!body.contains(token.as_str()), "{what}: the token echoed");
        }
        let (status, body) = request(port, method, &path, Some("not-a-jwt"));
        assert_eq!(status, 401, "{what} with a malformed token: {body}");
        let (status, body) = request(port, method, &path, Some(&tokens[wrong]));
        assert_eq!(status, 403, "{what} with role {wrong}: {body}");
        for role in [right, "admin"] {
            let (status, body) = request(port, method, &path, Some(&tokens[role]));
            assert!(
                status != 401 && status != 403,
                "{what} with role {role}: {status} {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} protected routes");
    for open in ["/health", "/ready", "/openapi.json"] {
        let (status, _) = request(port, "GET", open, None);
        assert!(
            status == 200 || (open == "/ready" && status == 503),
            "{open}: {status}"
        );
    }
    // The table and the served OpenAPI document agree.
    let (_, doc) = request(port, "GET", "/openapi.json", None);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("openapi json");
    for route in &table {
        assert!(
            doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()].is_object(),
            "{} {} missing from /openapi.json",
            route.method,
            route.path
        );
    }
    // whoami answers from the token.
    let (status, body) = request(port, "GET", "/v1/whoami", Some(&tokens["operator"]));
    assert_eq!(status, 200, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(who["name"], "matrix-operator", "{body}");
    assert_eq!(who["role"], "operator", "{body}");
    // No token ever appears in the server's output.
    let log = server.stderr();
    for t in tokens.values().chain([&expired, &foreign, &forged]) {
        assert!(!log.contains(t.as_str()), "a token in the server's log");
    }
}

#[test]
fn a_revoked_token_is_refused_and_mutations_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("weir.key");
    keygen(&key);
    let (viewer, viewer_id) = create(&key, "viewer", "audit-viewer");
    let (operator, _) = create(&key, "operator", "audit-operator");
    let server = Server::start(
        dir.path(),
        &key,
        "ingest:\n  redis_url: redis://127.0.0.1:6390\n",
    );
    let port = server.port;

    let (status, body) = request(port, "GET", "/v1/pipelines", Some(&viewer));
    assert_eq!(status, 200, "{body}");
    let out = weir()
        .args(["token", "revoke", &viewer_id, "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run weir token revoke");
    assert!(out.status.success(), "{out:?}");
    let (status, body) = request(port, "GET", "/v1/pipelines", Some(&viewer));
    assert_eq!(status, 401, "a revoked token: {body}");
    assert!(body.contains("revoked"), "{body}");
    // Another token of the same key still works.
    let (status, _) = request(port, "GET", "/v1/pipelines", Some(&operator));
    assert_eq!(status, 200);

    // A submit (an empty body: 400) by the operator, a refused one by a viewer, a read.
    let (status, _) = request(port, "POST", "/v1/pipelines", Some(&operator));
    assert_eq!(status, 400);
    let (reader, _) = create(&key, "viewer", "audit-reader");
    let (status, _) = request(port, "POST", "/v1/pipelines/x/stop", Some(&reader));
    assert_eq!(status, 403);
    let (status, _) = request(port, "GET", "/v1/schemas", Some(&reader));
    assert_eq!(status, 200);
    let (status, _) = request(port, "DELETE", "/v1/pipelines/x", None);
    assert_eq!(status, 401);

    let log = server.stderr();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("weir::audit")).collect();
    let submit = audit
        .iter()
        .find(|l| l.contains("audit-operator"))
        .unwrap_or_else(|| panic!("no audit line for the submit: {log}"));
    for part in ["operator", "POST", "/v1/pipelines", "400"] {
        assert!(submit.contains(part), "{part} missing: {submit}");
    }
    let refused = audit
        .iter()
        .find(|l| l.contains("audit-reader"))
        .unwrap_or_else(|| panic!("no audit line for the refused stop: {log}"));
    assert!(
        refused.contains("forbidden") && refused.contains("/v1/pipelines/{name}/stop"),
        "{refused}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("DELETE") && l.contains("unauthenticated")),
        "no audit line for the unauthenticated delete: {log}"
    );
    // Reads are not audited.
    assert!(
        !audit.iter().any(|l| l.contains("GET")),
        "a read in the audit log: {log}"
    );
}

#[test]
fn a_missing_or_too_open_key_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("absent.key");
    let port = free_port();
    let config = dir.path().join("weir.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: data\nauth:\n  enabled: true\n  key_file: {}\n",
            key.display()
        ),
    )
    .expect("config");
    let run = || {
        weir()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run weir serve")
    };
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("auth.key_file") && err.contains("absent.key"),
        "{err}"
    );
    keygen(&key);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("absent.key") && err.contains("chmod 600"),
        "{err}"
    );
    // The production profile implies authentication: without a key it does not start.
    let out = weir()
        .args(["serve", "--profile", "production", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run weir serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("auth.key_file"), "{err}");
}
