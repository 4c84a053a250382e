//! A running bridge in front of a private Dovecot, plus a direct IMAP client, for tests that
//! use the API the way a front end does and check the result on the server itself.

use std::net::SocketAddr;
use std::time::Duration;

use imap_bridge::config::{Config, Security};
use imap_bridge::http::AppState;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::dovecot::{Dovecot, DovecotOptions};

/// The default test user.
pub const USER: &str = "alice";
/// The default test user's password (non-ASCII on purpose: it travels as an IMAP literal).
pub const PASSWORD: &str = "s3cret-Pässwort";

/// How the bridge reaches Dovecot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Implicit TLS on Dovecot's imaps port, verified against the test CA.
    Tls,
    /// STARTTLS on the plain port, verified against the test CA.
    Starttls,
    /// Plain TCP on loopback.
    Plain,
}

/// A bridge serving on a loopback port, with its Dovecot.
pub struct TestBridge {
    /// The mail server.
    pub dovecot: Dovecot,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The bridge's state (pool statistics and the like).
    pub state: AppState,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The bridge's settings for `dovecot` over `link`, with test-friendly timeouts.
pub fn config_for(dovecot: &Dovecot, link: Link) -> Config {
    let (addr, security) = match link {
        Link::Tls => (dovecot.imaps_addr(), Security::Tls),
        Link::Starttls => (dovecot.imap_addr(), Security::Starttls),
        Link::Plain => (dovecot.imap_addr(), Security::Plain),
    };
    // The certificate names "localhost", so TLS links must use that name.
    let host = if link == Link::Plain {
        "127.0.0.1"
    } else {
        "localhost"
    };
    let mut config = Config::for_server(host, addr.port(), security);
    config.imap_ca_file = Some(dovecot.ca_cert_path());
    config.jwt_secret = Some("test-secret-that-is-at-least-32-bytes-long".to_owned());
    config.imap_command_timeout = 10;
    config.imap_connect_timeout = 5;
    config.pool_wait_timeout = 5;
    config
}

impl TestBridge {
    /// Dovecot with the default user, and a bridge over implicit TLS.
    pub async fn start() -> Self {
        Self::start_with(DovecotOptions::default(), Link::Tls, |_| {}).await
    }

    /// Dovecot with `opts` and the default user, a bridge over `link`, `adjust` applied to its
    /// settings.
    pub async fn start_with(
        opts: DovecotOptions,
        link: Link,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dovecot = tokio::task::spawn_blocking(move || {
            let dovecot = Dovecot::start_with(opts);
            dovecot.add_user(USER, PASSWORD);
            dovecot
        })
        .await
        .expect("dovecot start");
        let mut config = config_for(&dovecot, link);
        adjust(&mut config);
        Self::serve(dovecot, config).await
    }

    /// Serves `config` in front of `dovecot`. Set `IMAP_BRIDGE_TEST_LOG` (a tracing filter) to
    /// see the bridge's logs.
    pub async fn serve(dovecot: Dovecot, config: Config) -> Self {
        if let Ok(filter) = std::env::var("IMAP_BRIDGE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let state = imap_bridge::build_state(config.clone()).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(imap_bridge::serve_with_state(
            state.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        TestBridge {
            dovecot,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            state,
            config,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the bridge to log out its sessions.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("bridge task").expect("bridge ran");
        }
    }

    /// Stops the bridge and starts a new one with the same settings (and secret) in front of
    /// the same Dovecot, on a new port, as a restart or another replica would be.
    pub async fn restart(&mut self) {
        self.stop().await;
        let state = imap_bridge::build_state(self.config.clone()).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(imap_bridge::serve_with_state(
            state.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        )));
        self.shutdown = Some(tx);
        self.state = state;
        self.base = format!("http://{addr}");
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Logs in as `user` and returns the access token (panics unless 200).
    pub async fn login_as(&self, user: &str, password: &str) -> String {
        let res = self
            .request(Method::POST, "/v1/auth/login", None)
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request");
        let status = res.status();
        let body: Value = res.json().await.expect("login body");
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// Logs in as the default user.
    pub async fn login(&self) -> String {
        self.login_as(USER, PASSWORD).await
    }

    /// GET with a token, returning status and JSON body.
    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let res = self
            .request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("request");
        json_of(res).await
    }

    /// A direct IMAP session on Dovecot's plain port, to check what the bridge did.
    pub async fn imap(&self) -> DirectImap {
        DirectImap::login(self.dovecot.imap_addr(), USER, PASSWORD).await
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Status and JSON body of a response; asserts problem responses have the RFC 9457 shape.
pub async fn json_of(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = res.bytes().await.expect("body");
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    if !status.is_success() && status != StatusCode::NOT_MODIFIED {
        assert_eq!(
            content_type, "application/problem+json",
            "error without problem+json: {status} {body}"
        );
        assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(status.as_u16())),
            "problem status mismatch: {body}"
        );
        assert!(
            body["code"].is_string() && body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
    }
    (status, body)
}

/// Percent-encodes a mailbox name as one path segment.
pub fn seg(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A direct IMAP client for verification (async-imap's own typed API, plain loopback).
pub struct DirectImap {
    /// The session.
    pub session: async_imap::Session<TcpStream>,
}

impl DirectImap {
    /// Connects and logs in.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect to dovecot");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .expect("greeting")
            .expect("greeting");
        let session = client
            .login(user, password)
            .await
            .map_err(|(e, _)| e)
            .expect("direct login");
        DirectImap { session }
    }

    /// UIDs of every message in `mailbox` (modified UTF-7 name), ascending.
    pub async fn uids(&mut self, mailbox: &str) -> Vec<u32> {
        self.session.select(mailbox).await.expect("select");
        let mut uids: Vec<u32> = self
            .session
            .uid_search("ALL")
            .await
            .expect("search")
            .into_iter()
            .collect();
        uids.sort_unstable();
        uids
    }

    /// Flags of one message.
    pub async fn flags(&mut self, mailbox: &str, uid: u32) -> Vec<String> {
        use futures::TryStreamExt;
        self.session.select(mailbox).await.expect("select");
        let fetches: Vec<_> = self
            .session
            .uid_fetch(uid.to_string(), "FLAGS")
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("fetch stream");
        fetches
            .iter()
            .flat_map(|f| f.flags().map(|fl| format!("{fl:?}")).collect::<Vec<_>>())
            .collect()
    }

    /// APPENDs a message and returns nothing (async-imap does not report APPENDUID).
    pub async fn append(&mut self, mailbox: &str, raw: &[u8]) {
        self.session
            .append(mailbox, None, None, raw)
            .await
            .expect("append");
    }

    /// Expunges one UID.
    pub async fn expunge(&mut self, mailbox: &str, uid: u32) {
        use futures::TryStreamExt;
        self.session.select(mailbox).await.expect("select");
        let _: Vec<_> = self
            .session
            .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
            .await
            .expect("store")
            .try_collect()
            .await
            .expect("store stream");
        let _: Vec<_> = self
            .session
            .uid_expunge(uid.to_string())
            .await
            .expect("expunge")
            .try_collect()
            .await
            .expect("expunge stream");
    }
}
