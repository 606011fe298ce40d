//! A `weir serve` process with `auth.enabled: true` for the integration tests that drive it
//! with tokens (auth.rs, security.rs): the binary with a clean environment, keys, free ports.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary under test, without the caller's `WEIR_*` settings.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("WEIR_LOG")
        .env_remove("WEIR_LOG_FORMAT")
        .env_remove("WEIR_AUTH_KEY_FILE")
        .env_remove("WEIR_PROFILE")
        .env_remove("WEIR_DATA_DIR")
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_SERVER");
    c
}

/// `weir token keygen FILE`.
pub fn keygen(path: &Path) {
    let out = weir()
        .args(["token", "keygen"])
        .arg(path)
        .output()
        .expect("run weir token keygen");
    assert!(out.status.success(), "{out:?}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `weir serve` (auth enabled, the given extra config) with its standard error in a
/// file; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, key: &Path, extra: &str) -> Server {
        let port = free_port();
        let config = dir.join("weir.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: data\nauth:\n  enabled: true\n  key_file: {}\n{extra}",
                key.display()
            ),
        )
        .expect("write the config");
        let log = dir.join("serve.log");
        let child = weir()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start weir serve");
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !server.stderr().contains("listening on") {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("weir serve exited with {status}: {}", server.stderr());
            }
            assert!(Instant::now() < deadline, "no start: {}", server.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process's resident memory (kB), from /proc.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
