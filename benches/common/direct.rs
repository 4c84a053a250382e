//! The direct side of the benchmarks: an IMAP client over TLS that does, on the same Dovecot,
//! the IMAP work the bridge does for a request, so a ratio compares the bridge with IMAP itself.
//!
//! It writes each exchange in one write (pipelined, as the bridge sends its commands) and
//! parses every response with async-imap (imap-proto), as the bridge does. Commands are built
//! with `format!` from the benchmark's own constants and numbers, never from outside input.
#![allow(dead_code)] // each bench uses a subset

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use anyhow::{Context, bail};
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, Status};
use base64::Engine as _;
use imap_bridge::imap::encode::UidSet;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The FETCH items of a header page's summaries as the bridge asks for them on a server with
/// `PREVIEW` (Dovecot) when previews are on, as they are by default: its
/// `SUMMARY_ITEMS_WITH_PREVIEW`, read from its source so that the direct side fetches what the
/// bridge fetches.
pub static SUMMARY_ITEMS: LazyLock<String> =
    LazyLock::new(|| bridge_items("SUMMARY_ITEMS_WITH_PREVIEW"));
/// The same without the preview: what the bridge asks for with `preview=false` (its
/// `SUMMARY_ITEMS`).
pub static SUMMARY_ITEMS_NO_PREVIEW: LazyLock<String> =
    LazyLock::new(|| bridge_items("SUMMARY_ITEMS"));
/// What the bridge fetches for a page whose summaries it has cached.
pub const FLAGS_ITEMS: &str = "(UID FLAGS)";

/// The value of the string constant `name` in `src/imap/previews.rs`.
fn bridge_items(name: &str) -> String {
    str_const(include_str!("../../src/imap/previews.rs"), name)
        .unwrap_or_else(|e| panic!("src/imap/previews.rs: {e}"))
}

/// The value of `const NAME: &str = "…";` in Rust source `source`: a FETCH item list, over
/// continued lines, with no other escapes.
pub fn str_const(source: &str, name: &str) -> anyhow::Result<String> {
    let start = format!("const {name}: &str = \"");
    let at = source
        .find(&start)
        .with_context(|| format!("no {name} in the bridge's source"))?;
    let rest = &source[at + start.len()..];
    let end = rest
        .find("\";")
        .with_context(|| format!("{name} does not end"))?;
    let items: Vec<&str> = rest[..end].split("\\\n").map(str::trim_start).collect();
    let items = items.concat();
    anyhow::ensure!(
        items.starts_with('(') && items.ends_with(')') && !items.contains('\\'),
        "{name} is not a plain FETCH item list: {items}"
    );
    Ok(items)
}

/// Which newest page to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOrder {
    /// Newest first in arrival (sequence) order.
    Arrival,
    /// Newest first by Date header.
    Date,
}

/// A logged-in IMAP session over TLS.
pub struct Direct {
    client: async_imap::Client<QuickAck>,
    mailbox: String,
    exists: u32,
    /// The newest window of flags read by [`Direct::cached_arrival_page`]: its first sequence
    /// number, the message count then, its UIDs and the highest mod-sequence among them.
    window: Option<(u32, u32, Vec<u32>, u64)>,
}

impl Direct {
    /// Connects over TLS (trusting `tls`'s roots; pass the same config every time so TLS
    /// session resumption works as it does for the bridge), reads the greeting and logs in.
    pub async fn connect(
        tls: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut direct = Direct {
            client: async_imap::Client::new(QuickAck(stream)),
            mailbox: String::new(),
            exists: 0,
            window: None,
        };
        direct
            .client
            .read_response()
            .await?
            .context("no greeting")?;
        // The password as a non-synchronising literal: it may hold any character.
        direct
            .exchange(
                &[format!(
                    "LOGIN {user} {{{}+}}\r\n{password}",
                    password.len()
                )],
                |_| {},
            )
            .await?;
        Ok(direct)
    }

    /// `ENABLE QRESYNC`, as the bridge sets up its sessions.
    pub async fn enable_qresync(&mut self) -> anyhow::Result<()> {
        self.exchange(&["ENABLE QRESYNC".into()], |_| {}).await
    }

    /// Selects `mailbox` (with `(CONDSTORE)` as the bridge does, or plainly as a simple client
    /// does) and returns its message count.
    pub async fn select(&mut self, mailbox: &str, condstore: bool) -> anyhow::Result<u32> {
        let modifier = if condstore { " (CONDSTORE)" } else { "" };
        self.exists = 0;
        self.window = None;
        self.exchange(&[format!("SELECT \"{mailbox}\"{modifier}")], |_| {})
            .await?;
        self.mailbox = mailbox.to_owned();
        Ok(self.exists)
    }

    /// Messages in the selected mailbox, as last announced by the server.
    pub fn exists(&self) -> u32 {
        self.exists
    }

    /// The UIDs of the newest page of `size` (in no particular order) with `items`, in the
    /// bridge's command shape: `NOOP`, `STATUS` and, pipelined with them, the `FETCH` of the
    /// last `size` sequence numbers for arrival order, or `UID SORT (REVERSE DATE)` followed by
    /// a `UID FETCH` of the first `size` UIDs for date order.
    pub async fn page(
        &mut self,
        order: PageOrder,
        size: u32,
        items: &str,
    ) -> anyhow::Result<Vec<u32>> {
        let mut commands = vec![
            "NOOP".to_owned(),
            format!(
                "STATUS \"{}\" (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)",
                self.mailbox
            ),
        ];
        if order == PageOrder::Date {
            let mut sorted = Vec::new();
            commands.push("UID SORT (REVERSE DATE) UTF-8 ALL".to_owned());
            self.exchange(&commands, |r| {
                if let Response::MailboxData(MailboxDatum::Sort(uids)) = r {
                    sorted.extend_from_slice(uids);
                }
            })
            .await?;
            sorted.truncate(size as usize);
            let set = UidSet::from_uids(sorted)?;
            commands = vec![format!("UID FETCH {set} {items}")];
        } else {
            commands.push(self.last_page_fetch(size, items));
        }
        self.fetched_uids(&commands, items).await
    }

    /// The UIDs of the newest page of `size` by arrival as a bridge with the page's summaries
    /// cached reads it (`src/imap/flag_window.rs`): `NOOP`, `STATUS` and the `FETCH` of the
    /// window's `(UID FLAGS MODSEQ)` pipelined; the same window again, with no message come or
    /// gone, asks only `(UID FLAGS) (CHANGEDSINCE <the highest mod-sequence read>)`.
    pub async fn cached_arrival_page(&mut self, size: u32) -> anyhow::Result<Vec<u32>> {
        let lo = self.exists.saturating_sub(size - 1).max(1);
        let since = match &self.window {
            Some((first, exists, _, modseq)) if *first == lo && *exists == self.exists => {
                Some(*modseq)
            }
            _ => None,
        };
        let fetch = match since {
            Some(modseq) => format!("FETCH {lo}:* (UID FLAGS) (CHANGEDSINCE {modseq})"),
            None => format!("FETCH {lo}:* (UID FLAGS MODSEQ)"),
        };
        let commands = [
            "NOOP".to_owned(),
            format!(
                "STATUS \"{}\" (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)",
                self.mailbox
            ),
            fetch,
        ];
        let mut answers = Vec::new();
        self.exchange(&commands, |r| {
            if let Response::Fetch(_, attrs) = r
                && let Some(uid) = uid_of(attrs)
            {
                let modseq = attrs.iter().find_map(|a| match a {
                    AttributeValue::ModSeq(m) => Some(*m),
                    _ => None,
                });
                answers.push((uid, modseq.unwrap_or(0)));
            }
        })
        .await?;
        let highest = answers.iter().map(|(_, m)| *m).max().unwrap_or(0);
        let uids = match (since, self.window.take()) {
            (Some(modseq), Some((_, _, uids, _))) => {
                self.window = Some((lo, self.exists, uids.clone(), modseq.max(highest)));
                uids
            }
            _ => {
                let uids: Vec<u32> = answers.iter().map(|(uid, _)| *uid).collect();
                self.window = Some((lo, self.exists, uids.clone(), highest));
                uids
            }
        };
        Ok(uids)
    }

    /// `NOOP` and `STATUS` in one round trip, then a `UID FETCH` of `uids` with `items`: the
    /// bridge's sorted page when its cache holds the order at the mailbox's current state.
    pub async fn refresh_then_fetch(
        &mut self,
        uids: &[u32],
        items: &str,
    ) -> anyhow::Result<Vec<u32>> {
        self.exchange(
            &[
                "NOOP".to_owned(),
                format!(
                    "STATUS \"{}\" (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)",
                    self.mailbox
                ),
            ],
            |_| {},
        )
        .await?;
        let set = UidSet::from_uids(uids.iter().copied())?;
        self.fetched_uids(&[format!("UID FETCH {set} {items}")], items)
            .await
    }

    /// The newest `size` messages by arrival with full summaries, one plain `FETCH`: what a
    /// simple client sends right after `SELECT`.
    pub async fn last_page(&mut self, size: u32) -> anyhow::Result<Vec<u32>> {
        let fetch = self.last_page_fetch(size, &SUMMARY_ITEMS);
        self.fetched_uids(&[fetch], &SUMMARY_ITEMS).await
    }

    fn last_page_fetch(&self, size: u32, items: &str) -> String {
        let first = self.exists.saturating_sub(size - 1).max(1);
        format!("FETCH {first}:* {items}")
    }

    /// Runs `commands` and returns the UIDs of the FETCH answers to them: those with an
    /// ENVELOPE when full summaries were asked for (a flag change by another session comes
    /// as an unsolicited FETCH of its own).
    async fn fetched_uids(&mut self, commands: &[String], items: &str) -> anyhow::Result<Vec<u32>> {
        let summaries = items != FLAGS_ITEMS;
        let mut uids = Vec::new();
        self.exchange(commands, |r| {
            if let Response::Fetch(_, attrs) = r
                && (!summaries
                    || attrs
                        .iter()
                        .any(|a| matches!(a, AttributeValue::Envelope(_))))
            {
                uids.extend(uid_of(attrs));
            }
        })
        .await?;
        Ok(uids)
    }

    /// The whole message `uid` (`UID FETCH uid (BODY.PEEK[])`), raw.
    pub async fn raw_message(&mut self, uid: u32) -> anyhow::Result<Vec<u8>> {
        let mut raw = None;
        self.exchange(&[format!("UID FETCH {uid} (BODY.PEEK[])")], |r| {
            if let Response::Fetch(_, attrs) = r
                && uid_of(attrs) == Some(uid)
            {
                raw = section_data(attrs).map(<[u8]>::to_vec);
            }
        })
        .await?;
        raw.context("no body in the FETCH answer")
    }

    /// Adds (`+FLAGS`) or removes (`-FLAGS`) `flag` on `uid` with one `UID STORE` and returns
    /// the flags the server reports afterwards.
    pub async fn store_flag(
        &mut self,
        uid: u32,
        flag: &str,
        add: bool,
    ) -> anyhow::Result<Vec<String>> {
        let sign = if add { '+' } else { '-' };
        let mut flags = None;
        self.exchange(&[format!("UID STORE {uid} {sign}FLAGS ({flag})")], |r| {
            if let Response::Fetch(_, attrs) = r
                && uid_of(attrs) == Some(uid)
            {
                flags = attrs.iter().find_map(|a| match a {
                    AttributeValue::Flags(f) => {
                        Some(f.iter().map(|f| f.to_string()).collect::<Vec<_>>())
                    }
                    _ => None,
                });
            }
        })
        .await?;
        flags.context("no FLAGS in the STORE answer")
    }

    /// Body part `part` of `uid`, fetched whole (`UID FETCH uid (BODY.PEEK[part])`) and
    /// base64-decoded: what a client without partial fetches does.
    pub async fn base64_part(&mut self, uid: u32, part: &str) -> anyhow::Result<Vec<u8>> {
        let mut decoded = None;
        self.exchange(&[format!("UID FETCH {uid} (BODY.PEEK[{part}])")], |r| {
            if let Response::Fetch(_, attrs) = r
                && uid_of(attrs) == Some(uid)
                && let Some(encoded) = section_data(attrs)
            {
                decoded = Some(decode_base64_lines(encoded));
            }
        })
        .await?;
        decoded.context("no body part in the FETCH answer")?
    }

    /// The bridge's exchanges for a message it has shown before: its flags and the text parts
    /// `parts` (at most `max_part` bytes each) in one `UID FETCH` (the summary, header and
    /// structure come from its cache; a first view reads them in a `UID FETCH` before).
    pub async fn message_as_bridge(
        &mut self,
        uid: u32,
        parts: &[&str],
        max_part: u32,
    ) -> anyhow::Result<()> {
        let mut fetch = format!("UID FETCH {uid} (UID FLAGS");
        for part in parts {
            write!(fetch, " BODY.PEEK[{part}]<0.{max_part}>")?;
        }
        fetch.push(')');
        self.exchange(&[fetch], |_| {}).await
    }

    /// The bridge's exchange for a flag change: `UID STORE … FLAGS.SILENT` and a `UID FETCH`
    /// of the flags, pipelined.
    pub async fn store_flag_as_bridge(
        &mut self,
        uid: u32,
        flag: &str,
        add: bool,
    ) -> anyhow::Result<()> {
        let sign = if add { '+' } else { '-' };
        self.exchange(
            &[
                format!("UID STORE {uid} {sign}FLAGS.SILENT ({flag})"),
                format!("UID FETCH {uid} (UID FLAGS)"),
            ],
            |_| {},
        )
        .await
    }

    /// The bridge's exchanges for an attachment download: the structure, then the part in
    /// partial fetches of `chunk` bytes, each base64-decoded as it arrives; returns the
    /// decoded length.
    pub async fn base64_part_in_chunks(
        &mut self,
        uid: u32,
        part: &str,
        chunk: u32,
    ) -> anyhow::Result<u64> {
        self.exchange(
            &[format!("UID FETCH {uid} (UID RFC822.SIZE BODYSTRUCTURE)")],
            |_| {},
        )
        .await?;
        let engine = &base64::engine::general_purpose::STANDARD;
        let (mut offset, mut decoded_len) = (0u64, 0u64);
        // Base64 characters left over from the previous chunk (fewer than 4).
        let mut carry = Vec::new();
        let mut decoded = Vec::new();
        loop {
            let mut received = 0;
            let mut failed = None;
            self.exchange(
                &[format!(
                    "UID FETCH {uid} (UID BODY.PEEK[{part}]<{offset}.{chunk}>)"
                )],
                |r| {
                    if let Response::Fetch(_, attrs) = r
                        && uid_of(attrs) == Some(uid)
                        && let Some(data) = section_data(attrs)
                    {
                        received = data.len();
                        carry.extend(data.iter().copied().filter(|b| !b.is_ascii_whitespace()));
                        let whole = carry.len() / 4 * 4;
                        decoded.clear();
                        if let Err(e) = engine.decode_vec(&carry[..whole], &mut decoded) {
                            failed = Some(e);
                        }
                        decoded_len += decoded.len() as u64;
                        carry.drain(..whole);
                    }
                },
            )
            .await?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            offset += received as u64;
            if received < chunk as usize {
                break;
            }
        }
        anyhow::ensure!(
            carry.is_empty(),
            "base64 text of a length not a multiple of 4"
        );
        Ok(decoded_len)
    }

    /// Starts IDLE and waits for the server's continuation.
    pub async fn start_idle(&mut self) -> anyhow::Result<()> {
        self.write("d0 IDLE\r\n").await?;
        loop {
            let response = self
                .client
                .read_response()
                .await?
                .context("the IMAP server closed the connection")?;
            if matches!(response.parsed(), Response::Continue { .. }) {
                return Ok(());
            }
        }
    }

    /// Waits in IDLE until the server announces a new message count, then ends IDLE.
    pub async fn wait_exists(&mut self) -> anyhow::Result<u32> {
        let exists = loop {
            let response = self
                .client
                .read_response()
                .await?
                .context("the IMAP server closed the connection")?;
            if let Response::MailboxData(MailboxDatum::Exists(n)) = response.parsed() {
                break *n;
            }
        };
        self.exists = exists;
        self.write("DONE\r\n").await?;
        self.read_completions(1, |_| {}).await?;
        Ok(exists)
    }

    /// Logs out.
    pub async fn logout(mut self) -> anyhow::Result<()> {
        self.exchange(&["LOGOUT".into()], |_| {}).await
    }

    /// Sends `commands` in one write, tagged `d0`, `d1`, …, and reads (and parses) every
    /// response up to the last tagged completion; other responses go to `on_data`. Fails
    /// unless every command completes with OK.
    pub async fn exchange(
        &mut self,
        commands: &[String],
        on_data: impl FnMut(&Response<'_>),
    ) -> anyhow::Result<()> {
        let mut wire = String::new();
        for (tag, command) in commands.iter().enumerate() {
            write!(wire, "d{tag} {command}\r\n")?;
        }
        self.write(&wire).await?;
        self.read_completions(commands.len(), on_data).await
    }

    async fn write(&mut self, wire: &str) -> anyhow::Result<()> {
        let stream = self.client.get_mut();
        stream.write_all(wire.as_bytes()).await?;
        stream.flush().await?;
        Ok(())
    }

    async fn read_completions(
        &mut self,
        mut open: usize,
        mut on_data: impl FnMut(&Response<'_>),
    ) -> anyhow::Result<()> {
        while open > 0 {
            let response = self
                .client
                .read_response()
                .await?
                .context("the IMAP server closed the connection")?;
            match response.parsed() {
                Response::Done {
                    tag,
                    status,
                    outcome,
                } => {
                    if *status != Status::Ok {
                        bail!("{} failed: {status:?} {:?}", tag.0, outcome.information);
                    }
                    open -= 1;
                }
                other => {
                    if let Response::MailboxData(MailboxDatum::Exists(n)) = other {
                        self.exists = *n;
                    }
                    on_data(other);
                }
            }
        }
        Ok(())
    }
}

fn uid_of(attrs: &[AttributeValue<'_>]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })
}

fn section_data<'a>(attrs: &'a [AttributeValue<'_>]) -> Option<&'a [u8]> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection { data, .. } => data.as_ref().map(Cow::as_ref),
        _ => None,
    })
}

/// Decodes base64 text broken into lines: the line breaks are dropped, then the rest decoded.
fn decode_base64_lines(encoded: &[u8]) -> anyhow::Result<Vec<u8>> {
    let compact: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(compact)?)
}

/// The TLS stream with quick ACKs re-armed after every read, as the bridge's own upstream
/// sockets have them (`src/imap/transport.rs`): without them a server that sends a response in
/// small segments under Nagle's algorithm (Cyrus) waits 40 ms for each delayed ACK, and the
/// direct side would measure that rather than IMAP.
#[derive(Debug)]
pub struct QuickAck(pub TlsStream<TcpStream>);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let read = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        let _ = socket2::SockRef::from(self.0.get_ref().0).set_tcp_quickack(true);
        read
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
