//! A running bridge in front of a private Dovecot, plus a direct IMAP client, for tests that
//! use the API the way a front end does and check the result on the server itself.

use std::collections::{BTreeMap, BTreeSet};
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

/// A bridge serving on a loopback port, with its Dovecot. Its HTTP side is [`BridgeApi`],
/// reached through `Deref` (`bridge.login()`, `bridge.base`).
pub struct TestBridge {
    /// The mail server.
    pub dovecot: Dovecot,
    /// The bridge's HTTP side.
    pub api: BridgeApi,
    /// The bridge's state (pool statistics and the like).
    pub state: AppState,
    serving: Serving,
}

/// What a front end has of a running bridge: its address and an HTTP client.
pub struct BridgeApi {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl std::ops::Deref for TestBridge {
    type Target = BridgeApi;

    fn deref(&self) -> &BridgeApi {
        &self.api
    }
}

/// A bridge running in this process: its settings and the handles that stop it.
pub struct Serving {
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Serving {
    /// Serves `config` on a new loopback port. Set `IMAP_BRIDGE_TEST_LOG` (a tracing filter)
    /// to see the bridge's logs.
    pub async fn start(config: Config) -> (Serving, BridgeApi, AppState) {
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
        let api = BridgeApi {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        let serving = Serving {
            config,
            shutdown: Some(tx),
            task: Some(task),
        };
        (serving, api, state)
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

    /// The settings it serves with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The bridge's settings for `dovecot` over `link`, with a test-friendly pool wait.
pub fn config_for(dovecot: &Dovecot, link: Link) -> Config {
    config_for_server(
        dovecot.imap_addr(),
        dovecot.imaps_addr(),
        dovecot.ca_cert_path(),
        link,
    )
}

/// The secret and test-friendly pool wait every test bridge uses.
pub fn test_settings(config: &mut Config) {
    config.jwt_secret = Some("test-secret-that-is-at-least-32-bytes-long".to_owned());
    // The IMAP connect and command timeouts stay the bridge's own, so that Dovecot's auth
    // penalty (up to 15 s before a login, see dovecot.rs) does to a test's logins what it does
    // to users' logins, no more.
    config.pool_wait_timeout = 5;
    // No load balancer to wait for: stopping a test bridge closes its listener at once.
    config.shutdown_delay = 0;
}

/// The bridge's settings for another IMAP server (plain and STARTTLS on `imap`, implicit TLS
/// on `imaps`, its certificate issued by `ca`, for `localhost`) over `link`, with the same
/// test settings as [`config_for`].
pub fn config_for_server(
    imap: SocketAddr,
    imaps: SocketAddr,
    ca: std::path::PathBuf,
    link: Link,
) -> Config {
    let (addr, security) = match link {
        Link::Tls => (imaps, Security::Tls),
        Link::Starttls => (imap, Security::Starttls),
        Link::Plain => (imap, Security::Plain),
    };
    // The certificate names "localhost", so TLS links must use that name.
    let host = if link == Link::Plain {
        "127.0.0.1"
    } else {
        "localhost"
    };
    let mut config = Config::for_server(host, addr.port(), security);
    config.imap_ca_file = Some(ca);
    test_settings(&mut config);
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
        let (serving, api, state) = Serving::start(config).await;
        TestBridge {
            dovecot,
            api,
            state,
            serving,
        }
    }

    /// Stops serving and waits for the bridge to log out its sessions.
    pub async fn stop(&mut self) {
        self.serving.stop().await;
    }

    /// Stops the bridge and starts a new one with the same settings (and secret) in front of
    /// the same Dovecot, on a new port, as a restart or another replica would be.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (serving, api, state) = Serving::start(self.serving.config.clone()).await;
        self.serving = serving;
        self.api = api;
        self.state = state;
    }

    /// Waits (without blocking the runtime the bridge runs on) until the default user has
    /// `expected` IMAP connections.
    pub async fn wait_for_connections(&self, expected: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.dovecot.connections(USER);
            if now == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{USER} has {now} IMAP connections, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (polling) until the user has exactly `n` IMAP connections, e.g. until the login
    /// check's session has logged out, so that a rawlog snapshot taken afterwards stays still.
    pub async fn settle_connections(&self, n: usize) {
        for _ in 0..250 {
            if self.dovecot.connections(USER) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{USER} never had exactly {n} IMAP connection(s)");
    }

    /// A direct IMAP session on Dovecot's plain port, to check what the bridge did.
    pub async fn imap(&self) -> DirectImap {
        DirectImap::login(self.dovecot.imap_addr(), USER, PASSWORD).await
    }
}

impl BridgeApi {
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

    /// Sends `body` as JSON with `method` and a token; returns status and JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let res = self
            .request(method, path, Some(token))
            .json(body)
            .send()
            .await
            .expect("request");
        json_of(res).await
    }

    /// A request without a body (DELETE and the like) with a token; status and JSON body.
    pub async fn send(&self, method: Method, token: &str, path: &str) -> (StatusCode, Value) {
        let res = self
            .request(method, path, Some(token))
            .send()
            .await
            .expect("request");
        json_of(res).await
    }
}

/// A loopback address with a port that was free a moment ago, for a setting that takes an
/// address rather than a listener.
pub fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
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

/// Asserts that a response is the problem `status` with `code`; `what` names the case.
pub fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
}

/// Percent-encodes a mailbox name as one path segment.
pub fn seg(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A byte stream a [`DirectImap`] can run over: plain TCP or TLS.
pub trait DirectIo:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug
{
}

impl<T> DirectIo for T where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug
{
}

/// A direct IMAP client for verification (async-imap's own typed API).
pub struct DirectImap {
    /// The session.
    pub session: async_imap::Session<Box<dyn DirectIo>>,
}

impl DirectImap {
    /// Connects to a plain loopback port and logs in.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect to dovecot");
        Self::login_over(Box::new(tcp), user, password).await
    }

    /// Connects to an implicit-TLS port whose certificate for `localhost` the CA in `ca`
    /// issued, and logs in: for servers that refuse LOGIN without TLS (Cyrus).
    pub async fn login_tls(
        addr: SocketAddr,
        ca: &std::path::Path,
        user: &str,
        password: &str,
    ) -> Self {
        let config = imap_bridge::imap::transport::tls_config(Some(ca)).expect("TLS config");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Self::login_over(Box::new(tls), user, password).await
    }

    async fn login_over(stream: Box<dyn DirectIo>, user: &str, password: &str) -> Self {
        let mut client = async_imap::Client::new(stream);
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

/// A message's flags as IMAP spells them (`\Seen`, `$Label1`), without the session-only
/// `\Recent`.
pub type FlagSet = BTreeSet<String>;

fn flag_text(flag: &async_imap::types::Flag<'_>) -> Option<String> {
    use async_imap::types::Flag;
    Some(match flag {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent => return None,
        Flag::MayCreate => "\\*".to_owned(),
        Flag::Custom(c) => c.to_string(),
    })
}

/// More checks on the server's own view, for the write API's tests. Mailbox names are given
/// as they travel on the wire (modified UTF-7), so a test states the encoding it expects.
impl DirectImap {
    async fn uid_fetch_all(
        &mut self,
        mailbox: &str,
        uids: &str,
        items: &str,
    ) -> Vec<async_imap::types::Fetch> {
        use futures::TryStreamExt;
        self.session.select(mailbox).await.expect("select");
        self.session
            .uid_fetch(uids, items)
            .await
            .expect("uid fetch")
            .try_collect()
            .await
            .expect("uid fetch stream")
    }

    /// Every message of `mailbox`: UID → flags.
    pub async fn flag_map(&mut self, mailbox: &str) -> BTreeMap<u32, FlagSet> {
        self.uid_fetch_all(mailbox, "1:*", "(UID FLAGS)")
            .await
            .iter()
            .filter_map(|f| Some((f.uid?, f.flags().filter_map(|fl| flag_text(&fl)).collect())))
            .collect()
    }

    /// Every message of `mailbox`: UID → Message-ID (with its angle brackets).
    pub async fn message_ids(&mut self, mailbox: &str) -> BTreeMap<u32, String> {
        self.uid_fetch_all(mailbox, "1:*", "(UID ENVELOPE)")
            .await
            .iter()
            .filter_map(|f| {
                let id = f.envelope()?.message_id.as_ref()?;
                Some((f.uid?, String::from_utf8_lossy(id).into_owned()))
            })
            .collect()
    }

    /// The exact bytes the server holds for one message (`BODY.PEEK[]`), if it exists.
    pub async fn raw_message(&mut self, mailbox: &str, uid: u32) -> Option<Vec<u8>> {
        self.uid_fetch_all(mailbox, &uid.to_string(), "(UID BODY.PEEK[])")
            .await
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body().map(<[u8]>::to_vec))
    }

    /// Names of every mailbox as LIST reports them (modified UTF-7), sorted.
    pub async fn mailbox_names(&mut self) -> Vec<String> {
        use futures::TryStreamExt;
        let names: Vec<_> = self
            .session
            .list(Some(""), Some("*"))
            .await
            .expect("list")
            .try_collect()
            .await
            .expect("list stream");
        let mut names: Vec<String> = names.iter().map(|n| n.name().to_owned()).collect();
        names.sort();
        names
    }

    /// Names of the subscribed mailboxes as LSUB reports them (modified UTF-7), sorted.
    pub async fn subscribed_names(&mut self) -> Vec<String> {
        use futures::TryStreamExt;
        let names: Vec<_> = self
            .session
            .lsub(Some(""), Some("*"))
            .await
            .expect("lsub")
            .try_collect()
            .await
            .expect("lsub stream");
        let mut names: Vec<String> = names.iter().map(|n| n.name().to_owned()).collect();
        names.sort();
        names
    }

    /// STATUS of `mailbox` with `items` such as `(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)`.
    pub async fn status(&mut self, mailbox: &str, items: &str) -> async_imap::types::Mailbox {
        self.session.status(mailbox, items).await.expect("status")
    }

    /// `UID STORE <uids> <change>` in `mailbox`, e.g. `("3,5", "+FLAGS (\\Flagged)")`.
    pub async fn store(&mut self, mailbox: &str, uids: &str, change: &str) {
        use futures::TryStreamExt;
        self.session.select(mailbox).await.expect("select");
        let _: Vec<_> = self
            .session
            .uid_store(uids, change)
            .await
            .expect("store")
            .try_collect()
            .await
            .expect("store stream");
    }

    /// Marks `uids` (a UID set such as `3:5,9`) `\Deleted` and UID EXPUNGEs exactly them.
    pub async fn expunge_set(&mut self, mailbox: &str, uids: &str) {
        use futures::TryStreamExt;
        self.store(mailbox, uids, "+FLAGS.SILENT (\\Deleted)").await;
        let _: Vec<_> = self
            .session
            .uid_expunge(uids)
            .await
            .expect("expunge")
            .try_collect()
            .await
            .expect("expunge stream");
    }

    /// APPENDs a UTF-8 message with `flags` (e.g. `\Seen $Work`) and returns the UID the
    /// server assigned (APPENDUID), sent as one LITERAL+ command because async-imap's own
    /// append does not report it.
    pub async fn append_with_uid(&mut self, mailbox: &str, flags: &str, raw: &[u8]) -> u32 {
        use async_imap::imap_proto::{Response, ResponseCode, Status};
        let text = std::str::from_utf8(raw).expect("append_with_uid takes UTF-8 messages");
        assert!(
            !mailbox.contains(['"', '\\', '\r', '\n']),
            "plain mailbox names only"
        );
        let tag = self
            .session
            .run_command(format!(
                "APPEND \"{mailbox}\" ({flags}) {{{}+}}\r\n{text}",
                raw.len()
            ))
            .await
            .expect("append");
        loop {
            let response = self
                .session
                .read_response()
                .await
                .expect("append response")
                .expect("connection open");
            if let Response::Done {
                tag: done,
                status,
                outcome,
            } = response.parsed()
                && done.0 == tag.0
            {
                assert_eq!(*status, Status::Ok, "append refused: {outcome:?}");
                match &outcome.code {
                    Some(ResponseCode::AppendUid(_, uids)) => match uids.as_slice() {
                        [async_imap::imap_proto::rfc4315::UidSetMember::Uid(uid)] => return *uid,
                        other => panic!("one APPENDUID expected: {other:?}"),
                    },
                    other => panic!("no APPENDUID: {other:?}"),
                }
            }
        }
    }
}

/// One server-sent event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `event:` name.
    pub event: String,
    /// `data:` parsed as JSON.
    pub data: Value,
    /// `id:` field.
    pub id: String,
    /// `retry:` field, if the event had one.
    pub retry: Option<Duration>,
}

/// A client reading an event stream.
pub struct EventClient {
    stream: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<eventsource_stream::Event, String>> + Send>,
    >,
    /// The last `id:` received, for `Last-Event-ID`.
    pub last_id: Option<String>,
}

impl EventClient {
    /// The next event within `wait`, skipping comments and retry hints; `None` on timeout or end.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let item = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            let event = item.expect("well-formed event stream");
            if event.event == "message" && event.data.is_empty() {
                continue;
            }
            if !event.id.is_empty() {
                self.last_id = Some(event.id.clone());
            }
            let data =
                serde_json::from_str(&event.data).unwrap_or(Value::String(event.data.clone()));
            return Some(SseEvent {
                event: event.event,
                data,
                id: event.id,
                retry: event.retry,
            });
        }
    }

    /// Exactly `n` events within `wait` (panics with what arrived otherwise).
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => got.push(e),
                None => panic!("expected {n} events, got {}: {got:?}", got.len()),
            }
        }
        got
    }
}

impl BridgeApi {
    /// Opens `GET /v1/events` for `mailboxes` with a bearer token, resuming after `last_id`.
    pub async fn events(
        &self,
        token: &str,
        mailboxes: &[&str],
        last_id: Option<&str>,
    ) -> EventClient {
        let query: Vec<String> = mailboxes
            .iter()
            .map(|m| format!("mailbox={}", seg(m)))
            .collect();
        let mut req = self.request(
            Method::GET,
            &format!("/v1/events?{}", query.join("&")),
            Some(token),
        );
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.expect("events request");
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "events: {}",
            res.text().await.unwrap_or_default()
        );
        EventClient::from_response(res, last_id)
    }
}

impl EventClient {
    /// Wraps an open `text/event-stream` response.
    pub fn from_response(res: Response, last_id: Option<&str>) -> Self {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let stream = res
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()));
        EventClient {
            stream: Box::pin(stream),
            last_id: last_id.map(str::to_owned),
        }
    }
}
