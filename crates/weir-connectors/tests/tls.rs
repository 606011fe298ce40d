//! TLS of the connectors against real servers started by each test with certificates made at
//! test time (rcgen): a Redis with `--tls-port` (`rediss://`) and a ClickHouse with
//! `https_port` (`https://`; also the target of the HTTP enrichment and webhook sink). Debian's
//! builds of both have TLS, so no proxy stands in front of them.
//!
//! Each server runs on free ports of 127.0.0.1 in a temp dir and is killed when the test ends;
//! the shared services of `scripts/services.sh` are not touched. Without `redis-server` or
//! `clickhouse-server` installed a test skips, or fails under `WEIR_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_connectors::http::{
    BodyFormat, HttpEnrichConfig, HttpEnricher, HttpError, HttpSink, HttpSinkConfig,
};
use weir_connectors::{
    ClickHouseClient, ClickHouseConfig, ConnectorError, FieldEncoding, GroupStart,
    RedisStreamReader, RedisStreamReaderConfig, RedisStreamWriter, RedisStreamWriterConfig,
};
use weir_core::{OperatorContext, Sink};
use weir_types::{Record, Value};

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
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn installed(program: &str) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(format!("/usr/bin/{program}")),
        PathBuf::from(format!("/usr/sbin/{program}")),
        PathBuf::from(format!("/usr/local/bin/{program}")),
    ];
    let found = candidates.into_iter().find(|p| p.exists());
    if found.is_none() {
        let required = matches!(
            std::env::var("WEIR_REQUIRE_SERVICES").as_deref(),
            Ok("1") | Ok("true") | Ok("yes")
        );
        assert!(
            !required,
            "{program} is not installed (bash scripts/services.sh start installs it)"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

/// A server process of a test; killed (by its own id) when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn the server");
        Process { child, log }
    }

    /// Waits until `port` accepts connections; panics with the log if the process exits.
    fn wait_for_port(&mut self, port: u16) {
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited ({status}) during start-up: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not listen on {port} within 60 s: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis speaking TLS only, with `pki`'s certificate.
fn redis_tls(dir: &Path, pki: &Pki) -> Option<(Process, u16)> {
    let bin = installed("redis-server")?;
    let port = free_port();
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).expect("redis dir");
    let mut command = Command::new(bin);
    command
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args(["--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&data);
    let mut process = Process::spawn(command, dir.join("redis.log"));
    process.wait_for_port(port);
    Some((process, port))
}

/// A ClickHouse whose HTTP interface speaks TLS only (`https_port`), with `pki`'s certificate.
fn clickhouse_tls(dir: &Path, pki: &Pki) -> Option<(Process, u16)> {
    let bin = installed("clickhouse-server")?;
    let https = free_port();
    let tcp = free_port();
    let ch = dir.join("clickhouse");
    for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
        std::fs::create_dir_all(ch.join(sub)).expect("clickhouse dir");
    }
    let d = ch.display();
    std::fs::write(
        ch.join("config.xml"),
        format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <https_port>{https}</https_port>
    <tcp_port>{tcp}</tcp_port>
    <openSSL><server>
        <certificateFile>{cert}</certificateFile>
        <privateKeyFile>{key}</privateKeyFile>
        <verificationMode>none</verificationMode>
        <loadDefaultCAFile>false</loadDefaultCAFile>
        <disableProtocols>sslv2,sslv3</disableProtocols>
    </server></openSSL>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
</yandex>
"#,
            cert = pki.cert.display(),
            key = pki.key.display(),
        ),
    )
    .expect("config.xml");
    std::fs::write(
        ch.join("users.xml"),
        r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"#,
    )
    .expect("users.xml");
    let mut command = Command::new(bin);
    command
        .arg(format!("--config-file={}", ch.join("config.xml").display()))
        .current_dir(&ch);
    let mut process = Process::spawn(command, ch.join("log/stdout.log"));
    process.wait_for_port(https);
    Some((process, https))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn redis_over_rediss_with_the_ca_file_and_refused_with_a_wrong_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = pki(dir.path(), "redis");
    let other = pki(dir.path(), "other");
    let Some((_redis, port)) = redis_tls(dir.path(), &good) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}");
    let rt = runtime();
    rt.block_on(async {
        // The CA of the server's certificate: records written and read back over TLS.
        let mut config = RedisStreamWriterConfig::new(&url, "tls-orders");
        config.ca_file = Some(good.ca.clone());
        let mut writer = RedisStreamWriter::connect(config).await.expect("writer");
        let records: Vec<Record> = (0..20)
            .map(|i| Record::from_pairs([("i", Value::Int(i))]))
            .collect();
        writer.write(&records).await.expect("write over TLS");
        let mut reader = RedisStreamReaderConfig::new(&url, "tls-orders", "g", "c");
        reader.ca_file = Some(good.ca.clone());
        reader.encoding = FieldEncoding::default();
        reader.start = GroupStart::Beginning;
        reader.block = Duration::ZERO;
        let mut reader = RedisStreamReader::connect(reader).await.expect("reader");
        let batch = reader.read_batch().await.expect("read over TLS");
        let ids: Vec<i64> = batch
            .entries
            .iter()
            .map(|e| match e.record.get("i") {
                Some(Value::Int(i)) => *i,
                other => panic!("unexpected field: {other:?}"),
            })
            .collect();
        assert_eq!(ids, (0..20).collect::<Vec<_>>());
        weir_connectors::check_redis_with_ca(&url, Some(&good.ca))
            .await
            .expect("the connectivity check passes with the CA");

        // A CA that did not sign the server's certificate: a TLS error naming Redis and the
        // URL, not retried.
        let mut wrong = RedisStreamWriterConfig::new(&url, "tls-orders");
        wrong.ca_file = Some(other.ca.clone());
        let e = RedisStreamWriter::connect(wrong)
            .await
            .expect_err("a wrong CA is refused");
        let text = e.to_string();
        assert!(matches!(e, ConnectorError::Tls { .. }), "{text}");
        assert!(text.contains("Redis") && text.contains(&url), "{text}");
        assert!(
            text.contains("certificate") || text.contains("UnknownIssuer"),
            "{text}"
        );
        assert!(!e.is_retryable(), "{text}");
        let e = weir_connectors::check_redis_with_ca(&url, Some(&other.ca))
            .await
            .expect_err("the check fails too");
        assert!(matches!(e, ConnectorError::Tls { .. }), "{e}");

        // Without a CA file the system's roots are used, and they do not know the test CA:
        // refused, never silently accepted.
        let e = RedisStreamWriter::connect(RedisStreamWriterConfig::new(&url, "tls-orders"))
            .await
            .expect_err("an unknown CA is refused");
        assert!(matches!(e, ConnectorError::Tls { .. }), "{e}");

        // Turning verification off is refused, and so is a CA file with a plain URL.
        let insecure = RedisStreamWriterConfig::new(format!("{url}/#insecure"), "tls-orders");
        let e = RedisStreamWriter::connect(insecure)
            .await
            .expect_err("#insecure is refused");
        assert!(e.to_string().contains("#insecure"), "{e}");
        let mut plain = RedisStreamWriterConfig::new(format!("redis://127.0.0.1:{port}"), "x");
        plain.ca_file = Some(good.ca.clone());
        let e = RedisStreamWriter::connect(plain)
            .await
            .expect_err("a CA file with redis:// is refused");
        assert!(e.to_string().contains("ca_file"), "{e}");
    });
}

#[test]
fn clickhouse_and_http_calls_over_https_with_the_ca_file_and_refused_with_a_wrong_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = pki(dir.path(), "clickhouse");
    let other = pki(dir.path(), "other");
    let Some((_clickhouse, port)) = clickhouse_tls(dir.path(), &good) else {
        return;
    };
    let url = format!("https://127.0.0.1:{port}");
    let rt = runtime();
    let mut config = ClickHouseConfig::new(&url);
    config.ca_file = Some(good.ca.clone());
    let client = ClickHouseClient::new(config).expect("client");
    rt.block_on(async {
        // ClickHouse may take a moment after it listens to answer queries.
        let started = Instant::now();
        while let Err(e) = client.ping().await {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ClickHouse over https did not answer: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
            .execute("CREATE TABLE tls_rows (i Int64) ENGINE = MergeTree ORDER BY i")
            .await
            .expect("create over https");
        client
            .insert_json_each_row("tls_rows", b"{\"i\":1}\n{\"i\":2}\n")
            .await
            .expect("insert over https");
        weir_connectors::check_clickhouse({
            let mut c = ClickHouseConfig::new(&url);
            c.ca_file = Some(good.ca.clone());
            c
        })
        .await
        .expect("the connectivity check passes with the CA");

        // A wrong CA: a TLS error naming ClickHouse and the URL, not retried.
        let mut wrong = ClickHouseConfig::new(&url);
        wrong.ca_file = Some(other.ca.clone());
        let e = ClickHouseClient::new(wrong)
            .expect("client")
            .execute("SELECT 1")
            .await
            .expect_err("a wrong CA is refused");
        let text = e.to_string();
        assert!(matches!(e, ConnectorError::Tls { .. }), "{text} {e:?}");
        assert!(text.contains("ClickHouse") && text.contains(&url), "{text}");
        assert!(!e.is_retryable(), "{text}");
        // No CA file: the system's roots do not know the test CA.
        let e = ClickHouseClient::new(ClickHouseConfig::new(&url))
            .expect("client")
            .execute("SELECT 1")
            .await
            .expect_err("an unknown CA is refused");
        assert!(matches!(e, ConnectorError::Tls { .. }), "{e}");
        // A CA file with http:// is refused at once.
        let mut plain = ClickHouseConfig::new(format!("http://127.0.0.1:{port}"));
        plain.ca_file = Some(good.ca.clone());
        let e = ClickHouseClient::new(plain).expect_err("a CA file with http:// is refused");
        assert!(e.to_string().contains("ca_file"), "{e}");

        // The HTTP enrichment over https, against ClickHouse's HTTP interface: a query per
        // record, its JSON row merged into the record.
        let mut enrich = HttpEnrichConfig::new(format!(
            "{url}/?query=SELECT%20{{n}}*2%20AS%20doubled%20FORMAT%20JSONEachRow"
        ));
        enrich.ca_file = Some(good.ca.clone());
        enrich.policy = serde_json::from_str(r#"{"retries": 0}"#).expect("policy");
        let enricher = HttpEnricher::new(enrich).expect("enricher");
        let record = enricher
            .enrich(Record::from_pairs([("n", Value::Int(21))]))
            .await
            .expect("enrich over https");
        assert_eq!(record.get("doubled"), Some(&Value::Int(42)), "{record:?}");
        let mut wrong = HttpEnrichConfig::new(format!("{url}/?query=SELECT%201"));
        wrong.ca_file = Some(other.ca.clone());
        wrong.policy = serde_json::from_str(r#"{"retries": 3}"#).expect("policy");
        let e = HttpEnricher::new(wrong)
            .expect("enricher")
            .enrich(Record::from_pairs([("n", Value::Int(1))]))
            .await
            .expect_err("a wrong CA is refused");
        match &e {
            weir_resilience::Error::Operation {
                source: HttpError::Tls { url: at, reason },
                attempts,
            } => {
                assert_eq!(*attempts, 1, "a TLS failure is not retried");
                assert!(at.starts_with(&url), "{e}");
                assert!(
                    reason.contains("certificate") || reason.contains("UnknownIssuer"),
                    "{e}"
                );
            }
            other => panic!("expected a TLS error, found {other}"),
        }
    });

    // The webhook sink over https: batches of JSON lines inserted into ClickHouse.
    let mut sink = HttpSinkConfig::new(format!(
        "{url}/?query=INSERT%20INTO%20tls_rows%20FORMAT%20JSONEachRow"
    ));
    sink.format = BodyFormat::JsonLines;
    sink.batch_rows = 4;
    sink.ca_file = Some(good.ca.clone());
    sink.policy = serde_json::from_str(r#"{"retries": 0}"#).expect("policy");
    let mut sink = HttpSink::new(sink).expect("sink");
    let mut ctx = OperatorContext::detached("webhook");
    let mut batch: Vec<Record> = (10..20)
        .map(|i| Record::from_pairs([("i", Value::Int(i))]))
        .collect();
    sink.write(&mut batch, &mut ctx).expect("POST over https");
    sink.close(&mut ctx).expect("last batch");
    let count = rt
        .block_on(client.query_json("SELECT count() AS c, sum(i) AS s FROM tls_rows"))
        .expect("count");
    assert_eq!(count[0].get("c"), Some(&Value::Int(12)), "{count:?}");
    assert_eq!(
        count[0].get("s"),
        Some(&Value::Int(1 + 2 + (10..20).sum::<i64>()))
    );
    let mut wrong = HttpSinkConfig::new(format!("{url}/?query=SELECT%201"));
    wrong.ca_file = Some(other.ca.clone());
    wrong.policy = serde_json::from_str(r#"{"retries": 0}"#).expect("policy");
    let mut wrong = HttpSink::new(wrong).expect("sink");
    let mut batch = vec![Record::from_pairs([("i", Value::Int(0))])];
    let _ = wrong.write(&mut batch, &mut ctx);
    let e = wrong
        .close(&mut ctx)
        .expect_err("a wrong CA fails the sink");
    assert!(e.to_string().contains("TLS"), "{e}");
}
