//! `weir serve` over HTTPS (`tls.cert_file`, `tls.key_file`) as a process, with certificates
//! made at test time (rcgen): a client trusting the CA connects (`weir pipelines --ca-cert`,
//! `WEIR_CA_CERT`), plain HTTP gets no HTTP answer, a client trusting another CA is refused;
//! SIGHUP swaps the certificate (a client trusting only the new CA connects after the reload,
//! one trusting only the old no longer does), a bad new file keeps the old certificate and logs
//! an error naming the file; a bad file at start exits 2 naming it. Clients that connect and
//! never send a ClientHello hold at most `limits.tls_handshakes` handshakes and time out.
//!
//! With a Redis speaking TLS only (started by the test): a pipeline reads and writes
//! `rediss://` streams with its `ca_file`; the server's ingest appends over `rediss://` with
//! `ingest.redis_ca_file` (a wrong CA: 503 naming TLS); `/ready` checks the pipeline's
//! `rediss://` source with its CA file (200), and reports it not ok (503) with a wrong one.

mod common;
use common::weir;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA and a server certificate it signed (for `localhost` and 127.0.0.1), in PEM files.
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
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
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

/// A running `weir serve`; killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    url: String,
}

impl Server {
    fn start(config: &Path, dir: &Path) -> Server {
        Server::start_with_env(config, dir, &[])
    }

    /// [`Server::start`] with these environment variables set.
    fn start_with_env(config: &Path, dir: &Path, env: &[(&str, &Path)]) -> Server {
        let log = dir.join("serve.log");
        let mut command = weir();
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start weir serve");
        let mut server = Server {
            child,
            log,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = server.stderr();
            // The address line (not "listening on loopback only" of the auth notice).
            if let Some(at) = text.find("listening on http") {
                let rest = &text[at + "listening on ".len()..];
                server.url = rest
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("weir serve exited with {status}: {text}");
            }
            assert!(Instant::now() < deadline, "no start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// Waits until the log has `count` lines containing `text`.
    fn wait_for_log(&mut self, text: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stderr().matches(text).count() < count {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir serve exited with {status}: {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no `{text}` in the log: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /health` over a new connection trusting only `ca`: the status, or the error.
fn health(url: &str, ca: &Path) -> Result<u16, String> {
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    weir_connectors::block_on(async {
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
        let client = weir_connectors::http_client()
            .tls_certs_only(roots)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .get(format!("{url}/health"))
            .send()
            .await
            .map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            })?;
        Ok(response.status().as_u16())
    })
}

/// `weir pipelines` against the server; (exit code, stdout, stderr).
fn pipelines(url: &str, ca: Option<&Path>, env_ca: Option<&Path>) -> (i32, String, String) {
    let mut command = weir();
    command.args(["pipelines", "--server", url]);
    command.env_remove("WEIR_CA_CERT");
    if let Some(ca) = ca {
        command.arg("--ca-cert").arg(ca);
    }
    if let Some(ca) = env_ca {
        command.env("WEIR_CA_CERT", ca);
    }
    let out = command.output().expect("run weir pipelines");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a plain-HTTP request to the port gets back (at most 64 bytes, within 10 s).
fn plain_http(url: &str) -> Vec<u8> {
    let address = url.trim_start_matches("https://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.take(64).read_to_end(&mut answer);
    answer
}

#[test]
fn serve_speaks_https_only_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = pki(dir.path(), "first");
    let second = pki(dir.path(), "second");
    // The files the server reads, now and at each SIGHUP.
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::copy(&first.cert, &cert).expect("copy");
    std::fs::copy(&first.key, &key).expect("copy");
    let config = dir.path().join("weir.yaml");
    std::fs::write(
        &config,
        "tls:\n  cert_file: server.pem\n  key_file: server.key\n",
    )
    .expect("config");
    let mut server = Server::start(&config, dir.path());
    let url = server.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // The CA of the certificate: the remote commands connect, by flag and by environment.
    assert_eq!(health(&url, &first.ca), Ok(200));
    let (code, out, err) = pipelines(&url, Some(&first.ca), None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("NAME"), "{out}");
    let (code, out, err) = pipelines(&url, None, Some(&first.ca));
    assert_eq!(code, 0, "WEIR_CA_CERT: {out}{err}");

    // Plain HTTP gets no HTTP answer (the handshake fails, the connection is closed).
    let answer = plain_http(&url);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    let (code, _, err) = pipelines(&url.replace("https://", "http://"), None, None);
    assert_ne!(code, 0, "plain HTTP worked: {err}");

    // Another CA, or none (the system's roots): refused, saying why.
    let (code, _, err) = pipelines(&url, Some(&second.ca), None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    assert!(health(&url, &second.ca).is_err());
    let (code, _, err) = pipelines(&url, None, None);
    assert_eq!(code, 1, "{err}");
    // A CA file that is not one: bad input, naming the file.
    let (code, _, err) = pipelines(&url, Some(&first.key), None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("first-server.key"), "{err}");

    // SIGHUP with the second certificate: new connections use it.
    std::fs::copy(&second.cert, &cert).expect("copy");
    std::fs::copy(&second.key, &key).expect("copy");
    server.hangup();
    server.wait_for_log("TLS certificate reloaded", 1);
    assert_eq!(health(&url, &second.ca), Ok(200));
    let (code, out, err) = pipelines(&url, Some(&second.ca), None);
    assert_eq!(code, 0, "{out}{err}");
    let old = health(&url, &first.ca);
    assert!(old.is_err(), "the old certificate is still served: {old:?}");

    // A bad new file: the error names it, and the server keeps the certificate it has.
    std::fs::write(&cert, "not a certificate\n").expect("write");
    server.hangup();
    server.wait_for_log("TLS reload failed", 1);
    let log = server.stderr();
    assert!(log.contains(&cert.display().to_string()), "{log}");
    assert_eq!(health(&url, &second.ca), Ok(200));
    // A key that does not go with the certificate: refused too.
    std::fs::copy(&second.cert, &cert).expect("copy");
    std::fs::copy(&first.key, &key).expect("copy");
    server.hangup();
    server.wait_for_log("TLS reload failed", 2);
    assert!(
        server.stderr().contains("does not go with"),
        "{}",
        server.stderr()
    );
    assert_eq!(health(&url, &second.ca), Ok(200));
    drop(server);

    // At start, a missing or bad file refuses to start (exit 2), naming the file.
    let missing = dir.path().join("missing.yaml");
    std::fs::write(
        &missing,
        "tls:\n  cert_file: server.pem\n  key_file: nowhere.key\n",
    )
    .expect("config");
    let out = weir()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&missing)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tls.key_file") && err.contains("nowhere.key"),
        "{err}"
    );
    std::fs::write(&cert, "not a certificate\n").expect("write");
    let out = weir()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&second.key)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tls.cert_file") && err.contains("server.pem"),
        "{err}"
    );
}

/// A Redis speaking TLS only on a free port, with `pki`'s certificate; `None` (skip) without
/// `redis-server`, unless `WEIR_REQUIRE_SERVICES=1`.
fn redis_tls(dir: &Path, pki: &Pki) -> Option<(Child, u16)> {
    let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(bin) = bin else {
        let required = matches!(
            std::env::var("WEIR_REQUIRE_SERVICES").as_deref(),
            Ok("1") | Ok("true") | Ok("yes")
        );
        assert!(!required, "redis-server is not installed");
        eprintln!("skipped: redis-server is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).expect("redis dir");
    let log = std::fs::File::create(dir.join("redis.log")).expect("log");
    let mut child = Command::new(bin)
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&data)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start redis-server");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "redis-server exited with {status}: {}",
                std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, port))
}

/// Kills the test's own Redis (by its id) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS-only Redis with a certificate of the first CA, and another CA; the Redis is killed
/// when the `Killed` is dropped.
fn rediss_with_two_cas(dir: &Path) -> Option<(Pki, Pki, Killed, u16)> {
    let good = pki(dir, "redis");
    let other = pki(dir, "other");
    let (redis, port) = redis_tls(dir, &good)?;
    Some((good, other, Killed(redis), port))
}

#[test]
fn a_pipeline_writes_and_reads_rediss_streams_with_its_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((good, other, _redis, port)) = rediss_with_two_cas(dir.path()) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}");
    // `ca_file` relative to the pipeline file.
    std::fs::copy(&good.ca, dir.path().join("ca.pem")).expect("copy");
    std::fs::copy(&other.ca, dir.path().join("wrong-ca.pem")).expect("copy");
    let write = dir.path().join("write.yaml");
    std::fs::write(
        &write,
        format!(
            "source: {{ type: generator, count: 300, fields: {{ n: id }} }}\n\
             sink: {{ type: redis_stream, url: \"{url}\", stream: tls-orders, ca_file: ca.pem }}\n"
        ),
    )
    .expect("write.yaml");
    let read = dir.path().join("read.yaml");
    std::fs::write(
        &read,
        format!(
            "source: {{ type: redis_stream, url: \"{url}\", stream: tls-orders, group: loader, stop_after_idle: 1s, ca_file: ca.pem }}\n\
             sink: {{ type: file, path: out.jsonl }}\n"
        ),
    )
    .expect("read.yaml");
    for file in [&write, &read] {
        let out = weir()
            .args(["validate", "--connect"])
            .arg(file)
            .output()
            .expect("validate");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = weir().arg("run").arg(file).output().expect("run");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out.jsonl");
    let mut ns: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..300).collect::<Vec<_>>());

    // The wrong CA: the check and the run fail, naming Redis, the URL and the TLS failure.
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&write)
            .expect("write.yaml")
            .replace("ca.pem", "wrong-ca.pem"),
    )
    .expect("wrong.yaml");
    let out = weir()
        .args(["validate", "--connect"])
        .arg(&wrong)
        .output()
        .expect("validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TLS with Redis") && err.contains(&url),
        "{err}"
    );
    let out = weir().arg("run").arg(&wrong).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("TLS with Redis"), "{err}");
    // A `ca_file` with a plain URL is refused, not ignored.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        std::fs::read_to_string(&write)
            .expect("write.yaml")
            .replace("rediss://", "redis://"),
    )
    .expect("plain.yaml");
    let out = weir().arg("run").arg(&plain).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ca_file"), "{err}");
}

/// `METHOD base+path` (a body of `content_type`), trusting only `ca` for HTTPS: (status,
/// body).
fn call(method: &str, url: &str, body: Option<(&str, &[u8])>, ca: Option<&Path>) -> (u16, String) {
    weir_connectors::block_on(async {
        let mut builder = weir_connectors::http_client().timeout(Duration::from_secs(60));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).expect("CA file");
            builder =
                builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA"));
        }
        let client = builder.build().expect("client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client.request(method, url);
        if let Some((content_type, bytes)) = body {
            request = request
                .header("content-type", content_type)
                .body(bytes.to_vec());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

/// POSTs YAML (a schema, a pipeline) to `url`, expecting it created.
fn post_yaml(url: &str, yaml: &[u8]) {
    let (status, body) = call("POST", url, Some(("application/yaml", yaml)), None);
    assert!(status == 200 || status == 201, "{url}: {status}: {body}");
}

/// The value of the sample `name` (with its labels, as exposed) in `/metrics` text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn tls_handshakes_in_progress_are_capped_and_idle_clients_time_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path(), "cap");
    let config = dir.path().join("weir.yaml");
    std::fs::write(
        &config,
        format!(
            "tls:\n  cert_file: {}\n  key_file: {}\nlimits:\n  tls_handshakes: 2\n  header_timeout: 3s\n",
            pki.cert.display(),
            pki.key.display()
        ),
    )
    .expect("config");
    let mut server = Server::start(&config, dir.path());
    let url = server.url.clone();
    assert_eq!(health(&url, &pki.ca), Ok(200));

    // Five clients that connect and never send a ClientHello: two take the handshake slots,
    // the next one waits for a slot, and the listener accepts nothing more meanwhile.
    let address = url.trim_start_matches("https://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..5)
        .map(|_| std::net::TcpStream::connect(&address).expect("connect"))
        .collect();
    server.wait_for_log("2 TLS handshakes in progress (limits.tls_handshakes)", 1);

    // Their handshakes time out (limits.header_timeout), slot by slot; then a real client
    // gets through.
    assert_eq!(health(&url, &pki.ca), Ok(200));
    let (status, metrics) = call("GET", &format!("{url}/metrics"), None, Some(&pki.ca));
    assert_eq!(status, 200, "{metrics}");
    // The real client came after the five in the backlog: at least four of them had timed
    // out to free its slot (the fifth may still hold the other).
    let timed_out =
        sample(&metrics, "weir_tls_handshakes_total{outcome=\"timed_out\"}").unwrap_or(0.0);
    assert!(timed_out >= 4.0, "{metrics}");
    let waited = sample(&metrics, "weir_tls_handshakes_waited_total").unwrap_or(0.0);
    assert!(waited >= 1.0, "{metrics}");
    assert!(
        sample(&metrics, "weir_tls_handshakes_total{outcome=\"ok\"}").unwrap_or(0.0) >= 2.0,
        "{metrics}"
    );
    drop(idle);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());

    // A cap of 0 is refused at start, naming the setting.
    std::fs::write(&config, "limits:\n  tls_handshakes: 0\n").expect("config");
    let out = weir()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("limits.tls_handshakes"), "{err}");
}

const EVENT_SCHEMA: &str =
    "name: tls.event\nfields:\n  - { name: id, type: int, required: true }\n";

#[test]
fn serve_ingests_over_rediss_with_its_ca_file_and_ready_checks_pipelines_ca_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((good, other, _redis, port)) = rediss_with_two_cas(dir.path()) else {
        return;
    };
    let rediss = format!("rediss://127.0.0.1:{port}");

    // The server: ingest over rediss:// trusting `ingest.redis_ca_file` (relative to its
    // config file); `/ready` answers are reused for 100 ms only.
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).expect("dir");
    std::fs::copy(&good.ca, main.join("ingest-ca.pem")).expect("copy");
    let config = main.join("weir.yaml");
    std::fs::write(
        &config,
        format!(
            "ingest:\n  redis_url: \"{rediss}\"\n  redis_ca_file: ingest-ca.pem\n  streams:\n    tls.event: tls-events\nready:\n  cache: 100ms\n  timeout: 5s\n"
        ),
    )
    .expect("config");
    let server = Server::start(&config, &main);
    let url = server.url.clone();
    post_yaml(&format!("{url}/v1/schemas"), EVENT_SCHEMA.as_bytes());

    // A pipeline reading the stream over rediss:// with its own CA file (absolute: relative
    // paths of a submitted pipeline resolve in the data dir).
    let pipeline_ca = dir.path().join("pipeline-ca.pem");
    std::fs::copy(&good.ca, &pipeline_ca).expect("copy");
    let out = dir.path().join("read.jsonl");
    let pipeline = format!(
        "name: tls-reader\nsource: {{ type: redis_stream, url: \"{rediss}\", stream: tls-events, group: reader, ca_file: \"{}\" }}\nsink: {{ type: file, path: \"{}\" }}\n",
        pipeline_ca.display(),
        out.display()
    );
    post_yaml(&format!("{url}/v1/pipelines"), pipeline.as_bytes());

    // Ingest appends over TLS; the pipeline reads what it appended.
    let (status, body) = call(
        "POST",
        &format!("{url}/v1/ingest/tls.event"),
        Some((
            "application/json",
            b"[{\"id\": 1}, {\"id\": 2}, {\"id\": 3}]",
        )),
        None,
    );
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"accepted\":3"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 3 {
            let mut ids: Vec<i64> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                        .as_i64()
                        .expect("id")
                })
                .collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![1, 2, 3]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not read the ingested records: {text}\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // `/ready`: the rediss:// source is checked with its CA file: ready.
    let ready = |want: u16| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = call("GET", &format!("{url}/ready"), None, None);
            if status == want {
                return serde_json::from_str(&body).expect("json");
            }
            assert!(
                Instant::now() < deadline,
                "/ready is not {want}: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let body = ready(200);
    // The check of tls-reader's redis_stream source in a `/ready` body.
    let source_check = |body: &serde_json::Value| -> serde_json::Value {
        body["connectors"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|c| c["pipeline"] == "tls-reader" && c["connector"] == "redis_stream")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no check of tls-reader: {body}"))
    };
    let source = source_check(&body);
    assert_eq!(source["ok"], true, "{body}");

    // The pipeline's CA file now holds another CA (say, a bad rotation): the check fails on
    // TLS, and the server is not ready, naming the pipeline and its source.
    std::fs::copy(&other.ca, &pipeline_ca).expect("copy");
    let body = ready(503);
    let source = source_check(&body);
    assert_eq!(source["ok"], false, "{body}");
    let error = source["error"].as_str().unwrap_or_default();
    assert!(error.contains("TLS with Redis"), "{body}");
    assert!(
        body["reasons"]
            .to_string()
            .contains("pipeline `tls-reader`"),
        "{body}"
    );
    std::fs::copy(&good.ca, &pipeline_ca).expect("copy");
    ready(200);
    drop(server);

    // Ingest trusting another CA (by the environment, WEIR_INGEST_REDIS_CA_FILE): 503, naming
    // TLS and the setting; nothing appended, the server keeps serving.
    let wrong = dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).expect("dir");
    let wrong_config = wrong.join("weir.yaml");
    std::fs::write(
        &wrong_config,
        format!("ingest:\n  redis_url: \"{rediss}\"\n  streams:\n    tls.event: tls-events\n"),
    )
    .expect("config");
    let server = Server::start_with_env(
        &wrong_config,
        &wrong,
        &[("WEIR_INGEST_REDIS_CA_FILE", &other.ca)],
    );
    let url = server.url.clone();
    post_yaml(&format!("{url}/v1/schemas"), EVENT_SCHEMA.as_bytes());
    let (status, body) = call(
        "POST",
        &format!("{url}/v1/ingest/tls.event"),
        Some(("application/json", b"{\"id\": 4}")),
        None,
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("TLS with Redis") && body.contains("ingest.redis_ca_file"),
        "{body}"
    );
    assert_eq!(
        call("GET", &format!("{url}/health"), None, None).0,
        200,
        "{}",
        server.stderr()
    );
    drop(server);

    // A CA file with a plain redis:// URL, or one without a certificate: refused at start.
    for (yaml, key, what) in [
        (
            format!(
                "ingest:\n  redis_url: redis://127.0.0.1:{port}\n  redis_ca_file: ingest-ca.pem\n"
            ),
            "ingest.redis_ca_file",
            "rediss://",
        ),
        (
            format!("ingest:\n  redis_url: \"{rediss}\"\n  redis_ca_file: weir.yaml\n"),
            "ingest.redis_ca_file",
            "no certificate",
        ),
        (
            format!("ingest:\n  redis_url: \"{rediss}#insecure\"\n"),
            "ingest.redis_url",
            "insecure",
        ),
    ] {
        std::fs::write(&config, yaml).expect("config");
        let out = weir()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(main.join("data"))
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(key) && err.contains(what), "{key}: {err}");
    }
}
