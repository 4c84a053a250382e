//! The real `imap-bridge` binary as a child process, so that its memory and CPU time are its
//! own and can be read from `/proc`, and the HTTP calls benches make of it.
//!
//! Included by benches with `#[path = "common/bridge_process.rs"] mod bridge_process;`; expects
//! the including crate to have `mod dovecot` (from `tests/common/dovecot.rs`).
#![allow(dead_code)] // each bench uses a subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::dovecot::Dovecot;

/// Password of every user benches create.
pub const PASSWORD: &str = "bench-password";

/// The `imap-bridge` binary serving on a free loopback port in front of a Dovecot.
pub struct BridgeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl BridgeProcess {
    /// Starts the binary over implicit TLS to `dovecot`, logging to stderr at `BENCH_BRIDGE_LOG`
    /// (default `warn`), with every other setting at its default unless `settings`
    /// (environment name, value) says otherwise. Returns once it accepts connections.
    pub fn start(dovecot: &Dovecot, settings: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_imap-bridge"))
            .env("IMAP_BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(dovecot.bridge_env())
            .env(
                "IMAP_BRIDGE_JWT_SECRET",
                "benchmark-secret-that-is-at-least-32-bytes",
            )
            .env(
                "IMAP_BRIDGE_LOG",
                std::env::var("BENCH_BRIDGE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .context("starting imap-bridge")?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "imap-bridge did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(BridgeProcess { child, base })
    }

    /// The process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// Logs `user` in with [`PASSWORD`]; returns the access token.
    pub async fn login(&self, http: &reqwest::Client, user: &str) -> anyhow::Result<String> {
        let login: Value = http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&serde_json::json!({"username": user, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(login["access_token"]
            .as_str()
            .context("no token")?
            .to_owned())
    }

    /// Opens an event stream (`GET /v1/events`); returns once its headers arrived, which the
    /// bridge sends when the stream's IDLE watcher is running.
    pub async fn stream(
        &self,
        http: &reqwest::Client,
        token: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let res = http
            .get(format!("{}/v1/events", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = res.status();
        if status != 200 {
            let problem = res.text().await.unwrap_or_default();
            anyhow::bail!("events: {status}: {problem}");
        }
        Ok(res)
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
