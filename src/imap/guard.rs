//! A byte-level guard on what the IMAP server sends, checked before the response parser
//! (imap-proto, through async-imap) sees a byte.
//!
//! The parser trusts its input in ways a broken or hostile server can exploit: it buffers
//! literals of any announced size (allocating the announced size up front), re-parses an
//! unfinished line on every read, recurses once per level of nested parentheses (deep enough
//! nesting overflows the stack and aborts the whole process), and panics on
//! `INTERNALDATE NIL`. [`ResponseScanner`] follows IMAP's framing incrementally, in O(1) per
//! byte and without looking at literal data at all, and refuses the stream at the first byte
//! that breaks one of its [`GuardLimits`]; [`GuardedStream`] applies it to a connection, so a
//! refused stream fails the session's read with a [`Violation`] and the session is discarded.
//!
//! The scanner reads the bytes the way imap-proto does, so that the two agree about where
//! strings and literal data start and end: a line starting with `+`, with a tag, or with `*`
//! and a status word (OK, NO, BAD, BYE, PREAUTH) is a status response, whose text imap-proto
//! reads as plain text up to CRLF; every other line is data, in which a token starting with
//! `"` is a quoted string and one starting with `{n}` or `~{n}` (`{n+}` too) before CRLF
//! announces n bytes of literal data that belong to the same response. Where imap-proto would
//! read the bytes otherwise, the guard refuses them, as no server sends them: a literal
//! announced in status text (imap-proto reads one there only inside a well-formed
//! `[BADCHARSET (…)]` code), a quote or brace inside a token (its catch-all for attributes it
//! cannot parse takes those as part of a bare value), a quoted string imap-proto would not
//! accept (CR, LF or NUL in it, an escape other than `\\` or `\"`). One disagreement is
//! left: that catch-all skips a parenthesised value to its first `)` whatever strings lie
//! between. The connection contains a parser panic that way leads to; SECURITY.md names the
//! gap.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Deepest nesting of parentheses accepted in one response.
///
/// Dovecot stops nesting MIME parts at 100 levels, and the deepest BODYSTRUCTURE it sends
/// (100 nested multiparts, or 100 nested `message/rfc822` parts) nests 103 levels in its FETCH
/// response; 128 leaves room for other servers' body extensions. imap-proto needs about
/// 5.6 KiB of stack per level in a release build (0.7 MiB here) and about 34 KiB in a debug
/// build.
pub const MAX_NESTING: usize = 128;

/// Default largest literal (`IMAP_BRIDGE_MAX_UPSTREAM_LITERAL`): 32 MiB.
///
/// The bridge reads bodies in pieces (256 KiB for downloads, at most
/// [`MAX_TEXT_PART`](super::messages::MAX_TEXT_PART) for text parts), but a message's header
/// comes whole (for the message view, and inside ENVELOPE for every list), and a header can be
/// as large as the message. 32 MiB is above the 25 MiB the bridge accepts for uploads and the
/// limits of common mail services, and far below the 512 MiB async-imap would buffer (it
/// allocates an announced literal before its first byte arrives).
pub const DEFAULT_MAX_LITERAL: u64 = 32 * 1024 * 1024;

/// Default longest response outside literals (`IMAP_BRIDGE_MAX_UPSTREAM_LINE`): 4 MiB.
///
/// SEARCH and SORT answers list the whole mailbox, about 8 bytes per message, so 4 MiB is a
/// mailbox of about 500,000 messages. async-imap parses an unfinished line again on every
/// read, so a line costs time quadratic in its length (a few seconds at this size); the
/// limit also bounds that.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;

/// Smallest longest-response setting accepted: 64 KiB.
pub const MIN_MAX_LINE: usize = 64 * 1024;

/// What the guard lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Largest literal a server may announce, in bytes.
    pub max_literal: u64,
    /// Longest response, in bytes, counting everything but literal data.
    pub max_line: usize,
    /// Deepest nesting of parentheses in a response.
    pub max_depth: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_literal: DEFAULT_MAX_LITERAL,
            max_line: DEFAULT_MAX_LINE,
            max_depth: MAX_NESTING,
        }
    }
}

impl GuardLimits {
    /// The limits for the operator's settings, refused when they would break the bridge's own
    /// requests: literals below [`MAX_TEXT_PART`](super::messages::MAX_TEXT_PART), lines below
    /// [`MIN_MAX_LINE`].
    pub fn checked(max_literal: u64, max_line: usize) -> anyhow::Result<Self> {
        let min_literal = u64::from(super::messages::MAX_TEXT_PART);
        if max_literal < min_literal {
            anyhow::bail!(
                "IMAP_BRIDGE_MAX_UPSTREAM_LITERAL must be at least {min_literal} bytes, the \
                 largest text part the bridge asks for"
            );
        }
        if max_line < MIN_MAX_LINE {
            anyhow::bail!("IMAP_BRIDGE_MAX_UPSTREAM_LINE must be at least {MIN_MAX_LINE} bytes");
        }
        Ok(GuardLimits {
            max_literal,
            max_line,
            max_depth: MAX_NESTING,
        })
    }
}

/// Why the guard refused a server's stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A literal larger than [`GuardLimits::max_literal`] was announced.
    #[error("a literal of more than {max} bytes")]
    LiteralTooLarge {
        /// The limit.
        max: u64,
    },
    /// A response ran past [`GuardLimits::max_line`] bytes outside literals.
    #[error("a response line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// Parentheses nested deeper than [`GuardLimits::max_depth`].
    #[error("lists nested deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// `INTERNALDATE NIL`, which RFC 3501 does not allow and imap-proto 0.17 panics on.
    #[error("INTERNALDATE NIL, which IMAP does not allow")]
    InternalDateNil,
    /// A status response (OK, NO, BAD, BYE, PREAUTH or a continuation) announcing a literal.
    #[error("a literal announced in a status response")]
    LiteralInStatus,
    /// Syntax no server sends and the parser would read differently from the guard, or
    /// panic on.
    #[error("a malformed response ({0})")]
    Malformed(&'static str),
}

impl Violation {
    /// The violation carried by an I/O error from a [`GuardedStream`], if that is what it is.
    pub fn of(error: &io::Error) -> Option<&Violation> {
        error.get_ref()?.downcast_ref::<Violation>()
    }
}

/// The `INTERNALDATE NIL` imap-proto 0.17 panics on, matched without regard to case.
const INTERNALDATE_NIL: &[u8] = b"INTERNALDATE NIL";

/// Bytes of a data line outside strings that change nothing (but that no keyword can start
/// after them).
static QUIET_IN_DATA: [bool; 256] = quiet_except(b"()\"{~\n Ii");
/// Bytes that change nothing inside a quoted string.
static QUIET_IN_QUOTED: [bool; 256] = quiet_except(b"\"\\\r\n\0");
/// Bytes that change nothing in a status line's text, away from a brace or bracket.
static QUIET_IN_STATUS: [bool; 256] = quiet_except(b"{]\n");

const fn quiet_except(special: &[u8]) -> [bool; 256] {
    let mut table = [true; 256];
    let mut i = 0;
    while i < special.len() {
        table[special[i] as usize] = false;
        i += 1;
    }
    table
}

/// Longest status word (`PREAUTH`).
const MAX_STATUS_WORD: usize = 7;

/// Where the scanner is in the server's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a response.
    LineStart,
    /// After `*`: a space may lead to a status word.
    Star,
    /// After `* `: reading what may be a status word (`len` letters so far).
    Word { len: usize },
    /// In a status response, which runs to the end of the line.
    Status(Tail, Code),
    /// In a data response, outside strings and literals.
    Data,
    /// In a quoted string of a data response.
    Quoted,
    /// After a backslash in a quoted string.
    Escaped,
    /// After `~`, which may start a literal8.
    Tilde,
    /// In a literal announcement: `{` and `digits` digits making up `size`.
    Announce { size: u64, digits: usize },
    /// After `{n+`.
    AnnouncePlus { size: u64 },
    /// After `{n}` or `{n+}`: a CR must follow.
    Announced { size: u64 },
    /// After `{n}` and CR: an LF must follow.
    AnnouncedCr { size: u64 },
}

/// How the end of a status line looks: whether it is announcing a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing like a literal announcement.
    Text,
    /// `{` and `digits` digits.
    Open { digits: usize },
    /// `{n+`.
    Plus,
    /// `{n}` or `{n+}`: a CR now announces a literal.
    Closed,
    /// The `]` ending a response code: imap-proto 0.17 panics when the text after a code
    /// starts with a byte beyond ASCII.
    Bracket,
}

impl Tail {
    fn next(self, byte: u8) -> Tail {
        match (self, byte) {
            (_, b'{') => Tail::Open { digits: 0 },
            (Tail::Open { digits }, b'0'..=b'9') => Tail::Open { digits: digits + 1 },
            (Tail::Open { digits }, b'+') if digits > 0 => Tail::Plus,
            (Tail::Open { digits }, b'}') if digits > 0 => Tail::Closed,
            (Tail::Plus, b'}') => Tail::Closed,
            _ => Tail::Text,
        }
    }
}

/// Where a status response's code (`[...]`) can be: only at the very start of its text, after
/// `* OK `, `tag NO ` or `+ `. A `]` anywhere else (a mailbox name a server echoes in its
/// text, say) ends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    /// Still in the tag and status word: the text starts after this many more spaces.
    Before(u8),
    /// At the first byte of the text.
    Start,
    /// Inside a response code that opened the text, before its first `]`.
    Open,
    /// Past where a code could be.
    Past,
}

impl Code {
    /// The next position, and whether `byte` closed a response code.
    fn next(self, byte: u8) -> (Code, bool) {
        match (self, byte) {
            (Code::Before(1), b' ') => (Code::Start, false),
            (Code::Before(n), b' ') => (Code::Before(n - 1), false),
            (Code::Before(n), _) => (Code::Before(n), false),
            (Code::Start, b'[') => (Code::Open, false),
            (Code::Open, b']') => (Code::Past, true),
            (Code::Open, _) => (Code::Open, false),
            (Code::Start | Code::Past, _) => (Code::Past, false),
        }
    }
}

/// Follows IMAP's framing through a server's byte stream and refuses it at the first byte
/// beyond its [`GuardLimits`]. Feed it the stream in chunks of any size: where the chunks
/// split never changes the outcome.
#[derive(Debug, Clone)]
pub struct ResponseScanner {
    limits: GuardLimits,
    state: State,
    /// Bytes of literal data still to come; the state applies after them.
    literal: u64,
    /// Bytes of the current response outside literal data.
    line: usize,
    /// Parentheses open in the current data response.
    depth: usize,
    /// The status word being read after `* `, upper-cased.
    word: [u8; MAX_STATUS_WORD],
    /// How much of `INTERNALDATE NIL` the latest data bytes match.
    matched: usize,
    /// Whether the previous data byte lets a keyword start (`(` or a space).
    at_boundary: bool,
    failed: Option<Violation>,
}

impl ResponseScanner {
    /// A scanner at the start of a stream.
    pub fn new(limits: GuardLimits) -> Self {
        ResponseScanner {
            limits,
            state: State::LineStart,
            literal: 0,
            line: 0,
            depth: 0,
            word: [0; MAX_STATUS_WORD],
            matched: 0,
            at_boundary: false,
            failed: None,
        }
    }

    /// Checks the next bytes of the stream. Once it has refused the stream, it refuses
    /// everything after.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some(violation) = &self.failed {
            return Err(violation.clone());
        }
        let mut at = 0;
        while at < bytes.len() {
            if self.literal > 0 {
                // Literal data is skipped whole: it is never looked at, only counted.
                let take = usize::try_from(self.literal).map_or(bytes.len() - at, |remaining| {
                    remaining.min(bytes.len() - at)
                });
                at += take;
                self.literal -= take as u64;
                continue;
            }
            let common = self.common_bytes(&bytes[at..]);
            if common > 0 {
                at += common;
                continue;
            }
            if let Err(violation) = self.byte(bytes[at]) {
                self.failed = Some(violation.clone());
                return Err(violation);
            }
            at += 1;
        }
        Ok(())
    }

    /// Takes the next bytes as far as they are the common ones of data lines and status text
    /// (atoms, numbers, spaces, parentheses, quoted text) and returns how many it took; the
    /// others, and anything while `INTERNALDATE NIL` is being matched, go byte by byte through
    /// [`ResponseScanner::byte`], to the same effect. This keeps text-heavy responses (a page
    /// of envelopes) cheap. It stops short of the line and nesting limits, so a refusal comes
    /// at the same byte either way.
    fn common_bytes(&mut self, bytes: &[u8]) -> usize {
        if self.matched > 0 {
            return 0;
        }
        let end = bytes
            .len()
            .min(self.limits.max_line.saturating_sub(self.line));
        let mut taken = 0;
        while taken < end {
            let byte = bytes[taken];
            match (self.state, byte) {
                (State::Data, b' ') => self.at_boundary = true,
                (State::Data, b'(') if self.depth < self.limits.max_depth => {
                    self.depth += 1;
                    self.at_boundary = true;
                }
                (State::Data, b')') => {
                    self.depth = self.depth.saturating_sub(1);
                    self.at_boundary = false;
                }
                (State::Data, b'"') if self.at_boundary => {
                    self.at_boundary = false;
                    self.state = State::Quoted;
                }
                (State::Data, _) if QUIET_IN_DATA[usize::from(byte)] => self.at_boundary = false,
                (State::Quoted, b'"') => self.state = State::Data,
                (State::Quoted, _) if QUIET_IN_QUOTED[usize::from(byte)] => {}
                (State::Status(Tail::Text, Code::Past), _)
                    if QUIET_IN_STATUS[usize::from(byte)] => {}
                _ => break,
            }
            taken += 1;
        }
        self.line += taken;
        taken
    }

    fn byte(&mut self, byte: u8) -> Result<(), Violation> {
        self.line += 1;
        if self.line > self.limits.max_line {
            return Err(Violation::LineTooLong {
                max: self.limits.max_line,
            });
        }
        self.state = match self.state {
            State::LineStart => match byte {
                b'*' => State::Star,
                b'\n' => self.end_of_line(),
                // A continuation request or a tagged response: imap-proto reads both as a
                // status and its text, which starts after `+ ` or after `tag STATUS `.
                b'+' => State::Status(Tail::Text.next(byte), Code::Before(1)),
                _ => State::Status(Tail::Text.next(byte), Code::Before(2)),
            },
            State::Star => match byte {
                b' ' => State::Word { len: 0 },
                _ => self.data(byte)?,
            },
            State::Word { len } => match byte {
                b'a'..=b'z' | b'A'..=b'Z' if len < MAX_STATUS_WORD => {
                    self.word[len] = byte.to_ascii_uppercase();
                    State::Word { len: len + 1 }
                }
                b' ' if is_status_word(&self.word[..len]) => State::Status(Tail::Text, Code::Start),
                b'\r' if is_status_word(&self.word[..len]) => State::Status(Tail::Text, Code::Past),
                _ => {
                    // Data after all; the letters read so far open nothing.
                    self.at_boundary = false;
                    self.data(byte)?
                }
            },
            State::Status(tail, code) => match byte {
                b'\r' if tail == Tail::Closed => return Err(Violation::LiteralInStatus),
                0x80.. if tail == Tail::Bracket => {
                    return Err(Violation::Malformed(
                        "a byte beyond ASCII after a response code",
                    ));
                }
                b'\n' => self.end_of_line(),
                _ => match code.next(byte) {
                    (code, true) => State::Status(Tail::Bracket, code),
                    (code, false) => State::Status(tail.next(byte), code),
                },
            },
            State::Data => self.data(byte)?,
            State::Quoted => match byte {
                b'"' => {
                    self.at_boundary = false;
                    State::Data
                }
                b'\\' => State::Escaped,
                b'\r' | b'\n' | 0 => {
                    return Err(Violation::Malformed("CR, LF or NUL in a quoted string"));
                }
                _ => State::Quoted,
            },
            State::Escaped => match byte {
                b'\\' | b'"' => State::Quoted,
                _ => return Err(Violation::Malformed("an escape other than \\\\ or \\\"")),
            },
            State::Tilde => match byte {
                b'{' => State::Announce { size: 0, digits: 0 },
                _ => self.data(byte)?,
            },
            State::Announce { size, digits } => match byte {
                b'0'..=b'9' => {
                    let size = size
                        .saturating_mul(10)
                        .saturating_add(u64::from(byte - b'0'));
                    if size > self.limits.max_literal {
                        return Err(Violation::LiteralTooLarge {
                            max: self.limits.max_literal,
                        });
                    }
                    State::Announce {
                        size,
                        digits: digits + 1,
                    }
                }
                b'+' if digits > 0 => State::AnnouncePlus { size },
                b'}' if digits > 0 => State::Announced { size },
                _ => self.data(byte)?,
            },
            State::AnnouncePlus { size } => match byte {
                b'}' => State::Announced { size },
                _ => self.data(byte)?,
            },
            State::Announced { size } => match byte {
                b'\r' => State::AnnouncedCr { size },
                _ => self.data(byte)?,
            },
            State::AnnouncedCr { size } => match byte {
                b'\n' => {
                    self.literal = size;
                    self.at_boundary = false;
                    State::Data
                }
                _ => self.data(byte)?,
            },
        };
        Ok(())
    }

    /// One byte of a data response outside strings and literals.
    fn data(&mut self, byte: u8) -> Result<State, Violation> {
        self.match_internaldate_nil(byte)?;
        // Strings and literals start a token. Elsewhere imap-proto reads these bytes as part
        // of a bare value (its catch-all for attributes it cannot parse), where the guard
        // would start a string: the two would disagree about what follows.
        let starts_token = self.at_boundary;
        self.at_boundary = matches!(byte, b'(' | b' ');
        Ok(match byte {
            b'(' => {
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    return Err(Violation::TooDeep {
                        max: self.limits.max_depth,
                    });
                }
                State::Data
            }
            b')' => {
                self.depth = self.depth.saturating_sub(1);
                State::Data
            }
            b'"' | b'{' if !starts_token => {
                return Err(Violation::Malformed("a quote or brace inside a token"));
            }
            b'"' => State::Quoted,
            b'{' => State::Announce { size: 0, digits: 0 },
            // A keyword may hold `~`; only at a token's start may it begin a literal8.
            b'~' if starts_token => State::Tilde,
            b'\n' => self.end_of_line(),
            _ => State::Data,
        })
    }

    /// imap-proto reads `INTERNALDATE ` then `NIL` wherever a FETCH attribute may start: after
    /// `(` or a space, inside the attribute list.
    fn match_internaldate_nil(&mut self, byte: u8) -> Result<(), Violation> {
        if self.matched == 0 && !(self.at_boundary && self.depth > 0) {
            return Ok(());
        }
        let byte = byte.to_ascii_uppercase();
        if self.matched > 0 && byte == INTERNALDATE_NIL[self.matched] {
            self.matched += 1;
        } else if self.at_boundary && self.depth > 0 && byte == INTERNALDATE_NIL[0] {
            self.matched = 1;
        } else {
            self.matched = 0;
        }
        if self.matched == INTERNALDATE_NIL.len() {
            return Err(Violation::InternalDateNil);
        }
        Ok(())
    }

    fn end_of_line(&mut self) -> State {
        self.line = 0;
        self.depth = 0;
        self.matched = 0;
        self.at_boundary = false;
        State::LineStart
    }
}

fn is_status_word(word: &[u8]) -> bool {
    matches!(word, b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH")
}

/// A connection to the IMAP server whose incoming bytes pass a [`ResponseScanner`]. A refused
/// read fails with an [`io::ErrorKind::InvalidData`] error carrying the [`Violation`] (see
/// [`Violation::of`]) and hands none of its bytes on; so does every read after it.
///
/// While [armed](GuardedStream::tap_threads), it also takes THREAD responses (RFC 5256) out of
/// the stream, which the response parser cannot read: see [`ThreadTap`].
#[derive(Debug)]
pub struct GuardedStream<S> {
    inner: S,
    scanner: ResponseScanner,
    tap: ThreadTap,
}

impl<S> GuardedStream<S> {
    /// Guards `inner` with `limits`.
    pub fn new(inner: S, limits: GuardLimits) -> Self {
        GuardedStream {
            inner,
            scanner: ResponseScanner::new(limits),
            tap: ThreadTap::default(),
        }
    }

    /// Starts (or stops) taking THREAD responses out of the stream; call it before sending a
    /// THREAD command and after its completion.
    pub fn tap_threads(&mut self, armed: bool) {
        self.tap.armed = armed;
        // Armed between commands: the last byte read ended a response.
        self.tap.at_line_start = true;
    }

    /// The thread lists of the THREAD responses taken since the last call, without their
    /// `* THREAD ` and CRLF.
    pub fn take_threads(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tap.captured)
    }
}

/// Takes `* THREAD …` lines out of the bytes the response parser reads and puts `* SEARCH`
/// (an empty search result, which it can read) in their place.
///
/// imap-proto has no parser for THREAD responses and fails the whole read on one. The tap is
/// armed only while a THREAD command runs, when a server sends no literals (THREAD responses
/// hold only numbers and parentheses, the untagged data that may come beside them EXISTS,
/// EXPUNGE and FETCH of flags), so a line start is any byte after LF. A response the guard
/// refuses never reaches it.
#[derive(Debug, Default)]
pub struct ThreadTap {
    armed: bool,
    /// Whether the next byte starts a line.
    at_line_start: bool,
    /// Bytes held back: a line start that may become `* THREAD `, or a THREAD line.
    held: Vec<u8>,
    /// Whether `held` is a THREAD line.
    capturing: bool,
    captured: Vec<Vec<u8>>,
    /// Bytes ready for the parser.
    out: std::collections::VecDeque<u8>,
}

const THREAD_PREFIX: &[u8] = b"* THREAD";

impl ThreadTap {
    /// Whether bytes pass untouched: not armed and nothing held.
    fn idle(&self) -> bool {
        !self.armed && self.held.is_empty() && self.out.is_empty()
    }

    /// Takes in bytes from the server.
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.capturing {
                if byte == b'\n' {
                    let line = std::mem::take(&mut self.held);
                    let list = line[THREAD_PREFIX.len()..].trim_ascii();
                    self.captured.push(list.to_vec());
                    self.capturing = false;
                    self.out.extend(b"* SEARCH\r\n");
                    self.at_line_start = true;
                } else {
                    self.held.push(byte);
                }
                continue;
            }
            if !self.held.is_empty() || (self.armed && self.at_line_start && byte == b'*') {
                self.held.push(byte);
                let n = self.held.len();
                if n <= THREAD_PREFIX.len() {
                    if self.held.eq_ignore_ascii_case(&THREAD_PREFIX[..n]) {
                        continue;
                    }
                } else if matches!(byte, b' ' | b'\r') {
                    self.capturing = true;
                    continue;
                }
                self.out.extend(self.held.drain(..));
                self.at_line_start = byte == b'\n';
                continue;
            }
            self.out.push_back(byte);
            self.at_line_start = byte == b'\n';
        }
    }

    /// Moves ready bytes into `buf`.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.out.len());
        let (a, b) = self.out.as_slices();
        let from_a = n.min(a.len());
        buf.put_slice(&a[..from_a]);
        buf.put_slice(&b[..n - from_a]);
        self.out.drain(..n);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A stream refused earlier stays refused, whatever the connection still holds.
        this.scanner
            .scan(&[])
            .map_err(|v| io::Error::new(io::ErrorKind::InvalidData, v))?;
        if this.tap.idle() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if let Err(violation) = this.scanner.scan(&buf.filled()[before..]) {
                buf.set_filled(before);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)));
            }
            return Poll::Ready(Ok(()));
        }
        // Through the tap, until it has bytes ready (a read of nothing would be the end).
        while this.tap.out.is_empty() {
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let bytes = read.filled();
            if bytes.is_empty() {
                this.tap.out.extend(this.tap.held.drain(..));
                break;
            }
            this.scanner
                .scan(bytes)
                .map_err(|v| io::Error::new(io::ErrorKind::InvalidData, v))?;
            this.tap.feed(bytes);
        }
        this.tap.drain_into(buf);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::imap_proto::Response;
    use tokio::io::AsyncReadExt;

    const LIMITS: GuardLimits = GuardLimits {
        max_literal: 1000,
        max_line: 500,
        max_depth: 8,
    };

    /// What a Dovecot session sends: greeting, capabilities, a selected mailbox, a header
    /// page with ENVELOPE and BODYSTRUCTURE, a body section as a literal, a mailbox name as a
    /// literal, SEARCH, and status texts with quotes, braces and parentheses in them.
    const SESSION: &[u8] =
        b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID IDLE] Dovecot ready.\r\n\
b1 OK [CAPABILITY IMAP4rev1 CONDSTORE QRESYNC] Logged in\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
* 3 EXISTS\r\n\
* OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
* OK [HIGHESTMODSEQ 17] Highest\r\n\
b2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE \"06-May-2024 12:00:00 +0000\" RFC822.SIZE 512 \
ENVELOPE (\"Mon, 06 May 2024 12:00:00 +0000\" \"Re: (INTERNALDATE NIL) {5}\" \
((\"Ann\" NIL \"ann\" \"example.test\")) NIL NIL NIL NIL NIL NIL \"<a@b>\") \
BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"a \\\"(b)\\\".pdf\") NIL NIL \"base64\" 400 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"x\") NIL NIL NIL))\r\n\
* 2 FETCH (UID 8 BODY[1]<0> {26}\r\n((((((((((INTERNALDATE NIL)\r\n\
b3 OK Fetch completed.\r\n\
* LIST (\\HasNoChildren) \"/\" {9}\r\nEntw\xc3\xbcrfe\r\n\
* SEARCH 1 2 3 7 8\r\n\
* BYE text with \"an unbalanced quote and (((((((((( and {braces}\r\n\
+ go ahead (((((((((((\r\n\
b4 NO [ALERT] \"quoted\" (((((((((( text\r\n";

    /// Where scanning `stream` byte by byte first fails, and why.
    fn first_failure(limits: GuardLimits, stream: &[u8]) -> Option<(usize, Violation)> {
        let mut scanner = ResponseScanner::new(limits);
        stream
            .iter()
            .enumerate()
            .find_map(|(i, b)| scanner.scan(std::slice::from_ref(b)).err().map(|v| (i, v)))
    }

    /// Scans `stream` whole, byte by byte, and split in two at every position, and checks
    /// that every way of chunking it gives the same verdict at the same byte.
    /// Asserts the verdict on each of `streams`, naming the stream that got another one.
    fn assert_each(streams: &[&[u8]], expected: Result<(), Violation>) {
        for stream in streams {
            assert_eq!(
                verdict(LIMITS, stream),
                expected,
                "{}",
                String::from_utf8_lossy(stream)
            );
        }
    }

    fn verdict(limits: GuardLimits, stream: &[u8]) -> Result<(), Violation> {
        let whole = ResponseScanner::new(limits).scan(stream);
        let failure = first_failure(limits, stream);
        assert_eq!(whole.clone().err(), failure.clone().map(|(_, v)| v));
        for split in 0..=stream.len() {
            let mut scanner = ResponseScanner::new(limits);
            let head = scanner.scan(&stream[..split]);
            let tail = scanner.scan(&stream[split..]);
            match &failure {
                None => assert_eq!((head.clone(), tail), (Ok(()), Ok(())), "split at {split}"),
                Some((at, violation)) if split <= *at => {
                    assert_eq!(head, Ok(()), "split at {split}");
                    assert_eq!(tail.as_ref().err(), Some(violation), "split at {split}");
                }
                Some((_, violation)) => {
                    assert_eq!(head.as_ref().err(), Some(violation), "split at {split}");
                    assert_eq!(tail.as_ref().err(), Some(violation), "sticky after {split}");
                }
            }
        }
        whole
    }

    fn fetch_nested(depth: usize) -> Vec<u8> {
        // `* 1 FETCH (` is one level, `BODYSTRUCTURE (` another.
        let inner = depth - 2;
        let mut line = b"* 1 FETCH (UID 1 BODYSTRUCTURE (".to_vec();
        line.extend(std::iter::repeat_n(b'(', inner));
        line.extend_from_slice(b"\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)");
        for _ in 0..inner {
            line.extend_from_slice(b" \"mixed\")");
        }
        line.extend_from_slice(b")\r\n");
        line
    }

    #[test]
    fn a_real_session_passes_however_it_is_split() {
        assert_eq!(verdict(LIMITS, SESSION), Ok(()));
        // imap-proto reads the same stream as the same responses, none of them refused.
        let mut rest = SESSION;
        let mut responses = 0;
        while !rest.is_empty() {
            let (next, _) = Response::parse(rest).expect("the session parses");
            rest = next;
            responses += 1;
        }
        assert_eq!(responses, 16);
    }

    #[test]
    fn a_bracket_in_echoed_text_is_not_a_response_code() {
        // Servers echo mailbox names in their texts; a name may hold `]` and then any letter.
        for line in [
            &b"b7 NO Mailbox doesn't exist: xyz]\xc3\xbc\r\n"[..],
            b"b7 NO [NONEXISTENT] Mailbox doesn't exist: xyz]\xc3\xbc\r\n",
            b"* NO [ALERT] Quota for abc]\xc3\xa9 exceeded\r\n",
            b"* OK ]\xc3\xa9\r\n",
            b"+ ]\xc3\xa9\r\n",
            b"b1 OK [READ-WRITE] ]\xc3\xa9\r\n",
        ] {
            assert_eq!(verdict(LIMITS, line), Ok(()), "{}", line.escape_ascii());
            let (rest, _) = Response::parse(line).expect("imap-proto reads it");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn literals_up_to_the_limit_pass_and_larger_ones_are_refused_at_their_announcement() {
        let fits = b"* 1 FETCH (BODY[] {1000}\r\n";
        let mut stream = fits.to_vec();
        stream.extend(std::iter::repeat_n(b'(', 1000));
        stream.extend_from_slice(b")\r\n");
        assert_eq!(
            verdict(LIMITS, &stream),
            Ok(()),
            "literal data is never looked at"
        );

        assert_each(
            &[
                &b"* 1 FETCH (BODY[] {1001}\r\n"[..],
                b"* 1 FETCH (BINARY[] ~{1001}\r\n",
                b"* 1 FETCH (BODY[] {1001+}\r\n",
                b"* 1 FETCH (BODY[] {00000000000000000000000000001001}\r\n",
                b"* 1 FETCH (BODY[] {99999999999999999999999999999999999}\r\n",
                b"* LIST () \"/\" {4294967296}\r\n",
            ],
            Err(Violation::LiteralTooLarge { max: 1000 }),
        );
        // Refused at the digit that crosses the limit: nothing after it is needed.
        assert_eq!(
            first_failure(LIMITS, b"* 1 FETCH (BODY[] {1001}\r\n").map(|(at, _)| at),
            Some(22)
        );
        // Not announcements: braces in quoted strings, and braces not closed before CRLF.
        for text in [
            &b"* 1 FETCH (ENVELOPE (\"{99999}\"))\r\n"[..],
            b"* 1 FETCH (X {999 )\r\n",
            b"* 1 FETCH (X {}\r\n",
            // A literal8 (RFC 3516) is data like any literal.
            b"* 4 FETCH (UID 9 BINARY[2] ~{3}\r\n\x00)( FLAGS ())\r\n",
        ] {
            assert_eq!(verdict(LIMITS, text), Ok(()));
        }
    }

    #[test]
    fn long_responses_are_refused_but_literal_data_does_not_count() {
        let mut long = b"* SEARCH".to_vec();
        while long.len() < 498 {
            long.extend_from_slice(b" 1");
        }
        long.extend_from_slice(b"\r\n");
        assert_eq!(long.len(), 500);
        assert_eq!(verdict(LIMITS, &long), Ok(()));
        long.insert(9, b'1');
        assert_eq!(
            verdict(LIMITS, &long),
            Err(Violation::LineTooLong { max: 500 })
        );
        // An endless line without CRLF, status or data, is cut off at the limit.
        for start in [&b"* "[..], b"* OK ", b"b1 OK ", b"+ ", b"* 1 FETCH (X \""] {
            let mut endless = start.to_vec();
            endless.extend(std::iter::repeat_n(b'x', 600));
            assert_eq!(
                first_failure(LIMITS, &endless),
                Some((500, Violation::LineTooLong { max: 500 }))
            );
        }
        // Two 400-byte literals and their response around them stay under 500 bytes of line.
        let mut literals = b"* 1 FETCH (BODY[1] {400}\r\n".to_vec();
        literals.extend(std::iter::repeat_n(b'a', 400));
        literals.extend_from_slice(b" BODY[2] {400}\r\n");
        literals.extend(std::iter::repeat_n(b'b', 400));
        literals.extend_from_slice(b")\r\n");
        assert_eq!(verdict(LIMITS, &literals), Ok(()));
    }

    #[test]
    fn nesting_is_counted_per_data_response_outside_strings_and_literals() {
        assert_eq!(verdict(LIMITS, &fetch_nested(8)), Ok(()));
        assert_eq!(
            verdict(LIMITS, &fetch_nested(9)),
            Err(Violation::TooDeep { max: 8 })
        );
        // Depth starts again with every response.
        let mut many = Vec::new();
        for _ in 0..20 {
            many.extend(fetch_nested(8));
        }
        assert_eq!(verdict(LIMITS, &many), Ok(()));
        assert_each(
            &[
                &b"* 1 FETCH (ENVELOPE (\"((((((((((((\"))\r\n"[..],
                b"* 1 FETCH (ENVELOPE (\"\\\"((((((((((((\"))\r\n",
                b"* 1 FETCH (BODY[] {12}\r\n(((((((((((())\r\n",
                b"* OK ((((((((((((((((((((\r\n",
                b"* BYE ((((((((((((((((((((\r\n",
                b"b1 BAD ((((((((((((((((((((\r\n",
                b"+ ((((((((((((((((((((\r\n",
            ],
            Ok(()),
        );
    }

    #[test]
    fn status_text_cannot_hide_a_response_from_the_guard() {
        // An unbalanced quote or an unfinished brace in status text ends with its line; the
        // next response is checked in full.
        for status in [&b"* OK \"unbalanced\r\n"[..], b"b1 NO {12\r\n", b"+ \"\r\n"] {
            let mut stream = status.to_vec();
            stream.extend(fetch_nested(9));
            assert_eq!(
                verdict(LIMITS, &stream),
                Err(Violation::TooDeep { max: 8 }),
                "{}",
                String::from_utf8_lossy(status)
            );
        }
        // A literal announced in status text would make the guard and the parser disagree
        // about where the next response starts.
        assert_each(
            &[
                &b"* OK [BADCHARSET ({5}\r\n"[..],
                b"b1 NO [BADCHARSET ({5+}\r\n",
                b"* NO text {0}\r\n",
                b"+ {5}\r\n",
                b"* BYE ~{5}\r\n",
            ],
            Err(Violation::LiteralInStatus),
        );
        // Lower case status words are status words; other words start data.
        assert_eq!(
            verdict(LIMITS, b"* ok [BADCHARSET ({5}\r\n"),
            Err(Violation::LiteralInStatus)
        );
        assert_eq!(verdict(LIMITS, b"* OKAY {5}\r\n((((("), Ok(()));
    }

    #[test]
    fn internaldate_nil_is_refused_only_where_the_parser_would_read_it() {
        assert_each(
            &[
                &b"* 1 FETCH (UID 5 INTERNALDATE NIL)\r\n"[..],
                b"* 1 FETCH (INTERNALDATE NIL)\r\n",
                b"* 1 FETCH (UID 5 internaldate nil)\r\n",
                b"* 1 FETCH (UID 5 INTERNALDATE NILX)\r\n",
                b"* 1 FETCH (FLAGS () INTERNALDATE NIL)\r\n",
            ],
            Err(Violation::InternalDateNil),
        );
        assert_each(
            &[
                &b"* 1 FETCH (UID 5 INTERNALDATE \"06-May-2024 12:00:00 +0000\")\r\n"[..],
                b"* 1 FETCH (ENVELOPE (\"INTERNALDATE NIL\"))\r\n",
                b"* 1 FETCH (BODY[] {16}\r\nINTERNALDATE NIL)\r\n",
                b"* 1 FETCH (UID 5 INTERNALDATE {3}\r\nNIL)\r\n",
                b"* 1 FETCH (UID 5 XINTERNALDATE NIL)\r\n",
                b"* 1 FETCH (UID 5 INTERNALDATE  NIL)\r\n",
                b"* OK INTERNALDATE NIL (INTERNALDATE NIL)\r\n",
                b"* SEARCH INTERNALDATE NIL\r\n",
            ],
            Ok(()),
        );
    }

    #[test]
    fn syntax_the_parser_would_read_differently_is_refused() {
        for (malformed, what) in [
            // imap-proto's catch-all for attributes it cannot parse reads a bare value up to
            // the next space: a quote inside it starts no string there.
            (
                &b"* 1 FETCH (X a\"b INTERNALDATE NIL\")\r\n"[..],
                "a quote or brace inside a token",
            ),
            (
                b"* 1 FETCH (X a{99}\r\n INTERNALDATE NIL)\r\n",
                "a quote or brace inside a token",
            ),
            (
                b"* 1 FETCH (X a~{3}\r\nabc)\r\n",
                "a quote or brace inside a token",
            ),
            // imap-proto's quoted strings hold no CR, LF or NUL and escape only \\ and \".
            (
                b"* 1 FETCH (ENVELOPE (\"a\r\nb1 OK x\"))\r\n",
                "CR, LF or NUL in a quoted string",
            ),
            (
                b"* 1 FETCH (ENVELOPE (\"a\x00b\"))\r\n",
                "CR, LF or NUL in a quoted string",
            ),
            (
                b"* 1 FETCH (ENVELOPE (\"a\\x INTERNALDATE NIL\"))\r\n",
                "an escape other than \\\\ or \\\"",
            ),
            // imap-proto 0.17 slices the text after a response code at its second byte.
            (
                b"b1 OK [READ-WRITE]\xc3\xbc done\r\n",
                "a byte beyond ASCII after a response code",
            ),
            (
                b"* OK [ALERT]\xff\r\n",
                "a byte beyond ASCII after a response code",
            ),
        ] {
            assert_eq!(
                verdict(LIMITS, malformed),
                Err(Violation::Malformed(what)),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
        assert_each(
            &[
                &b"* 1 FETCH (BODY[HEADER.FIELDS (\"Subject\")] {3}\r\nabc)\r\n"[..],
                b"* 1 FETCH (FLAGS (RJ?bjT0~b#VoNMi/ 4'H0t}tMj:`c \\Seen))\r\n",
                b"* 1 FETCH (ENVELOPE (\"b\\\\s \\\"q\\\"\" \"\xc3\xbc\"))\r\n",
                b"b1 OK [READ-WRITE] \xc3\xbc\r\n",
                b"* OK text]\r\n",
            ],
            Ok(()),
        );
    }

    #[test]
    fn what_the_guard_lets_through_the_parser_reads_without_panicking() {
        // The responses the tests above accept, and the deepest nesting the default limit
        // allows, parse; the parse of the deepest needs more stack than a test thread's 2 MiB
        // in a debug build (about 34 KiB per level), so it runs where main.rs would run it.
        let deepest = fetch_nested(MAX_NESTING);
        let limits = GuardLimits {
            max_literal: 1000,
            max_line: 1 << 20,
            max_depth: MAX_NESTING,
        };
        assert_eq!(ResponseScanner::new(limits).scan(&deepest), Ok(()));
        assert!(
            ResponseScanner::new(limits)
                .scan(&fetch_nested(MAX_NESTING + 1))
                .is_err()
        );
        let parsed = std::thread::Builder::new()
            .stack_size(8 * 1024 * 1024)
            .spawn(move || matches!(Response::parse(&deepest), Ok((_, Response::Fetch(..)))))
            .expect("thread")
            .join()
            .expect("no overflow");
        assert!(parsed);
    }

    #[test]
    fn settings_that_would_refuse_the_bridges_own_fetches_are_refused() {
        assert_eq!(
            GuardLimits::checked(DEFAULT_MAX_LITERAL, DEFAULT_MAX_LINE).expect("defaults"),
            GuardLimits::default()
        );
        assert!(GuardLimits::checked(4 * 1024 * 1024, MIN_MAX_LINE).is_ok());
        let small_literal = GuardLimits::checked(4 * 1024 * 1024 - 1, DEFAULT_MAX_LINE)
            .expect_err("text parts are fetched in 4 MiB");
        assert!(
            small_literal
                .to_string()
                .contains("IMAP_BRIDGE_MAX_UPSTREAM_LITERAL")
        );
        let small_line =
            GuardLimits::checked(DEFAULT_MAX_LITERAL, MIN_MAX_LINE - 1).expect_err("too short");
        assert!(
            small_line
                .to_string()
                .contains("IMAP_BRIDGE_MAX_UPSTREAM_LINE")
        );
    }

    #[tokio::test]
    async fn a_guarded_stream_passes_bytes_unchanged_and_fails_for_good_on_a_violation() {
        let mut stream = SESSION.to_vec();
        stream.extend(fetch_nested(9));
        stream.extend_from_slice(b"b5 OK never read\r\n");
        let reader = tokio_test::io::Builder::new()
            .read(&stream[..100])
            .read(&stream[100..SESSION.len() + 5])
            .read(&stream[SESSION.len() + 5..])
            .build();
        let mut guarded = GuardedStream::new(reader, LIMITS);
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let error = loop {
            match guarded.read(&mut chunk).await {
                Ok(0) => panic!("the violation was not noticed"),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(received, &stream[..SESSION.len() + 5]);
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(Violation::of(&error), Some(&Violation::TooDeep { max: 8 }));
        let again = guarded.read(&mut chunk).await.expect_err("still refused");
        assert_eq!(Violation::of(&again), Some(&Violation::TooDeep { max: 8 }));
        assert_eq!(
            Violation::of(&io::Error::new(io::ErrorKind::InvalidData, "tls")),
            None
        );
    }

    /// Reads `stream`, cut into pieces of `piece` bytes, through an armed tap; returns what
    /// the parser gets and the thread lists taken.
    async fn through_the_tap(stream: &[u8], piece: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut builder = tokio_test::io::Builder::new();
        for chunk in stream.chunks(piece) {
            builder.read(chunk);
        }
        let mut guarded = GuardedStream::new(
            builder.build(),
            GuardLimits {
                max_depth: MAX_NESTING,
                ..LIMITS
            },
        );
        guarded.tap_threads(true);
        let mut received = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            match guarded.read(&mut chunk).await.expect("accepted") {
                0 => break,
                n => received.extend_from_slice(&chunk[..n]),
            }
        }
        (received, guarded.take_threads())
    }

    #[tokio::test]
    async fn an_armed_tap_takes_thread_responses_out_wherever_the_reads_split() {
        let stream: &[u8] = b"* 4 EXISTS\r\n* THREAD (2)(3 6 (4 23)(44 7 96))\r\n\
* 1 FETCH (FLAGS (\\Seen))\r\n* THREAD\r\n* THREADS are not threads\r\n* thread (9)\r\n\
a1 OK Thread completed.\r\n";
        let parsed: &[u8] = b"* 4 EXISTS\r\n* SEARCH\r\n* 1 FETCH (FLAGS (\\Seen))\r\n\
* SEARCH\r\n* THREADS are not threads\r\n* SEARCH\r\na1 OK Thread completed.\r\n";
        for piece in [1, 2, 3, 5, 8, 64, stream.len()] {
            let (received, threads) = through_the_tap(stream, piece).await;
            assert_eq!(
                String::from_utf8_lossy(&received),
                String::from_utf8_lossy(parsed),
                "pieces of {piece}"
            );
            assert_eq!(
                threads,
                [
                    b"(2)(3 6 (4 23)(44 7 96))".to_vec(),
                    Vec::new(),
                    b"(9)".to_vec()
                ],
                "pieces of {piece}"
            );
        }
        // What stands in for a THREAD response is one the parser reads.
        assert!(matches!(
            Response::parse(b"* SEARCH\r\n"),
            Ok((_, Response::MailboxData(_)))
        ));
    }

    #[tokio::test]
    async fn an_unarmed_tap_passes_thread_responses_through() {
        let stream: &[u8] = b"* THREAD (1)\r\n";
        let reader = tokio_test::io::Builder::new().read(stream).build();
        let mut guarded = GuardedStream::new(reader, LIMITS);
        let mut received = Vec::new();
        guarded.read_to_end(&mut received).await.expect("read");
        assert_eq!(received, stream);
        assert!(guarded.take_threads().is_empty());
    }
}
