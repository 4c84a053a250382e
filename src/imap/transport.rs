//! Reaching the IMAP server: TCP, implicit TLS, STARTTLS, with certificates always verified.
//!
//! The plaintext part of a STARTTLS exchange is done here with a deliberately small line reader,
//! before any IMAP framing exists, so that nothing the server sends before the TLS handshake can
//! be mistaken for data after it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::{ImapError, Result};
use super::guard::{GuardLimits, MAX_NESTING, ResponseScanner};
/// How the bridge protects its connection to the IMAP server.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte (port 993 style).
    Tls,
    /// Plain TCP upgraded with STARTTLS before login (port 143 style); refused if not offered.
    Starttls,
    /// No encryption: only for loopback servers unless explicitly allowed.
    Plain,
}

/// Where and how to reach one IMAP server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    /// Host name (checked against the certificate) or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let security = match self.security {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::Plain => "plain",
        };
        write!(f, "{}:{} ({security})", self.host, self.port)
    }
}

/// Builds the TLS client configuration: the webpki roots plus an operator-supplied CA file.
pub fn tls_config(extra_ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert =
                cert.map_err(|e| anyhow::anyhow!("bad certificate in {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!("unusable CA certificate in {}: {e}", path.display())
            })?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("no certificate found in CA file {}", path.display());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connected byte stream to the IMAP server, encrypted or (loopback only) not.
pub enum ImapStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for ImapStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapStream::Plain(_) => f.write_str("ImapStream::Plain"),
            ImapStream::Tls(_) => f.write_str("ImapStream::Tls"),
        }
    }
}

impl ImapStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ImapStream::Plain(s) => s,
            ImapStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match this {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            quick_ack(this.tcp());
        }
        read
    }
}

/// Acknowledges what the server sends at once, for the next read too (Linux leaves quick-ACK
/// mode on its own, so it is re-armed after every read).
///
/// A server that writes a response in several small segments with Nagle's algorithm on holds
/// each segment until the previous one is acknowledged, and a delayed ACK comes only after
/// 40 ms: Cyrus answered every FETCH of a header page 44 ms late that way (0.6 ms with
/// quick ACKs, measured on loopback). Failing to set the option costs only that latency.
fn quick_ack(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = tcp;
}

/// Probing starts after this long without traffic.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(45);
/// Time between probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives the connection up.
pub const KEEPALIVE_PROBES: u32 = 4;

/// Lets the kernel notice a server (or a NAT or firewall between) that vanished without a
/// word: after [`KEEPALIVE_IDLE`] of silence it probes, and after [`KEEPALIVE_PROBES`]
/// unanswered probes [`KEEPALIVE_INTERVAL`] apart the next read fails — 85 s in all, where an
/// idle IDLE connection would otherwise wait for its next re-issue. The probes also keep
/// middleboxes from dropping a quiet connection. Failing to set the option costs only that.
fn keep_alive(tcp: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "TCP keep-alive not set");
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the transport learnt before IMAP framing takes over.
pub struct Opened {
    /// The stream, ready for IMAP.
    pub stream: ImapStream,
    /// Whether the server greeting was already consumed (STARTTLS: it was, in plaintext).
    pub greeting_read: bool,
}

/// Opens connections to IMAP servers with one TLS configuration.
#[derive(Clone)]
pub struct Transport {
    tls: TlsConnector,
}

impl Transport {
    /// A transport that verifies servers against `tls`.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Transport {
            tls: TlsConnector::from(tls),
        }
    }

    /// Connects to `upstream` at the already-resolved `addr`; secures the stream as configured.
    pub async fn open(&self, upstream: &Upstream, addr: SocketAddr) -> Result<Opened> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => {
                ImapError::Unavailable(format!("cannot connect to {upstream}: {e}"))
            }
            _ => ImapError::Io(e),
        })?;
        tcp.set_nodelay(true)?;
        quick_ack(&tcp);
        keep_alive(&tcp);
        match upstream.security {
            Security::Plain => Ok(Opened {
                stream: ImapStream::Plain(tcp),
                greeting_read: false,
            }),
            Security::Tls => {
                let tls = self.handshake(&upstream.host, tcp).await?;
                Ok(Opened {
                    stream: tls,
                    greeting_read: false,
                })
            }
            Security::Starttls => {
                let tcp = starttls_negotiate(tcp).await?;
                let tls = self.handshake(&upstream.host, tcp).await?;
                Ok(Opened {
                    stream: tls,
                    greeting_read: true,
                })
            }
        }
    }

    async fn handshake(&self, host: &str, tcp: TcpStream) -> Result<ImapStream> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ImapError::Tls(format!("invalid server name {host:?}")))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                ImapError::Tls(e.to_string())
            } else {
                ImapError::Io(e)
            }
        })?;
        Ok(ImapStream::Tls(Box::new(tls)))
    }
}

/// Longest plaintext line accepted before TLS: a greeting or a capability list.
const MAX_PLAINTEXT_LINE: usize = 8192;

/// The upstream guard before TLS: anyone on the network can write these lines, so they pass
/// the same checks as the session's responses (a greeting of 8,000 nested parentheses would
/// otherwise overflow the parser's stack); no literal belongs in them.
const PLAINTEXT_GUARD: GuardLimits = GuardLimits {
    max_literal: 0,
    max_line: MAX_PLAINTEXT_LINE,
    max_depth: MAX_NESTING,
};

/// Runs the plaintext half of STARTTLS (RFC 3501 §6.2.1, RFC 2595): greeting, CAPABILITY,
/// STARTTLS. Refuses a PREAUTH greeting (no chance to secure the link), a server that does not
/// offer STARTTLS, and a server that sends anything after its OK (bytes that would otherwise be
/// read as if they came through TLS).
async fn starttls_negotiate(tcp: TcpStream) -> Result<TcpStream> {
    let mut reader = BufReader::new(tcp);
    let mut guard = ResponseScanner::new(PLAINTEXT_GUARD);
    let greeting = read_plain_line(&mut reader, &mut guard).await?;
    match Response::parse(&greeting) {
        Ok((
            _,
            Response::Data {
                status: Status::Ok, ..
            },
        )) => {}
        Ok((
            _,
            Response::Data {
                status: Status::PreAuth,
                ..
            },
        )) => {
            return Err(ImapError::StartTls("server greeted with PREAUTH"));
        }
        Ok((
            _,
            Response::Data {
                status: Status::Bye,
                ..
            },
        )) => {
            return Err(ImapError::Unavailable("server said BYE".into()));
        }
        _ => return Err(ImapError::Protocol("unexpected greeting".into())),
    }

    reader.get_mut().write_all(b"S0 CAPABILITY\r\n").await?;
    let mut offers_starttls = false;
    loop {
        let line = read_plain_line(&mut reader, &mut guard).await?;
        match Response::parse(&line) {
            Ok((_, Response::Capabilities(caps))) => {
                offers_starttls = caps.iter().any(|c| {
                    matches!(c, async_imap::imap_proto::Capability::Atom(a) if a.eq_ignore_ascii_case("STARTTLS"))
                });
            }
            Ok((
                _,
                Response::Done {
                    status: Status::Ok, ..
                },
            )) => break,
            Ok((_, Response::Done { .. })) => return Err(ImapError::StartTls("CAPABILITY failed")),
            Ok(_) => {}
            Err(_) => return Err(ImapError::Protocol("unreadable CAPABILITY response".into())),
        }
    }
    if !offers_starttls {
        return Err(ImapError::StartTls("server does not offer STARTTLS"));
    }

    reader.get_mut().write_all(b"S1 STARTTLS\r\n").await?;
    loop {
        let line = read_plain_line(&mut reader, &mut guard).await?;
        match Response::parse(&line) {
            Ok((
                _,
                Response::Done {
                    status: Status::Ok, ..
                },
            )) => break,
            Ok((_, Response::Done { .. })) => return Err(ImapError::StartTls("STARTTLS failed")),
            Ok(_) => {}
            Err(_) => return Err(ImapError::Protocol("unreadable STARTTLS response".into())),
        }
    }
    if !reader.buffer().is_empty() {
        return Err(ImapError::StartTls(
            "server sent data after its STARTTLS answer",
        ));
    }
    Ok(reader.into_inner())
}

async fn read_plain_line(
    reader: &mut BufReader<TcpStream>,
    guard: &mut ResponseScanner,
) -> Result<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    let n = (&mut *reader)
        .take(MAX_PLAINTEXT_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(ImapError::Unavailable(
            "server closed the connection".into(),
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(ImapError::Protocol(
            "over-long or unterminated line before TLS".into(),
        ));
    }
    guard.scan(&line).map_err(ImapError::UnsafeResponse)?;
    Ok(line)
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstream_sockets_probe_a_silent_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let addr = listener.local_addr().expect("address");
        let upstream = Upstream {
            host: "127.0.0.1".into(),
            port: addr.port(),
            security: Security::Plain,
        };
        let tls = tls_config(None).expect("TLS configuration");
        let opened = Transport::new(tls)
            .open(&upstream, addr)
            .await
            .expect("connected");
        let socket = socket2::SockRef::from(opened.stream.tcp());
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(socket.tcp_keepalive_time().expect("idle"), KEEPALIVE_IDLE);
        assert_eq!(
            socket.tcp_keepalive_interval().expect("interval"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.tcp_keepalive_retries().expect("probes"),
            KEEPALIVE_PROBES
        );
        let detected = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES;
        assert!(detected < Duration::from_secs(120), "{detected:?}");
    }
}
