//! `http` agents over HTTPS with `http.ca_file` (relative to the agents file): an agent server
//! on 127.0.0.1 with a certificate made at test time (rcgen) serves tasks when the agent trusts
//! its CA; with another CA every attempt fails with an error naming TLS and the agent; a
//! `ca_file` with an `http://` URL, or a file that holds no certificate, is refused.

mod common;

use common::TestServer;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_tasks::{AgentsConfig, TaskRequest, TaskService, TaskStatus, TaskView};

/// A CA and a server certificate it signed (for `localhost`): PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("weir test CA {name}"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-server.pem")),
        key: dir.join(format!("{name}-server.key")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).expect("write CA");
    std::fs::write(&pki.cert, cert.pem()).expect("write certificate");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    pki
}

/// The agents file `agents.yaml` in `dir`: one `http` agent `secure` posting to `url` and
/// trusting `ca_file` (as written, relative to the file).
fn agents_file(dir: &Path, url: &str, ca_file: &str) -> PathBuf {
    let path = dir.join("agents.yaml");
    std::fs::write(
        &path,
        format!(
            "agents:\n  - name: secure\n    kind: http\n    capabilities: [echo]\n    http: {{ url: \"{url}/run\", ca_file: {ca_file} }}\n    policy: {{ retries: 1, backoff: {{ min: 10ms, max: 10ms }} }}\n"
        ),
    )
    .expect("agents file");
    path
}

/// Submits an `echo` task with `data` and waits until it is finished.
async fn run(service: &TaskService, data: serde_json::Value) -> TaskView {
    let accepted = service
        .submit(TaskRequest::new("echo", data))
        .await
        .expect("submit");
    service
        .wait(&accepted.task_id, Duration::from_secs(60))
        .await
        .expect("wait")
        .expect("finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_agent_trusts_its_ca_file_and_names_tls_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let server = TestServer::start_tls(&good.cert, &good.key).await;
    let served = || {
        server
            .counters
            .served
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::copy(&good.ca, certs.join("ca.pem")).expect("copy");
    std::fs::copy(&other.ca, certs.join("wrong-ca.pem")).expect("copy");

    // The right CA, relative to the agents file: tasks are served.
    let file = agents_file(dir.path(), &server.url, "certs/ca.pem");
    let config = AgentsConfig::from_file(&file).expect("agents file");
    let service = TaskService::open(&dir.path().join("data-good"), config)
        .await
        .expect("open");
    for i in 0..3 {
        let view = run(&service, json!({ "i": i })).await;
        assert_eq!(view.status, TaskStatus::Succeeded, "{view:?}");
        assert_eq!(view.result, Some(json!({ "i": i })));
    }
    assert_eq!(served(), 3);
    service.shutdown().await;

    // Another CA: every attempt fails, saying TLS and the agent; nothing reached the server.
    let file = agents_file(dir.path(), &server.url, "certs/wrong-ca.pem");
    let config = AgentsConfig::from_file(&file).expect("agents file");
    let service = TaskService::open(&dir.path().join("data-wrong"), config)
        .await
        .expect("open");
    let view = run(&service, json!({ "i": 9 })).await;
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    let error = view.error.clone().unwrap_or_default();
    assert!(
        error.contains("TLS with agent `secure`") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(view.attempts.len(), 2, "{view:?}");
    for attempt in &view.attempts {
        let e = attempt.error.clone().unwrap_or_default();
        assert!(e.contains("TLS") && e.contains("secure"), "{attempt:?}");
    }
    assert_eq!(served(), 3);
    service.shutdown().await;

    // No CA file (the system's roots): the test CA is not among them.
    let plain = dir.path().join("roots.yaml");
    std::fs::write(
        &plain,
        format!(
            "agents:\n  - name: roots\n    kind: http\n    capabilities: [echo]\n    http: {{ url: \"{}/run\" }}\n    policy: {{ retries: 0 }}\n",
            server.url
        ),
    )
    .expect("agents file");
    let service = TaskService::open(
        &dir.path().join("data-roots"),
        AgentsConfig::from_file(&plain).expect("agents file"),
    )
    .await
    .expect("open");
    let view = run(&service, json!({})).await;
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    assert!(
        view.error
            .as_deref()
            .is_some_and(|e| e.contains("TLS with agent `roots`")),
        "{view:?}"
    );
    service.shutdown().await;
}

#[test]
fn a_ca_file_needs_https_and_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    // With an http:// URL: refused at parse, naming the file, line and key.
    let file = agents_file(dir.path(), "http://127.0.0.1:9", "ca.pem");
    let e = AgentsConfig::from_file(&file).expect_err("ca_file with http://");
    assert_eq!(e.key, "agents[0].http.ca_file", "{e}");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("https://"), "{e}");

    // A missing file, or one without a certificate: refused when the agents are built, naming
    // the file (resolved against the agents file's directory).
    let file = agents_file(dir.path(), "https://localhost:9", "ca.pem");
    let config = AgentsConfig::from_file(&file).expect("parses");
    let e = config.specs().expect_err("missing CA file");
    assert_eq!(e.key, "agents[0].http.ca_file", "{e}");
    assert!(
        e.message
            .contains(&dir.path().join("ca.pem").display().to_string()),
        "{e}"
    );
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").expect("write");
    let e = config.specs().expect_err("no certificate");
    assert!(e.message.contains("no certificate"), "{e}");
}
