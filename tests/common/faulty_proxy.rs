//! A loopback TCP proxy between the bridge and its IMAP server that injects faults on command:
//! resets, closes, stalls, truncations and delays, at chosen places of the traffic.
//!
//! It forwards raw bytes, so TLS stays end to end (the bridge still verifies the server's
//! certificate for `localhost`) and the proxy cannot read the IMAP it carries. It finds its
//! places by the shape of the traffic instead, which is enough on a loopback link where the
//! bridge writes a command and waits for its answer:
//!
//! | place | where the fault lands |
//! | --- | --- |
//! | [`Place::Handshake`] | at a byte offset of the next new connection's first bytes (TLS handshake) |
//! | [`Place::LargeBody`] | 128–240 KiB into one server answer: only a partial FETCH of a big body (the bridge reads 256 KiB literals) is that long |
//! | [`Place::MidLiteral`] | 1–12 KiB into a server answer shorter than 64 KiB: header pages and message views, mostly literal data on Dovecot (header fields, body sections) |
//! | [`Place::Idle`] | when the server speaks again, unasked, on a logged-in connection that has been silent for 400 ms since the server's last words: an IDLE notification (Dovecot speaks unasked only in IDLE) |
//! | [`Place::Random`] | after a given number of further bytes in one direction, on whatever connection carries them (that can take a fault, see below) |
//!
//! A fault is armed with [`FaultyProxy::arm`] and fires at its first opportunity;
//! [`FaultyProxy::report`] says which fired where. A connection takes one fault at a time: none
//! after one that ended it or made the bridge give up on it, and none while a stall or delay
//! lasts.
//!
//! **Reuse after a fault.** A stall that holds back data the bridge is waiting for (the rest of
//! an answer, a command it sent, a handshake) for longer than the bridge's time limit forces the
//! bridge to give up on that connection. From then on the connection must carry no further
//! client bytes: the proxy watches it from `gives_up_after` past the fault and records every
//! client byte it reads there as a [`Reuse`]. (A reset, close or truncation ends the connection
//! itself, so the bridge cannot reuse it; a stall in IDLE or at a random place may hold back
//! nothing the bridge waits for under a timer, so it is not watched.)

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A direction of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// Client to server: what the bridge writes.
    Up,
    /// Server to client: what the IMAP server writes.
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }

    fn other(self) -> Dir {
        match self {
            Dir::Up => Dir::Down,
            Dir::Down => Dir::Up,
        }
    }
}

/// Which directions a stall stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stalled {
    /// The direction the fault fired in.
    Trigger,
    /// Both.
    Both,
}

/// What the fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Forward the bytes before the fault, then reset both sides (RST: `SO_LINGER` 0).
    Reset,
    /// Forward the bytes before the fault, then close both sides (FIN).
    Close,
    /// Forward the bytes before the fault, then forward nothing more in the stalled directions
    /// for `duration` (bytes keep being read and are delivered afterwards).
    Stall {
        /// Which directions stop.
        which: Stalled,
        /// For how long.
        duration: Duration,
    },
    /// Forward only the first part of the server's write, then close both sides. Fires on
    /// server bytes only.
    Truncate,
    /// Hold every chunk of the connection, both ways, for `per_chunk` before forwarding it,
    /// for `window`.
    Delay {
        /// Latency added to each chunk.
        per_chunk: Duration,
        /// How long the connection stays slow.
        window: Duration,
    },
}

impl Kind {
    /// Name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Reset => "reset",
            Kind::Close => "close",
            Kind::Stall { .. } => "stall",
            Kind::Truncate => "truncate",
            Kind::Delay { .. } => "delay",
        }
    }
}

/// Where the fault lands (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At byte `offset` in direction `dir` of the next connection opened after arming.
    Handshake {
        /// Which direction's bytes are counted.
        dir: Dir,
        /// Bytes forwarded before the fault.
        offset: usize,
    },
    /// At `offset` (128–240 KiB) into one server answer.
    LargeBody {
        /// Bytes of the answer forwarded before the fault.
        offset: usize,
    },
    /// At `offset` (1–12 KiB) into a server answer of less than 64 KiB so far.
    MidLiteral {
        /// Bytes of the answer forwarded before the fault.
        offset: usize,
    },
    /// When the server speaks again, unasked, after 400 ms of silence on a logged-in
    /// connection.
    Idle,
    /// After `after` more bytes in direction `dir`, on any connection.
    Random {
        /// Which direction's bytes are counted.
        dir: Dir,
        /// Bytes to let through first.
        after: usize,
    },
}

impl Place {
    /// Name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Place::Handshake { .. } => "handshake",
            Place::LargeBody { .. } => "large-body",
            Place::MidLiteral { .. } => "mid-literal",
            Place::Idle => "idle",
            Place::Random { .. } => "random",
        }
    }
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What it does.
    pub kind: Kind,
    /// Where.
    pub place: Place,
}

/// A fault that fired.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The connection (numbered from 1 in accept order).
    pub conn: u64,
    /// The fault.
    pub fault: Fault,
    /// The direction whose bytes it fired on.
    pub dir: Dir,
    /// When.
    pub at: Instant,
    /// Whether the connection is watched for reuse from `gives_up_after` on.
    pub watched: bool,
}

/// Client bytes on a connection the bridge must have given up on.
#[derive(Debug, Clone)]
pub struct Reuse {
    /// The connection.
    pub conn: u64,
    /// The fault that made the bridge give up.
    pub fault: Fault,
    /// How long after the fault the bytes came.
    pub after: Duration,
    /// How many bytes.
    pub bytes: usize,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Faults that fired, in order.
    pub injections: Vec<Injection>,
    /// Client bytes seen on watched connections after the bridge must have given up.
    pub reuses: Vec<Reuse>,
    /// Connections accepted.
    pub connections: u64,
    /// Bytes forwarded by direction: up, down.
    pub bytes: [u64; 2],
}

impl Report {
    /// Faults that fired, by (kind, place).
    pub fn by_kind_and_place(&self) -> BTreeMap<(&'static str, &'static str), usize> {
        let mut out = BTreeMap::new();
        for i in &self.injections {
            *out.entry((i.fault.kind.label(), i.fault.place.label()))
                .or_insert(0) += 1;
        }
        out
    }

    /// Faults that fired, by kind.
    pub fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for i in &self.injections {
            *out.entry(i.fault.kind.label()).or_insert(0) += 1;
        }
        out
    }

    /// Faults that fired, by place.
    pub fn by_place(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for i in &self.injections {
            *out.entry(i.fault.place.label()).or_insert(0) += 1;
        }
        out
    }
}

/// Server bytes after this much silence since the server's last bytes on a logged-in
/// connection are [`Place::Idle`].
const IDLE_SILENCE: Duration = Duration::from_millis(400);
/// A connection counts as logged in after this many client writes: the TLS handshake takes
/// two, then ID, AUTHENTICATE and ENABLE.
const LOGGED_IN_AFTER_WRITES: u32 = 6;
/// [`Place::MidLiteral`] fires only in answers shorter than this so far.
const MID_LITERAL_MAX_ANSWER: u64 = 64 * 1024;

/// One piece of a direction's traffic, in order.
enum Segment {
    Data(Bytes),
    /// Forward nothing more until then.
    Hold(Instant),
    /// The source closed: half-close the destination.
    Eof,
    /// End the connection after what came before (RST when `reset`).
    End {
        reset: bool,
    },
}

/// A fault waiting for its place.
#[derive(Debug, Clone, Copy)]
struct Armed {
    id: u64,
    fault: Fault,
}

struct Conn {
    bytes: [u64; 2],
    /// Server bytes since the client last wrote.
    answer: u64,
    client_writes: u32,
    last_dir: Option<Dir>,
    last_data: Instant,
    /// A handshake fault this connection took at accept.
    claimed: Option<Armed>,
    /// A fault ended the connection, or made the bridge give up on it: no more faults here.
    dead: bool,
    /// A stall or delay is under way until then: no other fault before.
    busy_until: Option<Instant>,
    /// Client bytes from then on are a reuse.
    watch: Option<(Instant, Fault, Instant)>,
    delay: Option<(Instant, Duration)>,
    tx: [mpsc::UnboundedSender<Segment>; 2],
}

struct State {
    next_conn: u64,
    armed: Vec<Armed>,
    fired: HashMap<u64, Injection>,
    conns: HashMap<u64, Conn>,
    report: Report,
    /// When the last stall or delay injected so far ends.
    faults_end: Option<Instant>,
}

struct Inner {
    upstream: SocketAddr,
    gives_up_after: Duration,
    state: Mutex<State>,
}

/// What the reader of a direction does with a chunk.
enum Action {
    Forward,
    Fire { split: usize, fault: Fault },
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("proxy state poisoned")
    }

    /// Accounts for a chunk read in `dir` on `conn` and decides whether a fault fires in it.
    fn on_chunk(&self, conn: u64, dir: Dir, len: usize, now: Instant) -> Action {
        let mut guard = self.state();
        let state = &mut *guard;
        state.report.bytes[dir.index()] += len as u64;
        let Some(c) = state.conns.get_mut(&conn) else {
            return Action::Forward;
        };
        if dir == Dir::Up
            && let Some((from, fault, at)) = c.watch
            && now >= from
        {
            state.report.reuses.push(Reuse {
                conn,
                fault,
                after: now - at,
                bytes: len,
            });
        }
        let before = c.bytes[dir.index()];
        let answer_before = c.answer;
        let unasked = dir == Dir::Down && c.last_dir == Some(Dir::Down);
        let silent = now.saturating_duration_since(c.last_data);
        let logged_in = c.client_writes >= LOGGED_IN_AFTER_WRITES;
        c.bytes[dir.index()] += len as u64;
        match dir {
            Dir::Up => {
                if c.last_dir != Some(Dir::Up) {
                    c.client_writes += 1;
                }
                c.answer = 0;
            }
            Dir::Down => c.answer += len as u64,
        }
        c.last_dir = Some(dir);
        c.last_data = now;
        if c.dead || c.busy_until.is_some_and(|t| now < t) || len == 0 {
            return Action::Forward;
        }
        let last = len - 1;
        let within = |offset: u64, start: u64| -> Option<usize> {
            (start + len as u64 > offset).then(|| {
                usize::try_from(offset.saturating_sub(start))
                    .unwrap_or(last)
                    .min(last)
            })
        };
        let mut chosen = None;
        if let Some(armed) = c.claimed
            && let Place::Handshake { dir: d, offset } = armed.fault.place
            && d == dir
            && let Some(split) = within(offset as u64, before)
        {
            c.claimed = None;
            chosen = Some((armed, split));
        }
        if chosen.is_none() {
            for (i, armed) in state.armed.iter_mut().enumerate() {
                let split = match armed.fault.place {
                    Place::LargeBody { offset } if dir == Dir::Down && logged_in => {
                        within(offset as u64, answer_before)
                    }
                    Place::MidLiteral { offset }
                        if dir == Dir::Down
                            && logged_in
                            && answer_before < MID_LITERAL_MAX_ANSWER =>
                    {
                        within(offset as u64, answer_before)
                    }
                    Place::Idle if unasked && logged_in && silent >= IDLE_SILENCE => {
                        Some(if armed.fault.kind == Kind::Truncate {
                            len / 2
                        } else {
                            0
                        })
                    }
                    Place::Random { dir: d, after } if d == dir => {
                        if after < len {
                            Some(after)
                        } else {
                            armed.fault.place = Place::Random {
                                dir: d,
                                after: after - len,
                            };
                            None
                        }
                    }
                    _ => None,
                };
                if let Some(split) = split {
                    chosen = Some((*armed, split));
                    state.armed.remove(i);
                    break;
                }
            }
        }
        let Some((armed, split)) = chosen else {
            return Action::Forward;
        };
        let fault = armed.fault;
        // A long stall of something the bridge waits for under its time limit makes it give
        // up; answers to commands and the handshake are waited for that way, and so is
        // whatever the bridge itself just wrote. IDLE notifications are not, and a random
        // server chunk may be one.
        let awaited = dir == Dir::Up
            || matches!(
                fault.place,
                Place::Handshake { .. } | Place::LargeBody { .. } | Place::MidLiteral { .. }
            );
        let watched = match fault.kind {
            Kind::Stall { duration, .. } => awaited && duration > self.gives_up_after,
            _ => false,
        };
        if watched {
            c.watch = Some((now + self.gives_up_after, fault, now));
            c.dead = true;
        }
        match fault.kind {
            Kind::Stall { which, duration } => {
                let until = now + duration;
                if which == Stalled::Both {
                    let _ = c.tx[dir.other().index()].send(Segment::Hold(until));
                }
                c.busy_until = Some(until);
                state.faults_end = state.faults_end.max(Some(until));
            }
            Kind::Delay { per_chunk, window } => {
                let until = now + window + per_chunk;
                c.delay = Some((now + window, per_chunk));
                c.busy_until = Some(until);
                state.faults_end = state.faults_end.max(Some(until));
            }
            Kind::Reset | Kind::Close | Kind::Truncate => c.dead = true,
        }
        let injection = Injection {
            conn,
            fault,
            dir,
            at: now,
            watched,
        };
        state.fired.insert(armed.id, injection.clone());
        state.report.injections.push(injection);
        Action::Fire { split, fault }
    }

    /// The latency to add to a chunk of `conn` now, if it is slowed down.
    fn delay(&self, conn: u64) -> Option<Duration> {
        let state = self.state();
        let (until, per_chunk) = state.conns.get(&conn)?.delay?;
        (Instant::now() < until).then_some(per_chunk)
    }
}

/// The proxy; stops accepting when dropped.
pub struct FaultyProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
    next_fault: std::sync::atomic::AtomicU64,
}

impl FaultyProxy {
    /// Listens on a loopback port and forwards every connection to `upstream`.
    /// `gives_up_after` is the longest the client may wait for awaited data before giving up on
    /// a connection, with some grace (see the module documentation on reuse).
    pub async fn start(upstream: SocketAddr, gives_up_after: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let inner = Arc::new(Inner {
            upstream,
            gives_up_after,
            state: Mutex::new(State {
                next_conn: 0,
                armed: Vec::new(),
                fired: HashMap::new(),
                conns: HashMap::new(),
                report: Report::default(),
                faults_end: None,
            }),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, inner.clone(), stop.clone()));
        FaultyProxy {
            addr,
            inner,
            stop,
            next_fault: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Where the client should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms `fault`: it fires at its first opportunity. Returns its id.
    pub fn arm(&self, fault: Fault) -> u64 {
        assert!(
            fault.kind != Kind::Truncate
                || !matches!(
                    fault.place,
                    Place::Handshake { dir: Dir::Up, .. } | Place::Random { dir: Dir::Up, .. }
                ),
            "truncation cuts server writes: {fault:?}"
        );
        let id = self.next_fault.fetch_add(1, Ordering::Relaxed);
        self.inner.state().armed.push(Armed { id, fault });
        id
    }

    /// Withdraws an armed fault that has not fired (also one a new connection took for its
    /// handshake but has not reached); returns whether it was still waiting.
    pub fn disarm(&self, id: u64) -> bool {
        let mut state = self.inner.state();
        let before = state.armed.len();
        state.armed.retain(|a| a.id != id);
        if state.armed.len() < before {
            return true;
        }
        for conn in state.conns.values_mut() {
            if conn.claimed.is_some_and(|a| a.id == id) {
                conn.claimed = None;
                return true;
            }
        }
        false
    }

    /// Whether fault `id` fired.
    pub fn fired(&self, id: u64) -> bool {
        self.inner.state().fired.contains_key(&id)
    }

    /// When the last stall or delay injected so far is over.
    pub fn faults_end(&self) -> Option<Instant> {
        self.inner.state().faults_end
    }

    /// Everything so far.
    pub fn report(&self) -> Report {
        let state = self.inner.state();
        let mut report = state.report.clone();
        report.connections = state.next_conn;
        report
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        tokio::spawn(serve_connection(client, inner.clone(), stop.child_token()));
    }
}

async fn serve_connection(client: TcpStream, inner: Arc<Inner>, kill: CancellationToken) {
    let Ok(server) = TcpStream::connect(inner.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let id = {
        let mut state = inner.state();
        state.next_conn += 1;
        let id = state.next_conn;
        let handshake = state
            .armed
            .iter()
            .position(|a| matches!(a.fault.place, Place::Handshake { .. }));
        let claimed = handshake.map(|i| state.armed.remove(i));
        state.conns.insert(
            id,
            Conn {
                bytes: [0, 0],
                answer: 0,
                client_writes: 0,
                last_dir: None,
                last_data: Instant::now(),
                claimed,
                dead: false,
                busy_until: None,
                watch: None,
                delay: None,
                tx: [up_tx.clone(), down_tx.clone()],
            },
        );
        id
    };
    let reset = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let link = Link {
        id,
        inner: inner.clone(),
        kill,
        reset,
    };
    tokio::join!(
        link.read(Dir::Up, client_read, up_tx),
        link.read(Dir::Down, server_read, down_tx),
        link.write(server_write, up_rx),
        link.write(client_write, down_rx),
    );
    let mut state = inner.state();
    if let Some(conn) = state.conns.remove(&id)
        && let Some(armed) = conn.claimed
    {
        // The connection ended before its handshake reached the offset: the fault waits for
        // the next one.
        state.armed.insert(0, armed);
    }
}

/// The tasks of one proxied connection.
struct Link {
    id: u64,
    inner: Arc<Inner>,
    kill: CancellationToken,
    reset: Arc<AtomicBool>,
}

impl Link {
    fn end(&self, reset: bool) {
        if reset {
            self.reset.store(true, Ordering::SeqCst);
        }
        self.kill.cancel();
    }

    /// Sets `SO_LINGER` 0 when the connection is being reset, so closing sends RST.
    fn linger(&self, stream: &TcpStream) -> bool {
        let reset = self.reset.load(Ordering::SeqCst);
        if reset {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
        reset
    }

    async fn read(&self, dir: Dir, mut from: OwnedReadHalf, tx: mpsc::UnboundedSender<Segment>) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = tokio::select! {
                () = self.kill.cancelled() => break,
                read = from.read(&mut buf) => read,
            };
            let n = match read {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Segment::Eof);
                    break;
                }
                Ok(n) => n,
            };
            let now = Instant::now();
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            match self.inner.on_chunk(self.id, dir, n, now) {
                Action::Forward => {
                    let _ = tx.send(Segment::Data(chunk));
                }
                Action::Fire { split, fault } => {
                    if split > 0 {
                        let _ = tx.send(Segment::Data(chunk.slice(..split)));
                    }
                    match fault.kind {
                        Kind::Reset => {
                            let _ = tx.send(Segment::End { reset: true });
                        }
                        Kind::Close | Kind::Truncate => {
                            let _ = tx.send(Segment::End { reset: false });
                        }
                        Kind::Stall { duration, .. } => {
                            let _ = tx.send(Segment::Hold(now + duration));
                            let _ = tx.send(Segment::Data(chunk.slice(split..)));
                        }
                        Kind::Delay { .. } => {
                            let _ = tx.send(Segment::Data(chunk.slice(split..)));
                        }
                    }
                }
            }
        }
        self.linger(from.as_ref());
    }

    async fn write(&self, mut to: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Segment>) {
        loop {
            let segment = tokio::select! {
                () = self.kill.cancelled() => break,
                segment = rx.recv() => segment,
            };
            let Some(segment) = segment else { break };
            match segment {
                Segment::Data(bytes) => {
                    if let Some(latency) = self.inner.delay(self.id) {
                        tokio::select! {
                            () = self.kill.cancelled() => break,
                            () = tokio::time::sleep(latency) => {}
                        }
                    }
                    let written = tokio::select! {
                        () = self.kill.cancelled() => break,
                        written = to.write_all(&bytes) => written,
                    };
                    if written.is_err() {
                        self.end(false);
                        break;
                    }
                }
                Segment::Hold(until) => {
                    tokio::select! {
                        () = self.kill.cancelled() => break,
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                }
                Segment::Eof => {
                    let _ = to.shutdown().await;
                    break;
                }
                Segment::End { reset } => {
                    self.end(reset);
                    break;
                }
            }
        }
        if self.linger(to.as_ref()) {
            // Dropping a write half shuts it down (FIN) first; a reset must be the first
            // thing the peer hears, so the socket closes with the read half instead.
            to.forget();
        }
    }
}
