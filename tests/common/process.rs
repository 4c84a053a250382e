//! The real `imap-bridge` binary as a child process, for what only a process shows: signals,
//! its exit status, how long a shutdown takes, several replicas side by side.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::bridge::json_of;
use super::dovecot::Dovecot;

/// The JWT secret every process started here shares, as replicas must.
pub const SHARED_SECRET: &str = "replica-secret-that-is-at-least-32-bytes-long";

/// The `imap-bridge` binary serving on a loopback port in front of a Dovecot.
pub struct BridgeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client of this process (keep-alive connections, 60 s timeout).
    pub http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BridgeProcess {
    /// Starts the binary over implicit TLS to `dovecot` with [`SHARED_SECRET`], logging at
    /// `info` (or `IMAP_BRIDGE_TEST_LOG`) to a file, every other setting at its default unless
    /// `settings` (environment name, value) says otherwise. Returns once `/healthz` answers.
    pub async fn start(dovecot: &Dovecot, settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imap-bridge-process-")
            .tempdir()
            .expect("temporary directory");
        let log = dir.path().join("bridge.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // Taken from a listener that is closed again; nothing else on loopback races for it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_imap-bridge"))
            .env("IMAP_BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(dovecot.bridge_env())
            .env("IMAP_BRIDGE_JWT_SECRET", SHARED_SECRET)
            .env(
                "IMAP_BRIDGE_LOG",
                std::env::var("IMAP_BRIDGE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting imap-bridge");
        let mut process = BridgeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(res) = fresh_client().get(process.url("/healthz")).send().await
                && res.status() == StatusCode::OK
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("imap-bridge exited with {status}:\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "imap-bridge did not answer within 10 s:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as Kubernetes and `docker stop` do.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status once the process has exited, polling; panics with its log after
    /// `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "imap-bridge still running {within:?} after being asked to stop:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// `host:port` it listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A request with an optional bearer token, on this process's keep-alive client.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Logs in and returns the access token (panics unless 200).
    pub async fn login(&self, user: &str, password: &str) -> String {
        let (status, body) = json_of(
            self.request(Method::POST, "/v1/auth/login", None)
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .expect("login request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// GET with a token: status and JSON body.
    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        json_of(
            self.request(Method::GET, path, Some(token))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Opens `GET /v1/events` for INBOX and records its raw text (see [`RawEventStream`]).
    pub async fn events(&self, token: &str, last_event_id: Option<&str>) -> RawEventStream {
        let mut req = self.request(Method::GET, "/v1/events?mailbox=INBOX", Some(token));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.expect("events request");
        assert_eq!(res.status(), StatusCode::OK, "events");
        RawEventStream::record(res)
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with no pooled connections: every request opens a new one, as a request routed
/// anew by a load balancer would, so it shows whether the listener still accepts.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// An event stream read to its end in the background, kept as the exact text the server sent
/// (comments and `retry:` fields included, which an EventSource parser hides).
pub struct RawEventStream {
    text: Arc<Mutex<String>>,
    task: JoinHandle<Result<(), String>>,
}

/// One `event:`/`id:`/`data:` block of a stream's text.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// `event:`.
    pub event: String,
    /// `id:`.
    pub id: String,
    /// `data:` as JSON.
    pub data: Value,
}

impl RawEventStream {
    /// Starts recording an open `text/event-stream` response.
    pub fn record(res: reqwest::Response) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let task = tokio::spawn(async move {
            let mut body = res.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("{e:?}"))?;
                sink.lock()
                    .expect("stream text")
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
            Ok(())
        });
        RawEventStream { text, task }
    }

    /// The text received so far.
    pub fn text(&self) -> String {
        self.text.lock().expect("stream text").clone()
    }

    /// The events received so far (blocks with an `event:` field).
    pub fn events(&self) -> Vec<RawEvent> {
        parse_events(&self.text())
    }

    /// Waits until `n` events have arrived; panics with the text after `within`.
    pub async fn wait_for_events(&self, n: usize, within: Duration) -> Vec<RawEvent> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} events within {within:?}, got:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the stream to end: the whole text, or the transport error that ended it.
    pub async fn finished(self, within: Duration) -> Result<String, String> {
        let ended = tokio::time::timeout(within, self.task)
            .await
            .map_err(|_| format!("still open after {within:?}"))?
            .expect("stream reader task");
        let text = self.text.lock().expect("stream text").clone();
        ended.map(|()| text)
    }
}

/// The blocks of an event stream's text that carry an `event:` field.
pub fn parse_events(text: &str) -> Vec<RawEvent> {
    // Only whole blocks: the text after the last blank line may still be arriving.
    let whole = text.rfind("\n\n").map_or("", |end| &text[..end]);
    whole
        .split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_owned())
            };
            Some(RawEvent {
                event: field("event:")?,
                id: field("id:").unwrap_or_default(),
                data: serde_json::from_str(&field("data:").unwrap_or_default())
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}
