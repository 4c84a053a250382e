//! One IMAP session: our own tags and typed commands over async-imap's response framing.
//!
//! async-imap reads and parses server responses (imap-proto, literals and all); everything we
//! send is built by [`super::encode::Command`], written here, and its tagged completion is
//! interpreted here with its response code intact. A session whose command did not complete
//! cleanly (error, timeout, or a future dropped mid-command) is marked unusable and never
//! returns to a pool.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_imap::imap_proto::{self, Capability, Response, ResponseCode, Status};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;
use tracing::{debug, trace};

use super::cache::CacheScope;
use super::encode::{Command, ImapString, Literals, MailboxName};
use super::error::{ImapError, Result};
use super::flag_window::FlagWindow;
use super::guard::{GuardLimits, GuardedStream, Violation};
use super::meter::CommandMeter;
use super::sasl;
use super::state::server_modseq;
use super::tracker::MessageTracker;
use super::transport::{ImapStream, Transport, Upstream};
use base64::Engine as _;

/// What the server said it supports.
#[derive(Debug, Clone, Default)]
pub struct Capabilities(HashSet<String>);

impl Capabilities {
    fn from_proto(caps: &[Capability<'_>]) -> Self {
        Capabilities(
            caps.iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
                    Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
                    Capability::Atom(a) => a.to_ascii_uppercase(),
                })
                .collect(),
        )
    }

    /// Whether the capability (upper case, e.g. `"CONDSTORE"`) was advertised.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// How literals may be sent to this server (RFC 7888).
    fn literals(&self) -> Literals {
        if self.has("LITERAL+") {
            Literals::Plus
        } else if self.has("LITERAL-") {
            Literals::Minus
        } else {
            Literals::Synchronizing
        }
    }
}

/// A user's credentials for one upstream server.
#[derive(Clone)]
pub struct Credentials {
    /// The IMAP login name.
    pub username: String,
    /// What proves it.
    pub secret: Secret,
}

/// A password, or an OAuth 2.0 access token (Gmail and Microsoft 365 take only those).
#[derive(Clone)]
pub enum Secret {
    /// Sent with AUTHENTICATE PLAIN where the server offers it, else LOGIN.
    Password(SecretString),
    /// Sent with AUTHENTICATE OAUTHBEARER (RFC 7628) or XOAUTH2.
    AccessToken {
        /// The bearer token.
        token: SecretString,
        /// The mechanism the caller asked for; by default the server's offer decides.
        mechanism: Option<OAuthMechanism>,
        /// When the bridge learnt it (seconds since the epoch): of two tokens for one user,
        /// the later one is used for new sessions.
        issued_at: u64,
    },
}

/// The SASL mechanisms for OAuth 2.0 access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthMechanism {
    /// RFC 7628.
    Oauthbearer,
    /// Google's and Microsoft's own.
    Xoauth2,
}

impl OAuthMechanism {
    fn name(self) -> &'static str {
        match self {
            OAuthMechanism::Oauthbearer => "OAUTHBEARER",
            OAuthMechanism::Xoauth2 => "XOAUTH2",
        }
    }
}

impl Credentials {
    /// A user name and password.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            secret: Secret::Password(SecretString::from(password.into())),
        }
    }

    /// Whether the secret is an access token.
    pub fn is_access_token(&self) -> bool {
        matches!(self.secret, Secret::AccessToken { .. })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.secret {
            Secret::Password(_) => "password",
            Secret::AccessToken { .. } => "access token",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &format_args!("<redacted {kind}>"))
            .finish()
    }
}

/// The mailbox a session has selected, as the session last heard of it.
#[derive(Debug, Clone)]
pub struct SelectedMailbox {
    /// Its name.
    pub name: MailboxName,
    /// UIDVALIDITY reported at SELECT.
    pub uid_validity: u32,
    /// UIDNEXT reported at SELECT (not updated by later arrivals).
    pub uid_next: u32,
    /// Number of messages, kept current from EXISTS, EXPUNGE and VANISHED responses.
    pub exists: u32,
    /// HIGHESTMODSEQ at SELECT, when the server has CONDSTORE.
    pub highest_modseq: Option<u64>,
}

/// A tagged completion: status plus the response code that matters to callers.
#[derive(Debug)]
pub struct Completion {
    /// OK, NO or BAD.
    pub status: Status,
    /// The response code, upper-cased name and arguments as text (`"APPENDUID 7 42"`).
    pub code: Option<String>,
    /// APPENDUID from UIDPLUS: (uidvalidity, assigned uids).
    pub append_uid: Option<(u32, Vec<u32>)>,
    /// COPYUID from UIDPLUS: (uidvalidity, source uids, destination uids).
    pub copy_uid: Option<(u32, Vec<u32>, Vec<u32>)>,
    /// The human-readable text.
    pub text: String,
}

impl Completion {
    fn from_outcome(status: Status, outcome: &imap_proto::Outcome<'_>) -> Self {
        let info = outcome.information.as_deref().unwrap_or("");
        let mut append_uid = None;
        let mut copy_uid = None;
        let code = match &outcome.code {
            Some(ResponseCode::AppendUid(validity, uids)) => {
                append_uid = Some((*validity, expand_uid_set(uids)));
                Some("APPENDUID".to_owned())
            }
            Some(ResponseCode::CopyUid(validity, from, to)) => {
                copy_uid = Some((*validity, expand_uid_set(from), expand_uid_set(to)));
                Some("COPYUID".to_owned())
            }
            Some(ResponseCode::TryCreate) => Some("TRYCREATE".to_owned()),
            Some(ResponseCode::ReadOnly) => Some("READ-ONLY".to_owned()),
            Some(ResponseCode::Alert) => Some("ALERT".to_owned()),
            Some(ResponseCode::Parse) => Some("PARSE".to_owned()),
            Some(_) => None,
            // imap-proto leaves codes it does not know (RFC 5530's among them) in the text.
            None => bracketed_code(info),
        };
        let text = match info.strip_prefix('[') {
            Some(rest) if outcome.code.is_none() => rest
                .split_once(']')
                .map_or(info, |(_, t)| t.trim_start())
                .to_owned(),
            _ => info.to_owned(),
        };
        Completion {
            status,
            code,
            append_uid,
            copy_uid,
            text,
        }
    }

    /// OK → `Ok(self)`; NO and BAD → the matching error.
    pub fn into_result(self) -> Result<Self> {
        match self.status {
            Status::Ok => Ok(self),
            Status::No => Err(match self.code.as_deref().map(code_name) {
                Some("NONEXISTENT" | "TRYCREATE") => ImapError::MailboxNotFound,
                Some("ALREADYEXISTS") => ImapError::AlreadyExists,
                // Retrying cannot help a full mailbox: it is no outage.
                Some("OVERQUOTA") => ImapError::OverQuota(self.text),
                Some("UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG") => {
                    ImapError::Unavailable(self.text)
                }
                Some("AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED") => {
                    ImapError::AuthenticationFailed
                }
                // RFC 5530: the operation breaks a rule of the server's and can never succeed
                // (Dovecot: a character its mailbox layout forbids, a name that is too long).
                Some("CANNOT") => ImapError::NotAllowed(self.text),
                _ => ImapError::No {
                    code: self.code,
                    text: self.text,
                },
            }),
            _ => Err(ImapError::Bad(self.text)),
        }
    }

    /// The response code's name without arguments.
    pub fn code_name(&self) -> Option<&str> {
        self.code.as_deref().map(code_name)
    }
}

fn code_name(code: &str) -> &str {
    code.split(' ').next().unwrap_or(code)
}

fn bracketed_code(info: &str) -> Option<String> {
    let rest = info.strip_prefix('[')?;
    let (code, _) = rest.split_once(']')?;
    Some(code.to_ascii_uppercase())
}

pub(crate) fn expand_uid_set(members: &[imap_proto::rfc4315::UidSetMember]) -> Vec<u32> {
    let mut out = Vec::new();
    for m in members {
        match m {
            imap_proto::rfc4315::UidSetMember::Uid(u) => out.push(*u),
            imap_proto::rfc4315::UidSetMember::UidRange(r) => {
                // Bounded by what the server could have assigned for our own request.
                out.extend(r.clone().take(1_000_000));
            }
        }
    }
    out
}

/// Limits for one session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Connect, TLS handshake and login together.
    pub connect_timeout: Duration,
    /// One command, from sending it to its tagged completion.
    pub command_timeout: Duration,
    /// What the server's responses may hold (see [`super::guard`]).
    pub guard: GuardLimits,
}

/// An authenticated IMAP session.
pub struct Connection {
    framed: async_imap::Client<GuardedStream<ImapStream>>,
    next_tag: u32,
    capabilities: Capabilities,
    selected: Option<SelectedMailbox>,
    limits: SessionLimits,
    clean: bool,
    /// Bumped whenever the user's mailboxes are created, renamed or deleted through any of the
    /// user's sessions: a session then re-selects rather than trust a name that may now mean
    /// another mailbox.
    names_epoch: Arc<AtomicU64>,
    selected_epoch: u64,
    cache: Option<CacheScope>,
    /// Follows the selected mailbox message by message, for IDLE watchers on servers
    /// without CONDSTORE/QRESYNC.
    tracker: Option<MessageTracker>,
    /// Bumped whenever sequence numbers may have moved: a mailbox selected or let go, an
    /// expunge heard.
    view_epoch: u64,
    /// The flags of the last first-page window read, for a repeat to read only changes.
    flag_window: Option<FlagWindow>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("selected", &self.selected.as_ref().map(|s| s.name.as_str()))
            .field("clean", &self.clean)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr`, secures the link as `upstream` says, and logs in.
    pub async fn open(
        transport: &Transport,
        upstream: &Upstream,
        addr: SocketAddr,
        credentials: &Credentials,
        origin: Option<std::net::IpAddr>,
        limits: SessionLimits,
    ) -> Result<Connection> {
        let username = ImapString::new(&credentials.username)?;
        if let Secret::Password(password) = &credentials.secret {
            ImapString::new(password.expose_secret())?;
        }
        let connecting = async {
            let opened = transport.open(upstream, addr).await?;
            let mut conn = Connection {
                framed: async_imap::Client::new(GuardedStream::new(opened.stream, limits.guard)),
                next_tag: 0,
                capabilities: Capabilities::default(),
                selected: None,
                limits,
                clean: true,
                names_epoch: Arc::new(AtomicU64::new(0)),
                selected_epoch: 0,
                cache: None,
                tracker: None,
                view_epoch: 0,
                flag_window: None,
            };
            if !opened.greeting_read {
                conn.read_greeting().await?;
            }
            if conn.capabilities.0.is_empty() {
                conn.refresh_capabilities().await?;
            }
            if conn.capabilities.has("ID") {
                conn.identify(origin).await?;
            }
            conn.authenticate(
                &username,
                &credentials.secret,
                &upstream.host,
                upstream.port,
            )
            .await?;
            if conn.capabilities.has("QRESYNC") {
                conn.run(&Command::new("ENABLE").atom("QRESYNC"), |_| Ok(()))
                    .await?
                    .into_result()?;
            }
            Ok(conn)
        };
        tokio::time::timeout(limits.connect_timeout, connecting)
            .await
            .map_err(|_| ImapError::Timeout)?
    }

    async fn read_greeting(&mut self) -> Result<()> {
        let greeting = self.next_response().await?;
        match greeting.parsed() {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => {
                if let Some(ResponseCode::Capabilities(caps)) = &outcome.code {
                    self.capabilities = Capabilities::from_proto(caps);
                }
                Ok(())
            }
            Response::Data {
                status: Status::PreAuth,
                ..
            } => Err(ImapError::Protocol(
                "server greeted with PREAUTH; refusing an unchosen identity".into(),
            )),
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(ImapError::Unavailable(
                outcome
                    .information
                    .as_deref()
                    .unwrap_or("server said BYE")
                    .to_owned(),
            )),
            _ => Err(ImapError::Protocol("unexpected greeting".into())),
        }
    }

    async fn refresh_capabilities(&mut self) -> Result<()> {
        let mut caps = None;
        self.run(&Command::new("CAPABILITY"), |r| {
            if let Response::Capabilities(c) = r {
                caps = Some(Capabilities::from_proto(c));
            }
            Ok(())
        })
        .await?
        .into_result()?;
        self.capabilities =
            caps.ok_or_else(|| ImapError::Protocol("no CAPABILITY response".into()))?;
        Ok(())
    }

    /// RFC 2971 ID before LOGIN: the bridge's name and version and, when known, the client's
    /// address as `x-originating-ip` (Dovecot uses it for logging and login penalties when the
    /// bridge is in its `login_trusted_networks`). The server's answer is not needed, and a NO
    /// is ignored.
    async fn identify(&mut self, origin: Option<std::net::IpAddr>) -> Result<()> {
        let mut cmd = Command::new("ID")
            .atom("(\"name\" \"imap-bridge\" \"version\"")
            .string(&ImapString::new(env!("CARGO_PKG_VERSION"))?);
        if let Some(ip) = origin {
            cmd = cmd
                .atom("\"x-originating-ip\"")
                .string(&ImapString::new(&ip.to_string())?);
        }
        let done = self.run(&cmd.atom(")"), |_| Ok(())).await?;
        if done.status == Status::Bad {
            return Err(ImapError::Bad(done.text));
        }
        Ok(())
    }

    /// Logs in: a password with AUTHENTICATE PLAIN where the server offers it (SASL-IR saves a
    /// round trip), else LOGIN; an access token with OAUTHBEARER or XOAUTH2.
    async fn authenticate(
        &mut self,
        username: &ImapString,
        secret: &Secret,
        host: &str,
        port: u16,
    ) -> Result<()> {
        let (caps, done, challenge) = match secret {
            Secret::Password(password) => {
                if self.capabilities.has("AUTH=PLAIN") {
                    let response = sasl::plain(username.as_str(), password.expose_secret());
                    self.sasl("PLAIN", &response, sasl::Abort::Empty).await?
                } else if self.capabilities.has("LOGINDISABLED") {
                    return Err(ImapError::Unsupported(
                        "LOGIN or AUTHENTICATE PLAIN on this connection (it disabled both; \
                         connect with TLS)",
                    ));
                } else {
                    let password = ImapString::new(password.expose_secret())?;
                    let cmd = Command::new("LOGIN").string(username).string(&password);
                    let mut caps = None;
                    let done = self
                        .run(&cmd, |r| {
                            if let Response::Capabilities(c) = r {
                                caps = Some(Capabilities::from_proto(c));
                            }
                            Ok(())
                        })
                        .await?;
                    (caps, done, None)
                }
            }
            Secret::AccessToken {
                token, mechanism, ..
            } => {
                let offered =
                    |m: OAuthMechanism| self.capabilities.has(&format!("AUTH={}", m.name()));
                let mechanism = match mechanism {
                    Some(m) if offered(*m) => *m,
                    Some(OAuthMechanism::Oauthbearer) => {
                        return Err(ImapError::Unsupported("AUTH=OAUTHBEARER"));
                    }
                    Some(OAuthMechanism::Xoauth2) => {
                        return Err(ImapError::Unsupported("AUTH=XOAUTH2"));
                    }
                    None if offered(OAuthMechanism::Oauthbearer) => OAuthMechanism::Oauthbearer,
                    None if offered(OAuthMechanism::Xoauth2) => OAuthMechanism::Xoauth2,
                    None => {
                        return Err(ImapError::Unsupported(
                            "OAuth 2.0 logins (it offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2)",
                        ));
                    }
                };
                let (response, abort) = match mechanism {
                    OAuthMechanism::Oauthbearer => (
                        sasl::oauthbearer(username.as_str(), host, port, token.expose_secret()),
                        sasl::Abort::Kvsep,
                    ),
                    OAuthMechanism::Xoauth2 => (
                        sasl::xoauth2(username.as_str(), token.expose_secret()),
                        sasl::Abort::Empty,
                    ),
                };
                self.sasl(mechanism.name(), &response, abort).await?
            }
        };
        match done.status {
            Status::Ok => {}
            Status::No => {
                return Err(match done.code_name() {
                    Some("UNAVAILABLE" | "SERVERBUG" | "LIMIT" | "INUSE") => {
                        ImapError::Unavailable(done.text)
                    }
                    _ if matches!(secret, Secret::AccessToken { .. }) => ImapError::TokenRefused(
                        challenge
                            .as_deref()
                            .and_then(sasl::describe_error)
                            .unwrap_or_else(|| sasl::printable(&done.text)),
                    ),
                    _ => ImapError::AuthenticationFailed,
                });
            }
            _ => return Err(ImapError::Bad(done.text)),
        }
        // Capabilities change after login; servers usually announce the new list in the OK.
        match caps {
            Some(c) => self.capabilities = c,
            None => self.refresh_capabilities().await?,
        }
        Ok(())
    }

    /// One SASL exchange (RFC 4959 for the initial response): the initial response goes with
    /// the command under SASL-IR, or after the server's first `+`. A `+` after it is the
    /// server's error challenge (OAuth mechanisms send a JSON status there), which is kept and
    /// answered with the mechanism's `abort` response, as RFC 7628 requires; the tagged NO
    /// follows. Returns the capabilities announced on the way, the completion and the error
    /// challenge, if any.
    async fn sasl(
        &mut self,
        mechanism: &'static str,
        initial: &SecretString,
        abort: sasl::Abort,
    ) -> Result<(Option<Capabilities>, Completion, Option<Vec<u8>>)> {
        let timeout = self.limits.command_timeout;
        let oauth = mechanism != "PLAIN";
        let exchange = async {
            self.clean = false;
            self.next_tag = self.next_tag.wrapping_add(1);
            let tag = format!("b{}", self.next_tag);
            let ir = self.capabilities.has("SASL-IR");
            trace!(tag = %tag, command = %format_args!("AUTHENTICATE {mechanism} <redacted>"), "imap send");
            let mut line = format!("{tag} AUTHENTICATE {mechanism}");
            if ir {
                line.push(' ');
                // An empty initial response is "=" (RFC 4959).
                line.push_str(if initial.expose_secret().is_empty() {
                    "="
                } else {
                    initial.expose_secret()
                });
            }
            line.push_str("\r\n");
            let mut pending = if ir { None } else { Some(initial) };
            self.write_secret(line).await?;
            let mut caps = None;
            let mut challenge = None;
            loop {
                let response = self.next_response().await?;
                match response.parsed() {
                    Response::Continue(c) => {
                        if let Some(initial) = pending.take() {
                            self.write_secret(format!("{}\r\n", initial.expose_secret()))
                                .await?;
                        } else if challenge.is_none() {
                            challenge = Some(
                                c.information
                                    .as_deref()
                                    .and_then(|text| {
                                        base64::engine::general_purpose::STANDARD
                                            .decode(text.trim())
                                            .ok()
                                    })
                                    .unwrap_or_default(),
                            );
                            self.write_secret(abort.response().to_owned()).await?;
                        } else {
                            // A server that keeps asking gets "*": the exchange is cancelled.
                            self.write_secret("*\r\n".to_owned()).await?;
                        }
                    }
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t.0 == tag => {
                        let status = match status {
                            Status::Ok => Status::Ok,
                            Status::No => Status::No,
                            _ => Status::Bad,
                        };
                        if let Some(ResponseCode::Capabilities(c)) = &outcome.code {
                            caps = Some(Capabilities::from_proto(c));
                        }
                        self.clean = true;
                        return Ok((caps, Completion::from_outcome(status, outcome), challenge));
                    }
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => {
                        let text = outcome.information.as_deref().unwrap_or("BYE");
                        // Dovecot ends the session when an access token is longer than it
                        // takes ("Authentication response too large"): not an outage, but
                        // a token this server refuses.
                        return Err(if oauth {
                            ImapError::TokenRefused(format!(
                                "the server ended the login: {}",
                                sasl::printable(text)
                            ))
                        } else {
                            ImapError::Unavailable(format!("server ended the session: {text}"))
                        });
                    }
                    Response::Capabilities(c) => caps = Some(Capabilities::from_proto(c)),
                    other => self.observe(other),
                }
            }
        };
        let cmd = [Command::new("AUTHENTICATE")];
        let meter = CommandMeter::start(&cmd);
        let result = match tokio::time::timeout(timeout, exchange).await {
            // Dovecot closes the connection, without BYE, on an access token longer than it
            // takes ("Authentication response too large" in its log, at about 6 KB).
            Ok(Err(ImapError::Unavailable(_) | ImapError::Io(_))) if oauth => {
                Err(ImapError::TokenRefused(
                    "the server closed the connection instead of answering; it may not take \
                     access tokens this long"
                        .into(),
                ))
            }
            Ok(result) => result,
            Err(_) => Err(ImapError::Timeout),
        };
        match &result {
            Ok((_, done, _)) => meter.finish_status(&done.status),
            Err(_) => meter.finish_one(&result),
        }
        result
    }

    /// Writes a line that holds a secret; it is never logged, and its buffer is wiped.
    async fn write_secret(&mut self, line: String) -> Result<()> {
        let line = zeroize::Zeroizing::new(line);
        let stream = self.framed.get_mut();
        stream.write_all(line.as_bytes()).await?;
        stream.flush().await?;
        Ok(())
    }

    /// Capabilities in effect after login.
    /// Arms (or disarms) the guard's tap for THREAD responses (see `threads.rs`).
    pub(super) fn tap_threads(&mut self, armed: bool) {
        self.framed.get_mut().tap_threads(armed);
    }

    /// The thread lists the tap took since the last call.
    pub(super) fn take_threads(&mut self) -> Vec<Vec<u8>> {
        self.framed.get_mut().take_threads()
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether the server has said nothing since our last command completed. An idle IMAP
    /// server only speaks to end the session (BYE on kick, shutdown or autologout), so anything
    /// readable, or a closed socket, means the session is gone. Costs no round trip.
    pub fn is_quiet(&mut self) -> bool {
        use futures::FutureExt as _;
        // A parser panic (see `next_response`) means the session is gone too.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.framed.read_response().now_or_never().is_none()
        }))
        .unwrap_or(false)
    }

    /// Whether every command so far completed; an unclean session must be discarded.
    pub fn is_clean(&self) -> bool {
        self.clean
    }

    /// Whether this session has a mailbox selected while another session of the same user
    /// renamed or deleted mailboxes since: the selected one may be gone, and the server then
    /// ends the session at its next command.
    pub fn selection_may_be_stale(&self) -> bool {
        self.selected.is_some() && self.selected_epoch != self.names_epoch.load(Ordering::Acquire)
    }

    /// Settles a selection that [`Connection::selection_may_be_stale`]: UNSELECT fails (the
    /// server ends the session) when the mailbox is gone, and otherwise leaves nothing
    /// selected, so the session is checked once, not at every checkout until it selects again.
    /// Without UNSELECT (CLOSE would expunge), a NOOP checks it and the selection stays.
    pub async fn settle_stale_selection(&mut self) -> Result<()> {
        if !self.capabilities.has("UNSELECT") {
            return self.noop().await;
        }
        self.run(&Command::new("UNSELECT"), |_| Ok(()))
            .await?
            .into_result()?;
        self.selected = None;
        self.view_epoch += 1;
        Ok(())
    }

    /// The mailbox this session has selected, if any.
    pub fn selected(&self) -> Option<&SelectedMailbox> {
        self.selected.as_ref()
    }

    /// Selects `name` unless it already is; a warm session costs no round trip.
    pub async fn select(&mut self, name: &MailboxName) -> Result<SelectedMailbox> {
        let epoch = self.names_epoch.load(Ordering::Acquire);
        if let Some(selected) = &self.selected
            && selected.name == *name
            && self.selected_epoch == epoch
        {
            return Ok(selected.clone());
        }
        self.selected_epoch = epoch;
        let mut cmd = Command::new("SELECT").mailbox(name);
        if self.capabilities.has("CONDSTORE") {
            cmd = cmd.atom("(CONDSTORE)");
        }
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
        self.view_epoch += 1;
        self.selected = Some(SelectedMailbox {
            name: name.clone(),
            uid_validity: 0,
            uid_next: 0,
            exists: 0,
            highest_modseq: None,
        });
        let outcome = self.run(&cmd, |_| Ok(())).await.and_then(|done| {
            // Dovecot answers SELECT of a missing mailbox with a bare NO ("Mailbox doesn't
            // exist"), without RFC 5530's NONEXISTENT, and of a name it could never hold with
            // NO [CANNOT]: either way there is no such mailbox.
            if done.status == Status::No
                && (done.code.is_none() || done.code_name() == Some("CANNOT"))
            {
                return Err(ImapError::MailboxNotFound);
            }
            done.into_result()
        });
        match outcome {
            Ok(_) => {
                let selected = self.selected.clone().ok_or_else(|| {
                    ImapError::Protocol("selected mailbox lost during SELECT".into())
                })?;
                if selected.uid_validity == 0 {
                    self.clean = false;
                    return Err(ImapError::Protocol("SELECT without UIDVALIDITY".into()));
                }
                Ok(selected)
            }
            Err(e) => {
                self.selected = None;
                Err(e)
            }
        }
    }

    /// Changes whenever sequence numbers of the selected mailbox may have moved since.
    pub(crate) fn view_epoch(&self) -> u64 {
        self.view_epoch
    }

    /// The flags of the last first-page window read (see [`FlagWindow`]), taken out.
    pub(crate) fn take_flag_window(&mut self) -> Option<FlagWindow> {
        self.flag_window.take()
    }

    /// Keeps `window` for the next page of the same window.
    pub(crate) fn keep_flag_window(&mut self, window: Option<FlagWindow>) {
        self.flag_window = window;
    }

    /// Forgets the selected mailbox (after it was renamed or deleted under us).
    pub fn forget_selected(&mut self) {
        self.selected = None;
        self.view_epoch += 1;
    }

    /// Shares the user's mailbox-name epoch with this session (done by the pool).
    pub fn share_names_epoch(&mut self, epoch: Arc<AtomicU64>) {
        self.names_epoch = epoch;
    }

    /// Gives this session the user's view of the summary cache (done by the pool).
    pub fn attach_cache(&mut self, cache: CacheScope) {
        self.cache = Some(cache);
    }

    /// The summary cache, when enabled.
    pub fn cache(&self) -> Option<&CacheScope> {
        self.cache.as_ref()
    }

    /// Records that mailbox names changed, so that every session of the user re-selects.
    ///
    /// The selected mailbox is kept, not forgotten: the server still has it selected, and a
    /// session that deletes the mailbox it has selected must unselect it first (Dovecot ends
    /// the session otherwise). The epoch alone makes the next [`Connection::select`] re-select.
    pub fn names_changed(&mut self) {
        self.names_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// NOOP: keeps the session alive and collects pending mailbox updates.
    pub async fn noop(&mut self) -> Result<()> {
        self.run(&Command::new("NOOP"), |_| Ok(()))
            .await?
            .into_result()?;
        Ok(())
    }

    /// Ends the session politely; errors are irrelevant because the session is going anyway.
    pub async fn logout(mut self) {
        let limits = self.limits;
        let bye = async {
            let _ = self.run(&Command::new("LOGOUT"), |_| Ok(())).await;
            let _ = self.framed.get_mut().shutdown().await;
        };
        let _ = tokio::time::timeout(limits.command_timeout.min(Duration::from_secs(2)), bye).await;
    }

    /// Sends one command and reads every response up to its tagged completion.
    ///
    /// Untagged responses go to `on_response` (after the session's own bookkeeping). If it
    /// fails, the rest of the command's responses are still drained so the session stays
    /// usable, and the first error is returned.
    pub async fn run<F>(&mut self, cmd: &Command, on_response: F) -> Result<Completion>
    where
        F: FnMut(&Response<'_>) -> Result<()> + Send,
    {
        let mut on_response = on_response;
        let mut done = self
            .run_pipelined(std::slice::from_ref(cmd), |_, r| on_response(r))
            .await?;
        Ok(done.remove(0))
    }

    /// Sends several commands back to back, one round trip for all, and returns their
    /// completions in command order. Untagged responses reach `on_response` with the index of
    /// the oldest command still open, which identifies their command only when the server
    /// answers in order; callers that need it for ambiguous data must not pipeline.
    pub async fn run_pipelined<F>(
        &mut self,
        cmds: &[Command],
        mut on_response: F,
    ) -> Result<Vec<Completion>>
    where
        F: FnMut(usize, &Response<'_>) -> Result<()> + Send,
    {
        self.run_pipelined_raw(cmds, |i, r, _| on_response(i, r))
            .await
    }

    /// Like [`Connection::run`], with each untagged response's raw bytes, in which its
    /// parsed strings lie (see [`wire_string`]).
    pub async fn run_raw<F>(&mut self, cmd: &Command, mut on_response: F) -> Result<Completion>
    where
        F: FnMut(&Response<'_>, &[u8]) -> Result<()> + Send,
    {
        let mut done = self
            .run_pipelined_raw(std::slice::from_ref(cmd), |_, r, raw| on_response(r, raw))
            .await?;
        Ok(done.remove(0))
    }

    /// Like [`Connection::run_pipelined`], with each untagged response's raw bytes.
    pub async fn run_pipelined_raw<F>(
        &mut self,
        cmds: &[Command],
        mut on_response: F,
    ) -> Result<Vec<Completion>>
    where
        F: FnMut(usize, &Response<'_>, &[u8]) -> Result<()> + Send,
    {
        let timeout = self.limits.command_timeout;
        let meter = CommandMeter::start(cmds);
        let result =
            match tokio::time::timeout(timeout, self.exchange(cmds, &mut on_response)).await {
                Ok(result) => result,
                Err(_) => {
                    self.clean = false;
                    Err(ImapError::Timeout)
                }
            };
        meter.finish(&result);
        result
    }

    async fn exchange<F>(
        &mut self,
        cmds: &[Command],
        on_response: &mut F,
    ) -> Result<Vec<Completion>>
    where
        F: FnMut(usize, &Response<'_>, &[u8]) -> Result<()> + Send,
    {
        // Cleared only when every tagged completion has been read; a drop or an error on
        // the way leaves the session marked unusable.
        self.clean = false;
        let literals = self.capabilities.literals();
        let mut pipeline = Pipeline::new(cmds.len());
        let mut handler_error = None;
        // Commands that need no continuation go out together in one write (one TLS record
        // where they fit); a synchronising literal flushes and waits for the server's "+",
        // reading whatever the commands sent before it answer meanwhile.
        let mut outgoing = Vec::new();
        'commands: for cmd in cmds {
            self.next_tag = self.next_tag.wrapping_add(1);
            let tag = format!("b{}", self.next_tag);
            trace!(tag = %tag, command = %cmd.redacted(), "imap send");
            let pieces = cmd.to_wire_for(&tag, literals);
            let index = pipeline.issue(tag);
            let last = pieces.len() - 1;
            for (i, piece) in pieces.into_iter().enumerate() {
                outgoing.extend_from_slice(&piece);
                if i == last {
                    break;
                }
                let stream = self.framed.get_mut();
                stream.write_all(&outgoing).await?;
                stream.flush().await?;
                outgoing.clear();
                loop {
                    let response = self.next_response().await?;
                    match self.dispatch(
                        &mut pipeline,
                        &response,
                        on_response,
                        &mut handler_error,
                    )? {
                        Dispatched::Continuation => break,
                        // The server refused the literal with a tagged NO or BAD: the command
                        // is over, the rest of it is never sent, and the next one may go.
                        Dispatched::Completed(done) if done == index => continue 'commands,
                        Dispatched::Completed(_) | Dispatched::Untagged => {}
                    }
                }
            }
        }
        let stream = self.framed.get_mut();
        stream.write_all(&outgoing).await?;
        stream.flush().await?;
        drop(outgoing);

        while pipeline.open() > 0 {
            let response = self.next_response().await?;
            if let Dispatched::Continuation =
                self.dispatch(&mut pipeline, &response, on_response, &mut handler_error)?
            {
                return Err(ImapError::Protocol(
                    "unexpected continuation request".into(),
                ));
            }
        }
        self.clean = true;
        match handler_error {
            Some(e) => Err(e),
            None => pipeline.into_completions(),
        }
    }

    /// Handles one response inside a pipeline: a tagged completion is matched to its command,
    /// BYE ends the exchange, and untagged data goes through [`Connection::observe`] to the
    /// caller's handler with the index of the oldest command still open (servers may complete
    /// pipelined commands out of order, RFC 3501 §5.5).
    fn dispatch<T, F>(
        &mut self,
        pipeline: &mut Pipeline,
        response: &Received<T>,
        on_response: &mut F,
        handler_error: &mut Option<ImapError>,
    ) -> Result<Dispatched>
    where
        F: FnMut(usize, &Response<'_>, &[u8]) -> Result<()> + Send,
    {
        match response.parsed() {
            Response::Done {
                tag,
                status,
                outcome,
            } => {
                let status = match status {
                    Status::Ok => Status::Ok,
                    Status::No => Status::No,
                    _ => Status::Bad,
                };
                let index = pipeline.complete(&tag.0, Completion::from_outcome(status, outcome))?;
                Ok(Dispatched::Completed(index))
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(ImapError::Unavailable(format!(
                "server ended the session: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            ))),
            Response::Continue(_) => Ok(Dispatched::Continuation),
            other => {
                self.observe(other);
                if handler_error.is_none()
                    && let Err(e) = on_response(pipeline.oldest_open(), other, response.raw())
                {
                    *handler_error = Some(e);
                }
                Ok(Dispatched::Untagged)
            }
        }
    }

    /// IDLE (RFC 2177) on the selected mailbox until the server reports a change, `max`
    /// passes, or `stop` completes; then DONE. Returns whether a change was reported.
    ///
    /// The bridge keeps its own timer: servers send keep-alives during IDLE, which must
    /// neither count as changes nor postpone the re-issue that RFC 2177 asks for before
    /// 29 minutes.
    pub async fn idle(
        &mut self,
        max: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool> {
        if !self.capabilities.has("IDLE") {
            return Err(ImapError::Unsupported("IDLE"));
        }
        let cmd = [Command::new("IDLE")];
        let meter = CommandMeter::start_untimed(&cmd);
        let result = self.idle_until(max, stop).await;
        meter.finish_one(&result);
        result
    }

    async fn idle_until(
        &mut self,
        max: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool> {
        self.clean = false;
        self.next_tag = self.next_tag.wrapping_add(1);
        let tag = format!("b{}", self.next_tag);
        let start = Command::new("IDLE").to_wire(&tag, false).concat();
        let command_timeout = self.limits.command_timeout;
        let setup = async {
            self.framed.get_mut().write_all(&start).await?;
            self.framed.get_mut().flush().await?;
            // What the server says before its "+" (a change that happened since the last
            // command) is news like anything said during IDLE.
            let mut news = false;
            loop {
                let response = self.next_response().await?;
                match response.parsed() {
                    Response::Continue(_) => return Ok(news),
                    Response::Done { .. } => {
                        return Err(ImapError::Protocol("IDLE refused".into()));
                    }
                    other => {
                        news |= !is_keep_alive(other);
                        self.observe(other);
                    }
                }
            }
        };
        let mut changed = tokio::time::timeout(command_timeout, setup)
            .await
            .map_err(|_| ImapError::Timeout)??;

        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        tokio::pin!(stop);
        loop {
            if changed {
                break;
            }
            tokio::select! {
                response = self.next_response() => {
                    let response = response?;
                    let parsed = response.parsed();
                    if let Response::Data { status: Status::Bye, .. } = parsed {
                        return Err(ImapError::Unavailable("the server ended the IDLE session".into()));
                    }
                    let keep_alive = is_keep_alive(parsed);
                    self.observe(parsed);
                    if !keep_alive {
                        changed = true;
                        break;
                    }
                }
                () = &mut deadline => break,
                () = &mut stop => break,
            }
        }

        let finish = async {
            self.framed.get_mut().write_all(b"DONE\r\n").await?;
            self.framed.get_mut().flush().await?;
            loop {
                let response = self.next_response().await?;
                match response.parsed() {
                    Response::Done { tag: t, status, .. } if t.0 == tag => {
                        return if *status == Status::Ok {
                            Ok(())
                        } else {
                            Err(ImapError::Protocol("IDLE ended with an error".into()))
                        };
                    }
                    Response::Data {
                        status: Status::Bye,
                        ..
                    } => {
                        return Err(ImapError::Unavailable(
                            "the server ended the IDLE session".into(),
                        ));
                    }
                    other => {
                        if !matches!(
                            other,
                            Response::Data {
                                status: Status::Ok,
                                ..
                            }
                        ) {
                            changed = true;
                        }
                        self.observe(other);
                    }
                }
            }
        };
        tokio::time::timeout(command_timeout, finish)
            .await
            .map_err(|_| ImapError::Timeout)??;
        self.clean = true;
        Ok(changed)
    }

    async fn next_response(&mut self) -> Result<Received<impl Sized + Send + use<>>> {
        use futures::FutureExt as _;
        // imap-proto can still panic on a response the upstream guard lets through: its
        // catch-all for attributes it cannot parse skips a parenthesised value to its first
        // `)`, quotes or not, and may go on inside what the guard took for a string (see
        // SECURITY.md). The session is then in an unknown state, and discarded.
        let read = std::panic::AssertUnwindSafe(self.framed.read_response())
            .catch_unwind()
            .await;
        let Ok(read) = read else {
            self.clean = false;
            tracing::error!("the IMAP response parser panicked; discarding the session");
            return Err(ImapError::Protocol(
                "the IMAP response parser failed".into(),
            ));
        };
        match read {
            Ok(Some(data)) => Ok(Received {
                data,
                parsed: |d| d.parsed(),
                raw: |d| d.borrow_owner(),
            }),
            Ok(None) => Err(ImapError::Unavailable(
                "the IMAP server closed the connection".into(),
            )),
            Err(e) => match Violation::of(&e) {
                Some(violation) => Err(ImapError::UnsafeResponse(violation.clone())),
                None if e.kind() == std::io::ErrorKind::Other => {
                    debug!(error = %e, "unparseable IMAP response");
                    Err(ImapError::Protocol(
                        "unparseable response from the IMAP server".into(),
                    ))
                }
                None => Err(ImapError::Io(e)),
            },
        }
    }

    /// Starts following the selected mailbox message by message (see [`MessageTracker`]).
    pub fn track(&mut self, tracker: MessageTracker) {
        self.tracker = Some(tracker);
    }

    /// The tracker started with [`Connection::track`].
    pub fn tracker(&mut self) -> Option<&mut MessageTracker> {
        self.tracker.as_mut()
    }

    /// Keeps the selected mailbox's counters in step with what the server announces.
    fn observe(&mut self, response: &Response<'_>) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.observe(response);
        }
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        match response {
            Response::MailboxData(imap_proto::MailboxDatum::Exists(n)) => selected.exists = *n,
            Response::Expunge(_) => {
                selected.exists = selected.exists.saturating_sub(1);
                self.view_epoch += 1;
            }
            Response::Vanished {
                earlier: false,
                uids,
            } => {
                self.view_epoch += 1;
                let gone: u64 = uids
                    .iter()
                    .map(|r| u64::from(r.end() - r.start()) + 1)
                    .sum();
                selected.exists = selected
                    .exists
                    .saturating_sub(u32::try_from(gone).unwrap_or(u32::MAX));
            }
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match outcome.code {
                Some(ResponseCode::UidValidity(v)) => selected.uid_validity = v,
                Some(ResponseCode::UidNext(n)) => selected.uid_next = n,
                Some(ResponseCode::HighestModSeq(m)) => {
                    selected.highest_modseq = Some(server_modseq(m)).filter(|&m| m > 0);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// An untagged `OK` without a response code: what servers send to keep an IDLE alive.
fn is_keep_alive(response: &Response<'_>) -> bool {
    matches!(response, Response::Data { status: Status::Ok, outcome } if outcome.code.is_none())
}

/// What one response meant to a pipeline.
enum Dispatched {
    /// A continuation request (`+`).
    Continuation,
    /// The tagged completion of the command at this index.
    Completed(usize),
    /// Untagged data.
    Untagged,
}

/// The commands of one exchange: every tag issued so far and the completions read back.
///
/// Every response is matched against every open tag, whichever phase of the exchange reads
/// it, so a completion can never be lost while the connection waits for something else (a
/// continuation request, a later completion).
struct Pipeline {
    tags: Vec<String>,
    completions: Vec<Option<Completion>>,
}

impl Pipeline {
    fn new(capacity: usize) -> Self {
        Pipeline {
            tags: Vec::with_capacity(capacity),
            completions: Vec::with_capacity(capacity),
        }
    }

    /// Records a command about to be sent; returns its index.
    fn issue(&mut self, tag: String) -> usize {
        self.tags.push(tag);
        self.completions.push(None);
        self.tags.len() - 1
    }

    /// Records the completion of `tag`; a tag not issued, or completed twice, breaks the
    /// protocol.
    fn complete(&mut self, tag: &str, completion: Completion) -> Result<usize> {
        let Some(index) = self.tags.iter().position(|t| t == tag) else {
            return Err(ImapError::Protocol(format!("unexpected tag {tag}")));
        };
        if self.completions[index].is_some() {
            return Err(ImapError::Protocol(format!("tag {tag} completed twice")));
        }
        self.completions[index] = Some(completion);
        Ok(index)
    }

    /// Commands issued and not yet completed.
    fn open(&self) -> usize {
        self.completions.iter().filter(|c| c.is_none()).count()
    }

    /// The oldest command still open (the last one when none is).
    fn oldest_open(&self) -> usize {
        self.completions
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.completions.len().saturating_sub(1))
    }

    fn into_completions(self) -> Result<Vec<Completion>> {
        self.completions
            .into_iter()
            .map(|c| c.ok_or_else(|| ImapError::Protocol("a command never completed".into())))
            .collect()
    }
}

/// One parsed server response. async-imap does not name its response type publicly, so it is
/// carried generically together with the accessor for its parsed form.
struct Received<T> {
    data: T,
    parsed: fn(&T) -> &Response<'_>,
    raw: fn(&T) -> &[u8],
}

impl<T> Received<T> {
    fn parsed(&self) -> &Response<'_> {
        (self.parsed)(&self.data)
    }

    /// The bytes the response was parsed from.
    fn raw(&self) -> &[u8] {
        (self.raw)(&self.data)
    }
}

/// A string the server sent, as the text it stands for: imap-proto hands over a quoted
/// string's content with its escapes (`\\"`, `\\\\`) still in place and a literal's content
/// as is, and only the byte before it in `raw` (the response it was parsed from) tells which
/// it was. Anything not found in `raw` is taken as is.
pub fn wire_string<'a>(raw: &[u8], parsed: &'a str) -> std::borrow::Cow<'a, str> {
    let start = (parsed.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let quoted = start > 0
        && start
            .checked_add(parsed.len())
            .is_some_and(|end| end <= raw.len())
        && raw[start - 1] == b'"';
    if !quoted || !parsed.contains('\\') {
        return std::borrow::Cow::Borrowed(parsed);
    }
    let mut out = String::with_capacity(parsed.len());
    let mut chars = parsed.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod scripted;
