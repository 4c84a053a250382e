//! Private Dovecot IMAP server instances for integration tests and demos.
//!
//! This file owns everything needed to run a throw-away (or, for demos, a
//! persistent) Dovecot 2.3 server on loopback: TLS material, configuration,
//! the supervised `dovecot -F` process, passwd-file users, and direct Maildir
//! seeding that bypasses IMAP so thousands of messages can be loaded quickly.
//!
//! It depends only on `std` and `tempfile`, and refers to no `super::` or
//! `crate::` items, so it can be included both from `tests/common/mod.rs` and
//! from an example via `#[path = "../tests/common/dovecot.rs"] mod dovecot;`.
//!
//! Layout of an instance directory ([`Dovecot::dir`]):
//!
//! | path | contents |
//! | --- | --- |
//! | `dovecot.conf` | generated configuration |
//! | `dovecot.log` | Dovecot's log plus the master's stdout/stderr |
//! | `run/` | Dovecot `base_dir` (sockets, `master.pid`) |
//! | `state/` | Dovecot `state_dir` |
//! | `certs/` | `ca.pem`, `server.pem`, `server.key` |
//! | `passwd/<user>` | one passwd-file per user, `{PLAIN}` password |
//! | `home/<user>/Maildir/` | the user's mail (Maildir++, INBOX at the root) |
//! | `rawlog/<user>/` | per-session `*.in` / `*.out` traffic when rawlog is on |
//!
//! Facts about Dovecot 2.3.19 this module relies on (verified on Debian 12):
//!
//! * Mail processes refuse uid 0 (`userdb returned 0 as uid`), so when the
//!   tests run as root the mail files belong to the `dovecot` system user and
//!   every file or directory this module creates for a user is `chown`ed.
//! * With `separator = /` in the inbox namespace, Maildir++ still uses `.` on
//!   disk: `Archive/2024` lives in `Maildir/.Archive.2024`, and names are
//!   stored in modified UTF-7 (`Entwürfe` is `Maildir/.Entw&APw-rfe`). A `.`
//!   inside a mailbox name is rejected by Dovecot.
//! * The `subscriptions` file is `V\t2\n\n` followed by one mailbox per line,
//!   modified UTF-7, with TAB as the hierarchy separator.
//! * `rawlog_dir` inside `protocol imap { }` records post-login traffic only
//!   (not the LOGIN command), only if the directory already exists, and
//!   prefixes every line with a `<unix secs>.<micros> ` timestamp.
//! * Instances run with Dovecot's own authentication defaults unless a test
//!   opts out ([`DovecotOptions::auth_penalty`],
//!   [`DovecotOptions::auth_failure_delay_secs`]):
//!   - `auth_failure_delay = 2 secs`: a failed login is answered 1–2.5 s
//!     after it was sent (Dovecot counts the delay in whole seconds and
//!     flushes failures on a 500 ms timer; measured 1.5–2.2 s). With
//!     `0 secs` they take 0–0.5 s.
//!   - The per-IP auth penalty: every failed login from an address raises the
//!     address's level by one (repeating the same user and password does
//!     not), and every later authentication from that address, for any user
//!     and even with the right password, first waits 4, 8, then at most
//!     15 s. A successful login from the address lowers it to zero, but the
//!     next failure sets it one above the level that attempt itself waited
//!     at, so a guesser who keeps trying still climbs to 15 s; it lapses 15 s
//!     after the last failure (`auth-penalty.c`). Logins that
//!     were already waiting when a failure was counted do not see it, so
//!     concurrent failures raise the level less than sequential ones.
//!   - With the client in `login_trusted_networks`, an
//!     `ID ("x-originating-ip" "<addr>")` before LOGIN makes Dovecot log and
//!     penalise `<addr>` instead of the connecting address.
//!   - The penalty is switched off by making anvil's `anvil-auth-penalty`
//!     socket mode 0: the auth process then runs without penalties and logs
//!     nothing about it.
//! * A passwd-file is re-checked (mtime and size) at most once per second,
//!   and a missing per-user file is never cached, hence one file per user.
//! * Logged-in sessions only see mailbox folders created on disk after the
//!   mailbox list index is refreshed, e.g. by `doveadm mailbox list -u`;
//!   new sessions always rescan. New messages are seen by everyone.
//! * `doveadm who -1` prints a header line, then one line per connection:
//!   `<user> <proto> <pid> <ip>`.
//! * INTERNALDATE of a Maildir message is the file's mtime, and new messages
//!   receive UIDs in the order of the timestamp at the start of their file
//!   names, so [`Dovecot::deliver`] uses the internal date for both.
//! * After login Dovecot advertises IDLE, CONDSTORE, QRESYNC, MOVE, SORT,
//!   SPECIAL-USE, UIDPLUS, LITERAL+, ENABLE, ID, ESEARCH (among others)
//!   without any `imap_capability` setting.
//! * Starting takes about 60 ms (plus about 80 ms once a week to make
//!   certificates); a graceful SIGTERM shutdown takes one second.
#![allow(dead_code)] // each includer (test binary or example) uses a subset

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How often the whole start (new ports, new config) is retried when another
/// process grabbed one of the chosen ports before Dovecot could bind it.
const START_ATTEMPTS: usize = 5;
/// How long to wait for the IMAP greeting after spawning Dovecot.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM-initiated shutdown may take before SIGKILL is used.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Versioned name prefix of the shared certificate cache in the temp dir.
const CERT_CACHE_PREFIX: &str = "imap-bridge-test-certs-v1";
/// Certificates are valid for this many days...
const CERT_VALID_DAYS: u32 = 10;
/// ...and a cached set is only reused within the week it was made in, so it
/// always has at least three days of validity left.
const CERT_CACHE_PERIOD_SECS: u64 = 7 * 24 * 60 * 60;
/// Longest `base_dir` for which Dovecot's unix socket paths (the longest is
/// `token-login/imap-urlauth` below `base_dir`) fit into `sun_path`.
const MAX_BASE_DIR_LEN: usize = 78;
/// Lines of Dovecot's log quoted in panic messages.
const LOG_TAIL_LINES: usize = 60;

/// Runs Dovecot in the foreground under a small `sh` supervisor. The
/// supervisor's stdin is a pipe whose only writer is the test process: when
/// that end closes (explicit stop, `Drop`, or the test process dying in any
/// way, even SIGKILL), the supervisor sends SIGTERM to Dovecot. The
/// supervisor itself exits with Dovecot's status when Dovecot exits on its
/// own (for example because a port was taken). `$0` is the dovecot binary,
/// `$1` the configuration file.
const SUPERVISOR_SCRIPT: &str = r#"exec 3<&0 </dev/null
"$0" -F -c "$1" 3<&- &
d=$!
(read _ <&3; kill -TERM "$d") 2>/dev/null &
w=$!
exec 3<&-
wait "$d"
s=$?
kill "$w" 2>/dev/null
wait "$w"
exit "$s""#;

/// Options for [`Dovecot::start_with`] and [`Dovecot::start_in`].
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// Record every IMAP session's post-login traffic under
    /// `rawlog/<user>/`; read it back with [`Dovecot::rawlog_in`].
    pub rawlog: bool,
    /// Dovecot's `mail_max_userip_connections` for IMAP (default 10, the same
    /// as Dovecot's own default).
    pub max_userip_connections: u32,
    /// Dovecot's `auth_failure_delay` in seconds (default 2, Dovecot's own
    /// default: a failed login is answered 1–2.5 s after it was sent).
    /// Opt out (0) only in a test whose purpose is not authentication and
    /// whose volume of deliberate failed logins makes the default
    /// impractical, with a comment there saying why.
    pub auth_failure_delay_secs: u32,
    /// Dovecot's per-IP auth penalty (default on, as in Dovecot): after failed
    /// logins from one address, every later authentication from it, for any
    /// user and even with the right password, first waits 4, 8, then 15 s,
    /// until a login from it succeeds or 15 s pass without a failure (see the
    /// module documentation). Every bridge connects from 127.0.0.1, so the
    /// failed logins sent through it delay every login it makes. Opt out
    /// (false) on the same terms as
    /// [`auth_failure_delay_secs`](Self::auth_failure_delay_secs).
    pub auth_penalty: bool,
    /// Configuration text appended verbatim at the end of `dovecot.conf`;
    /// later top-level settings override earlier ones.
    pub extra_config: String,
    /// Set `maildir_very_dirty_syncs = yes`: Dovecot then assumes it is the
    /// only one changing the Maildir and rescans `cur/` only when its mtime
    /// changes unexpectedly or a message file cannot be found.
    pub very_dirty_syncs: bool,
    /// OAuth 2.0 logins: with an RFC 7662 introspection URL (see
    /// `tests/common/oauth.rs`), Dovecot offers `AUTH=XOAUTH2` and
    /// `AUTH=OAUTHBEARER` and checks their access tokens with an `oauth2`
    /// passdb that asks that URL; passwords keep working beside them. Users of
    /// tokens need a home: [`Dovecot::add_token_user`].
    pub oauth2_introspection: Option<String>,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        Self {
            rawlog: false,
            max_userip_connections: 10,
            auth_failure_delay_secs: 2,
            auth_penalty: true,
            extra_config: String::new(),
            very_dirty_syncs: false,
            oauth2_introspection: None,
        }
    }
}

/// A running private Dovecot instance listening on two loopback ports.
///
/// Dropping it stops Dovecot and, for instances made by [`Dovecot::start`] or
/// [`Dovecot::start_with`], deletes the instance directory. If the test
/// process dies without running `Drop` (a `static`, `process::exit`, a
/// signal), a small supervisor process notices and stops Dovecot with
/// SIGTERM, so no Dovecot outlives the test process.
pub struct Dovecot {
    dir: PathBuf,
    conf: PathBuf,
    log_path: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    rawlog: bool,
    owner: MailOwner,
    host: String,
    process: Option<Supervisor>,
    // Declared last so it is deleted only after the process has stopped.
    temp: Option<TempDir>,
}

impl Dovecot {
    /// Starts an instance with [`DovecotOptions::default`] in a fresh
    /// temporary directory. Panics (with Dovecot's log) if it cannot start.
    pub fn start() -> Self {
        Self::start_with(DovecotOptions::default())
    }

    /// Starts an instance with `opts` in a fresh temporary directory that is
    /// deleted on drop. Panics (with Dovecot's log) if it cannot start.
    pub fn start_with(opts: DovecotOptions) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("imap-bridge-dovecot-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for Dovecot: {e}"));
        let dir = temp.path().to_path_buf();
        Self::launch(dir, Some(temp), &opts)
    }

    /// Starts an instance in the caller-chosen directory `dir`, which is
    /// created if missing and kept (with users and mail) after drop, so a
    /// later `start_in` on the same directory sees the same data. The
    /// configuration, certificates and ports are renewed on every start.
    /// `dir` must be short enough for Dovecot's unix sockets (at most 74
    /// bytes once made absolute).
    pub fn start_in(dir: PathBuf, opts: DovecotOptions) -> Self {
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create Dovecot directory {}: {e}", dir.display()));
        let dir = fs::canonicalize(&dir)
            .unwrap_or_else(|e| panic!("cannot resolve Dovecot directory {}: {e}", dir.display()));
        Self::launch(dir, None, &opts)
    }

    /// The instance directory (see the module documentation for its layout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Address of the plain IMAP listener, which also offers STARTTLS and
    /// accepts plaintext LOGIN / AUTHENTICATE PLAIN.
    pub fn imap_addr(&self) -> SocketAddr {
        loopback(self.imap_port)
    }

    /// Address of the implicit-TLS IMAP listener (certificate for
    /// `localhost` and `127.0.0.1`, issued by [`Dovecot::ca_cert_path`]).
    pub fn imaps_addr(&self) -> SocketAddr {
        loopback(self.imaps_port)
    }

    /// PEM file of the CA that issued the server certificate; trust it (and
    /// only it) in TLS clients under test.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("certs").join("ca.pem")
    }

    /// The environment that points an `imap-bridge` process at this server over implicit
    /// TLS, verified against [`ca_cert_path`](Self::ca_cert_path).
    pub fn bridge_env(&self) -> [(&'static str, String); 4] {
        [
            ("IMAP_BRIDGE_IMAP_HOST", "localhost".into()),
            (
                "IMAP_BRIDGE_IMAP_PORT",
                self.imaps_addr().port().to_string(),
            ),
            ("IMAP_BRIDGE_IMAP_SECURITY", "tls".into()),
            (
                "IMAP_BRIDGE_IMAP_CA_FILE",
                self.ca_cert_path().display().to_string(),
            ),
        ]
    }

    /// Dovecot's whole log so far (including the master's stdout/stderr).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Adds `user` with `password` (or replaces the password of an existing
    /// user) and creates the user's empty INBOX. Each user has a one-line
    /// passwd-file `passwd/<user>` (`user:{PLAIN}password::::::`), written
    /// atomically, so a new user can log in immediately, even while Dovecot
    /// runs. Dovecot re-checks a passwd-file at most once per second, so
    /// replacing an existing user's password on a running instance waits
    /// for the next full second (at most 1 s) before returning.
    pub fn add_user(&self, user: &str, password: &str) {
        // Dovecot's default auth_username_chars; also keeps the path safe.
        let valid_char = |c: char| c.is_ascii_alphanumeric() || ".-_@".contains(c);
        assert!(
            !user.is_empty() && user.chars().all(valid_char) && !user.starts_with('.'),
            "invalid user name {user:?}: use ASCII letters, digits and . - _ @ (not first: .)"
        );
        assert!(
            !password.contains([':', '\n', '\r', '\0']),
            "passwords in a passwd-file cannot contain ':', NUL or line breaks"
        );
        let path = self.dir.join("passwd").join(user);
        let previous_mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();
        let tmp = self.dir.join(format!("passwd.{user}.tmp"));
        fs::write(&tmp, format!("{user}:{{PLAIN}}{password}::::::\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        set_mode(&tmp, 0o644);
        // Dovecot notices passwd-file changes by mtime (in seconds) and size.
        let mut mtime = SystemTime::now();
        if let Some(previous) = previous_mtime {
            mtime = mtime.max(previous + Duration::from_secs(1));
        }
        set_mtime(&tmp, mtime);
        fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
        if previous_mtime.is_some() && self.process.is_some() {
            // Any lookup from now on runs in a later second and re-checks.
            let into_second = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            thread::sleep(
                Duration::from_nanos(u64::from(1_000_000_000 - into_second))
                    + Duration::from_millis(5),
            );
        }
        self.create_mailbox(user, "INBOX");
        if self.rawlog {
            self.make_dirs(&self.dir.join("rawlog").join(user));
        }
    }

    /// Gives `user`, who logs in with OAuth 2.0 access tokens only (see
    /// [`DovecotOptions::oauth2_introspection`]), a home and an empty INBOX.
    pub fn add_token_user(&self, user: &str) {
        self.create_mailbox(user, "INBOX");
        if self.rawlog {
            self.make_dirs(&self.dir.join("rawlog").join(user));
        }
    }

    /// Creates the Maildir folder of mailbox `name` (UTF-8, hierarchy
    /// separator `/`, `INBOX` being the Maildir root) for `user` and
    /// subscribes it. Like IMAP CREATE on Dovecot's Maildir++ layout, only
    /// the named folder is created: missing parents show up as `\Noselect`.
    /// Does nothing for parts that already exist. Panics on names Dovecot
    /// cannot store (empty components, or containing `.`).
    ///
    /// IMAP sessions that are already logged in only see a new folder after
    /// Dovecot's mailbox list index is refreshed, so when the user has such
    /// an index this runs `doveadm mailbox list` for them (about 20 ms).
    pub fn create_mailbox(&self, user: &str, name: &str) {
        let folder = self.mailbox_dir(user, name);
        let existed = folder.join("cur").is_dir();
        for sub in ["cur", "new", "tmp"] {
            self.make_dirs(&folder.join(sub));
        }
        if is_inbox(name) || existed {
            return;
        }
        let marker = folder.join("maildirfolder");
        File::create(&marker).unwrap_or_else(|e| panic!("cannot create {}: {e}", marker.display()));
        self.own(&marker);
        self.subscribe(user, name);
        let list_index = self
            .mailbox_dir(user, "INBOX")
            .join("dovecot.list.index.log");
        if self.process.is_some() && list_index.exists() {
            let out = self.doveadm(&["mailbox", "list", "-u", user]);
            assert!(
                out.status.success(),
                "doveadm mailbox list -u {user} failed: {}",
                describe_output(&out)
            );
        }
    }

    /// Writes one message straight into `user`'s Maildir folder for
    /// `mailbox` (created if missing) and returns the message file's path.
    ///
    /// `flags` are Maildir info flags in any order: `D` (\Draft), `F`
    /// (\Flagged), `P` (passed/forwarded), `R` (\Answered), `S` (\Seen), `T`
    /// (\Deleted). With no flags the message goes to `new/`, otherwise to
    /// `cur/` with a `:2,<flags>` suffix. `internal_date`
    /// (default: now) becomes the file's mtime, which Dovecot reports as
    /// INTERNALDATE; UIDs are assigned in internal-date order among messages
    /// Dovecot has not seen yet.
    pub fn deliver(
        &self,
        user: &str,
        mailbox: &str,
        raw: &[u8],
        flags: &str,
        internal_date: Option<SystemTime>,
    ) -> PathBuf {
        let folder = self.mailbox_dir(user, mailbox);
        if !folder.join("tmp").is_dir() {
            self.create_mailbox(user, mailbox);
        }
        let flags = maildir_flags(flags);
        self.write_message(
            &folder,
            raw,
            &flags,
            internal_date.unwrap_or_else(SystemTime::now),
        )
    }

    /// Bulk-seeds `messages` (raw RFC 5322 bytes, flags none) into `user`'s
    /// `mailbox`, creating it if missing. Message `i` of `n` gets the internal
    /// date `now - (n - i)` seconds, so arrival order, UID order and
    /// INTERNALDATE order all match the iteration order. Writes thousands of
    /// messages per second; the iterator is collected first to know `n`.
    pub fn deliver_many(
        &self,
        user: &str,
        mailbox: &str,
        messages: impl IntoIterator<Item = Vec<u8>>,
    ) {
        let messages: Vec<Vec<u8>> = messages.into_iter().collect();
        let folder = self.mailbox_dir(user, mailbox);
        if !folder.join("tmp").is_dir() {
            self.create_mailbox(user, mailbox);
        }
        let count = u64::try_from(messages.len()).expect("message count fits in u64");
        let first = SystemTime::now() - Duration::from_secs(count);
        for (offset, raw) in (0u64..).zip(&messages) {
            self.write_message(&folder, raw, "", first + Duration::from_secs(offset));
        }
    }

    /// Runs `doveadm -c <this instance's config> <args...>` and returns its
    /// output without checking the exit status.
    pub fn doveadm(&self, args: &[&str]) -> Output {
        Command::new(find_binary("doveadm"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run doveadm: {e}"))
    }

    /// Disconnects all of `user`'s IMAP sessions (`doveadm kick`); a user
    /// without sessions is not an error. Dovecot signals the session
    /// processes and returns at once; use [`Dovecot::wait_for_connections`]
    /// to wait until they are gone.
    pub fn kick(&self, user: &str) {
        let out = self.doveadm(&["kick", user]);
        assert!(
            out.status.success()
                || String::from_utf8_lossy(&out.stdout).contains("no users kicked"),
            "doveadm kick {user} failed: {}",
            describe_output(&out)
        );
    }

    /// Number of `user`'s IMAP connections that are logged in right now
    /// (each connection counts once), according to `doveadm who -1`.
    pub fn connections(&self, user: &str) -> usize {
        let out = self.doveadm(&["who", "-1"]);
        assert!(
            out.status.success(),
            "doveadm who failed: {}",
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|line| {
                let mut fields = line.split_whitespace();
                fields.next() == Some(user) && fields.next() == Some("imap")
            })
            .count()
    }

    /// Polls [`Dovecot::connections`] until it equals `expected`; panics with
    /// the last count and Dovecot's log tail after `timeout`.
    pub fn wait_for_connections(&self, user: &str, expected: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.connections(user);
            if now == expected {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{user} has {now} IMAP connection(s), expected {expected} within {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// All client-to-server bytes of all of `user`'s IMAP sessions so far,
    /// with Dovecot's per-line timestamps removed, concatenated in session
    /// order (start second, then process id), lossily decoded as UTF-8.
    /// Dovecot only records traffic after login, so LOGIN itself is absent.
    /// Requires [`DovecotOptions::rawlog`].
    pub fn rawlog_in(&self, user: &str) -> String {
        self.rawlog_sessions_in(user).concat()
    }

    /// The client-to-server bytes of each of `user`'s IMAP sessions so far,
    /// one string per session, in the order of [`Dovecot::rawlog_in`].
    /// Requires [`DovecotOptions::rawlog`].
    pub fn rawlog_sessions_in(&self, user: &str) -> Vec<String> {
        self.rawlog_files_in(user)
            .iter()
            .map(|file| {
                let data = fs::read(file)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
                let mut bytes = Vec::new();
                for line in data.split_inclusive(|&b| b == b'\n') {
                    bytes.extend_from_slice(strip_rawlog_timestamp(line));
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect()
    }

    /// Every client-to-server line of `user`'s IMAP sessions so far with the
    /// time Dovecot read it (rawlog's timestamp), session by session as in
    /// [`Dovecot::rawlog_in`]. Requires [`DovecotOptions::rawlog`].
    pub fn rawlog_timed_lines_in(&self, user: &str) -> Vec<(SystemTime, String)> {
        let mut lines = Vec::new();
        for file in self.rawlog_files_in(user) {
            let data =
                fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            for line in data.split_inclusive(|&b| b == b'\n') {
                let text = strip_rawlog_timestamp(line);
                let stamp = std::str::from_utf8(&line[..line.len() - text.len()])
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok());
                if let Some(secs) = stamp {
                    lines.push((
                        UNIX_EPOCH + Duration::from_secs_f64(secs),
                        String::from_utf8_lossy(text).into_owned(),
                    ));
                }
            }
        }
        lines
    }

    /// The `*.in` rawlog files of `user`, in session order.
    fn rawlog_files_in(&self, user: &str) -> Vec<PathBuf> {
        assert!(
            self.rawlog,
            "rawlogs need DovecotOptions {{ rawlog: true, .. }}"
        );
        let dir = self.dir.join("rawlog").join(user);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot read {} (was {user} added with add_user?): {e}",
                    dir.display()
                )
            })
            .map(|entry| entry.expect("readable rawlog directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "in"))
            .collect();
        files.sort();
        files
    }

    /// Puts logins from `ip` under the auth penalty's `level` (1 to 4; the next login from
    /// there first waits 4, 8, 15 or 15 s), the state `level` failed logins in a row from it
    /// leave, without spending the 2 to 18 s they take. Writes to anvil's
    /// `anvil-auth-penalty` socket as Dovecot's auth process does (`PENALTY-INC`), then reads
    /// the level back; panics if that fails, e.g. with [`DovecotOptions::auth_penalty`] off.
    pub fn set_auth_penalty(&self, ip: &str, level: u32) {
        let path = self.dir.join("run").join("anvil-auth-penalty");
        let mut stream = UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        // Any non-zero checksum: it names the failed user and password, unknown to anvil.
        write!(
            stream,
            "VERSION\tanvil\t1\t0\nPENALTY-INC\t{ip}\t1\t{level}\nPENALTY-GET\t{ip}\n"
        )
        .unwrap_or_else(|e| panic!("cannot write to {}: {e}", path.display()));
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("cannot read from {}: {e}", path.display()));
        assert_eq!(
            reply.split_whitespace().next(),
            Some(level.to_string().as_str()),
            "anvil's penalty for {ip} after setting it to {level}: {reply:?}\n{}",
            self.log_tail()
        );
    }

    /// Stops Dovecot now (idempotent): SIGTERM, then SIGKILL for the whole
    /// process group if it has not exited within 5 s. The directory stays
    /// until the value is dropped.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(true);
        }
    }

    fn launch(dir: PathBuf, temp: Option<TempDir>, opts: &DovecotOptions) -> Self {
        let base_dir = dir.join("run");
        assert!(
            base_dir.as_os_str().len() <= MAX_BASE_DIR_LEN,
            "Dovecot directory {} is too long for unix socket paths; use a path of at most {} bytes",
            dir.display(),
            MAX_BASE_DIR_LEN - "/run".len()
        );
        // Dovecot's unprivileged processes must be able to reach their files.
        set_mode(&dir, 0o755);
        let owner = MailOwner::detect(&dir);
        let mut dovecot = Self {
            conf: dir.join("dovecot.conf"),
            log_path: dir.join("dovecot.log"),
            imap_port: 0,
            imaps_port: 0,
            rawlog: opts.rawlog,
            owner,
            host: maildir_host_name(),
            process: None,
            temp,
            dir,
        };
        for sub in ["run", "state", "certs", "passwd"] {
            let path = dovecot.dir.join(sub);
            fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        // The auth process runs unprivileged and reads the passwd-files.
        set_mode(&dovecot.dir.join("passwd"), 0o755);
        dovecot.make_dirs(&dovecot.dir.join("home"));
        if opts.rawlog {
            // Users from an earlier run of a persistent directory need theirs too.
            let users = fs::read_dir(dovecot.dir.join("passwd")).expect("read passwd directory");
            for entry in users {
                let user = entry.expect("readable passwd directory entry").file_name();
                dovecot.make_dirs(&dovecot.dir.join("rawlog").join(user));
            }
            dovecot.make_dirs(&dovecot.dir.join("rawlog"));
        }
        install_certificates(&dovecot.dir.join("certs"));
        if let Some(url) = &opts.oauth2_introspection {
            // Verified with Dovecot 2.3.19: RFC 7662 introspection by POST, the user name and
            // activity taken from its JSON, no separate token-info request.
            let oauth2 = format!(
                "introspection_mode = post\nintrospection_url = {url}\n\
                 username_attribute = username\nactive_attribute = active\n\
                 active_value = true\ntokeninfo_url =\n"
            );
            let path = dovecot.dir.join("oauth2.conf");
            fs::write(&path, oauth2)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            set_mode(&path, 0o644);
        }
        for attempt in 1..=START_ATTEMPTS {
            let (imap_port, imaps_port) = free_port_pair();
            dovecot.imap_port = imap_port;
            dovecot.imaps_port = imaps_port;
            let greeting = format!("imap-bridge test Dovecot {}.{attempt}", unique_token());
            let conf = dovecot.config_text(opts, &greeting);
            fs::write(&dovecot.conf, conf)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", dovecot.conf.display()));
            // A stale pid file from an earlier run in a persistent directory
            // would make Dovecot refuse to start if its pid got reused.
            let _ = fs::remove_file(base_dir.join("master.pid"));
            let log_start = fs::metadata(&dovecot.log_path)
                .map(|m| m.len())
                .unwrap_or(0);
            let mut process = Supervisor::spawn(&dovecot.conf, &dovecot.log_path);
            match process.wait_ready(dovecot.imap_addr(), &greeting) {
                Ok(()) => {
                    dovecot.process = Some(process);
                    return dovecot;
                }
                Err(ReadyError::Exited(status)) => {
                    let log = dovecot.log_from(log_start);
                    if attempt < START_ATTEMPTS && log.contains("Address already in use") {
                        continue;
                    }
                    panic!("Dovecot exited during startup ({status}), attempt {attempt}:\n{log}");
                }
                Err(ReadyError::Timeout) => {
                    process.stop(false);
                    panic!(
                        "Dovecot did not greet on {} within {READY_TIMEOUT:?}:\n{}",
                        dovecot.imap_addr(),
                        dovecot.log_from(log_start)
                    );
                }
            }
        }
        unreachable!("the last start attempt either returns or panics")
    }

    fn config_text(&self, opts: &DovecotOptions, greeting: &str) -> String {
        let dir = self.dir.display();
        let log = self.log_path.display();
        let MailOwner {
            uid,
            gid,
            ref internal_user,
            ref internal_group,
            ref login_user,
            privileged,
        } = self.owner;
        // Without root, Dovecot cannot chroot its login and anvil processes.
        let chroot = if privileged { "" } else { "  chroot =\n" };
        let very_dirty = if opts.very_dirty_syncs { "yes" } else { "no" };
        let rawlog = if opts.rawlog {
            format!("  rawlog_dir = {dir}/rawlog/%u\n")
        } else {
            String::new()
        };
        // An auth process that cannot reach this socket runs without the
        // per-IP penalty (and logs nothing about it).
        let penalty = if opts.auth_penalty {
            ""
        } else {
            "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n"
        };
        let mut mailboxes = String::new();
        for name in ["Drafts", "Sent", "Trash", "Junk", "Archive"] {
            write!(
                mailboxes,
                "  mailbox {name} {{\n    special_use = \\{name}\n    auto = subscribe\n  }}\n"
            )
            .expect("write to String");
        }
        format!(
            r#"# Generated by tests/common/dovecot.rs for one private test instance.
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {log}
info_log_path = {log}
login_greeting = {greeting}
listen = 127.0.0.1
protocols = imap
ssl = yes
ssl_cert = <{dir}/certs/server.pem
ssl_key = <{dir}/certs/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechanisms}
auth_failure_delay = {delay} secs
auth_verbose = yes
first_valid_uid = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
default_process_limit = 1000
default_client_limit = 4000
mail_location = maildir:~/Maildir
mail_fsync = never
maildir_very_dirty_syncs = {very_dirty}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd/%u
{passwd_mechanisms}}}
{oauth_passdb}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
{chroot}}}
service anvil {{
{penalty}{chroot}}}
protocol imap {{
  mail_max_userip_connections = {max_conn}
{rawlog}}}
{extra}
"#,
            delay = opts.auth_failure_delay_secs,
            oauth_mechanisms = if opts.oauth2_introspection.is_some() {
                " xoauth2 oauthbearer"
            } else {
                ""
            },
            passwd_mechanisms = if opts.oauth2_introspection.is_some() {
                "  mechanisms = plain login\n"
            } else {
                ""
            },
            oauth_passdb = match &opts.oauth2_introspection {
                Some(_) => format!(
                    "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {dir}/oauth2.conf\n}}\n"
                ),
                None => String::new(),
            },
            imap = self.imap_port,
            imaps = self.imaps_port,
            max_conn = opts.max_userip_connections,
            extra = opts.extra_config,
        )
    }

    /// Maildir folder of `mailbox` for `user` (INBOX is the Maildir root).
    fn mailbox_dir(&self, user: &str, mailbox: &str) -> PathBuf {
        let root = self.dir.join("home").join(user).join("Maildir");
        if is_inbox(mailbox) {
            return root;
        }
        assert!(
            !mailbox.split('/').any(str::is_empty),
            "mailbox name {mailbox:?} has an empty hierarchy level"
        );
        assert!(
            !mailbox.contains('.'),
            "mailbox name {mailbox:?} contains '.', which Dovecot's Maildir++ layout rejects"
        );
        root.join(format!(".{}", mutf7_encode(mailbox).replace('/', ".")))
    }

    fn subscribe(&self, user: &str, mailbox: &str) {
        let path = self
            .dir
            .join("home")
            .join(user)
            .join("Maildir")
            .join("subscriptions");
        let entry = mutf7_encode(mailbox).replace('/', "\t");
        let mut text = fs::read_to_string(&path).unwrap_or_else(|_| String::from("V\t2\n\n"));
        if text.lines().any(|line| line == entry) {
            return;
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&entry);
        text.push('\n');
        let tmp = path.with_file_name("subscriptions.harness-tmp");
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        self.own(&tmp);
        fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
    }

    fn write_message(&self, folder: &Path, raw: &[u8], flags: &str, date: SystemTime) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let since_epoch = date
            .duration_since(UNIX_EPOCH)
            .expect("internal dates before 1970 are not supported");
        let name = format!(
            "{}.M{}P{}Q{}.{},S={}",
            since_epoch.as_secs(),
            since_epoch.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            self.host,
            raw.len()
        );
        let tmp = folder.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        file.write_all(raw)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        file.set_modified(date)
            .unwrap_or_else(|e| panic!("cannot set mtime of {}: {e}", tmp.display()));
        drop(file);
        self.own(&tmp);
        let target = if flags.is_empty() {
            folder.join("new").join(name)
        } else {
            folder.join("cur").join(format!("{name}:2,{flags}"))
        };
        fs::rename(&tmp, &target)
            .unwrap_or_else(|e| panic!("cannot move message to {}: {e}", target.display()));
        target
    }

    /// Creates `path` and any missing parents, giving new directories to the
    /// mail owner.
    fn make_dirs(&self, path: &Path) {
        let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
        for dir in missing.into_iter().rev() {
            match fs::create_dir(dir) {
                Ok(()) => {
                    set_mode(dir, 0o755);
                    self.own(dir);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", dir.display()),
            }
        }
    }

    /// Gives `path` to the mail owner (only needed when running as root).
    fn own(&self, path: &Path) {
        if self.owner.privileged {
            std::os::unix::fs::chown(path, Some(self.owner.uid), Some(self.owner.gid))
                .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
        }
    }

    fn log_from(&self, offset: u64) -> String {
        let log = fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log_path.display())
    }
}

impl Drop for Dovecot {
    /// Stops Dovecot: gracefully for a persistent [`Dovecot::start_in`]
    /// directory, and with an immediate SIGKILL of the process group for a
    /// temporary one, whose data is deleted anyway (saves the second a
    /// graceful Dovecot shutdown takes in every test).
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(self.temp.is_none());
        }
    }
}

/// Who owns the mail files and which users Dovecot's own processes run as.
struct MailOwner {
    uid: u32,
    gid: u32,
    internal_user: String,
    internal_group: String,
    login_user: String,
    /// Running as root: files must be chowned to `uid`/`gid`.
    privileged: bool,
}

impl MailOwner {
    fn detect(dir: &Path) -> Self {
        let probe = tempfile::tempfile_in(dir)
            .unwrap_or_else(|e| panic!("cannot create a file in {}: {e}", dir.display()));
        let meta = probe.metadata().expect("metadata of an open file");
        if meta.uid() == 0 {
            let missing =
                "system user or group 'dovecot' is missing; run scripts/setup to install Dovecot";
            let id_of = |file: &str| {
                account_entries(file)
                    .into_iter()
                    .find(|(name, _)| name == "dovecot")
                    .map(|(_, id)| id)
                    .expect(missing)
            };
            let (uid, gid) = (id_of("/etc/passwd"), id_of("/etc/group"));
            Self {
                uid,
                gid,
                internal_user: "dovecot".into(),
                internal_group: "dovecot".into(),
                login_user: "dovenull".into(),
                privileged: true,
            }
        } else {
            let name = account_entries("/etc/passwd")
                .into_iter()
                .find(|(_, uid)| *uid == meta.uid())
                .map(|(name, _)| name)
                .unwrap_or_else(|| panic!("uid {} has no entry in /etc/passwd", meta.uid()));
            let group = account_entries("/etc/group")
                .into_iter()
                .find(|(_, gid)| *gid == meta.gid())
                .map(|(name, _)| name)
                .unwrap_or_else(|| panic!("gid {} has no entry in /etc/group", meta.gid()));
            Self {
                uid: meta.uid(),
                gid: meta.gid(),
                internal_user: name.clone(),
                internal_group: group,
                login_user: name,
                privileged: false,
            }
        }
    }
}

/// The `sh` supervisor process and the pipe that keeps Dovecot alive.
struct Supervisor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

enum ReadyError {
    Exited(std::process::ExitStatus),
    Timeout,
}

impl Supervisor {
    fn spawn(conf: &Path, log_path: &Path) -> Self {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("duplicate log file handle");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR_SCRIPT)
            .arg(find_binary("dovecot"))
            .arg(conf)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn sh to run Dovecot: {e}"));
        let lifeline = child.stdin.take();
        Self { child, lifeline }
    }

    /// Waits until `addr` greets with `* OK` and our unique `greeting` (so a
    /// foreign server that won a port race is never mistaken for ours).
    fn wait_ready(&mut self, addr: SocketAddr, greeting: &str) -> Result<(), ReadyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("waitpid on the Dovecot supervisor")
            {
                return Err(ReadyError::Exited(status));
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("set read timeout");
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok()
                    && line.starts_with("* OK")
                    && line.contains(greeting)
                {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err(ReadyError::Timeout)
    }

    /// Stops Dovecot and reaps the supervisor. `graceful` sends SIGTERM and
    /// waits up to [`STOP_TIMEOUT`] (Dovecot 2.3 needs about one second to
    /// shut down) before falling back to SIGKILL; otherwise the whole process
    /// group is killed at once.
    fn stop(mut self, graceful: bool) {
        // Closing the lifeline makes the supervisor send SIGTERM to Dovecot.
        drop(self.lifeline.take());
        if graceful {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if self
                    .child
                    .try_wait()
                    .expect("waitpid on the Dovecot supervisor")
                    .is_some()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        // The supervisor is not reaped yet, so its pid still names the group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("sh")
            .args(["-c", "kill -s KILL -- \"$0\" 2>/dev/null", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// Puts `ca.pem`, `server.pem` and `server.key` into `dest`: copied from the
/// shared cache (per user and per week, in the system temp dir) when
/// possible, otherwise generated with the `openssl` CLI and then published to
/// the cache by an atomic rename (losing that race to another process is
/// fine, and so is a cache that cannot be written).
pub fn install_certificates(dest: &Path) {
    const FILES: [&str; 3] = ["ca.pem", "server.pem", "server.key"];
    let uid = fs::metadata(dest)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", dest.display()))
        .uid();
    let week = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / CERT_CACHE_PERIOD_SECS;
    let cache = std::env::temp_dir().join(format!("{CERT_CACHE_PREFIX}-u{uid}-w{week}"));
    if FILES
        .iter()
        .all(|file| fs::copy(cache.join(file), dest.join(file)).is_ok())
    {
        return;
    }
    let fresh = tempfile::Builder::new()
        .prefix(".imap-bridge-certs-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for certificates: {e}"));
    generate_certificates(fresh.path());
    for file in FILES {
        let (from, to) = (fresh.path().join(file), dest.join(file));
        fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
    }
    let _ = fs::rename(fresh.path(), &cache);
}

/// Creates a P-256 CA and a server certificate for `localhost` /
/// `127.0.0.1` signed by it, both valid for [`CERT_VALID_DAYS`], in `dir`.
fn generate_certificates(dir: &Path) {
    let days = CERT_VALID_DAYS.to_string();
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string();
    let curve = "ec_paramgen_curve:prime256v1";
    fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap_or_else(|e| panic!("cannot write the certificate extensions file: {e}"));
    #[rustfmt::skip]
    let steps: [&[&str]; 3] = [
        &["req", "-x509", "-newkey", "ec", "-pkeyopt", curve, "-nodes",
          "-keyout", "ca.key", "-out", "ca.pem", "-days", &days,
          "-subj", "/CN=imap-bridge test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        &["req", "-new", "-newkey", "ec", "-pkeyopt", curve, "-nodes",
          "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-set_serial", &serial, "-days", &days, "-extfile", "server.ext",
          "-out", "server.pem"],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl (run scripts/setup): {e}"));
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            describe_output(&out)
        );
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Two distinct currently free loopback ports.
fn free_port_pair() -> (u16, u16) {
    let bind = || TcpListener::bind(loopback(0)).expect("bind 127.0.0.1:0");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address of listener").port();
    (port(&a), port(&b))
}

/// A token unique across processes and calls.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Finds `name` on `PATH` or in the usual sbin directories (Debian keeps
/// `dovecot` in `/usr/sbin`, which is not on every user's `PATH`).
fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH or in /usr/sbin; run scripts/setup"))
}

/// `(name, id)` of every entry of `/etc/passwd` (uid) or `/etc/group` (gid).
fn account_entries(file: &str) -> Vec<(String, u32)> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name.to_owned(), id))
        })
        .collect()
}

/// This machine's host name in the form Maildir file names allow.
fn maildir_host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = raw.trim().replace('/', "\\057").replace(':', "\\072");
    if host.is_empty() {
        "localhost".into()
    } else {
        host
    }
}

fn is_inbox(mailbox: &str) -> bool {
    mailbox.eq_ignore_ascii_case("INBOX")
}

/// Validates Maildir info flags and puts them in the required ASCII order.
fn maildir_flags(flags: &str) -> String {
    let mut chars: Vec<char> = flags.chars().collect();
    if let Some(bad) = chars.iter().find(|c| !"DFPRST".contains(**c)) {
        panic!("unsupported Maildir flag {bad:?} in {flags:?}; use D, F, P, R, S or T");
    }
    chars.sort_unstable();
    chars.dedup();
    chars.into_iter().collect()
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn set_mtime(path: &Path, time: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .unwrap_or_else(|e| panic!("cannot set mtime of {}: {e}", path.display()));
}

/// Removes the `<secs>.<micros> ` prefix Dovecot's rawlog puts on each line.
pub fn strip_rawlog_timestamp(line: &[u8]) -> &[u8] {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return line;
    };
    let stamp = &line[..space];
    let is_stamp = stamp.split(|&b| b == b'.').count() == 2
        && stamp.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && !stamp.starts_with(b".")
        && !stamp.ends_with(b".");
    if is_stamp { &line[space + 1..] } else { line }
}

fn describe_output(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Encodes a mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3), the
/// form Dovecot uses on the wire and in Maildir folder names.
pub fn mutf7_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush_mutf7(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            pending.extend_from_slice(ch.encode_utf16(&mut [0; 2]));
        }
    }
    flush_mutf7(&mut out, &mut pending);
    out
}

/// Appends `&<modified base64 of UTF-16BE>-` for the pending code units.
fn flush_mutf7(out: &mut String, pending: &mut Vec<u16>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.drain(..).flat_map(u16::to_be_bytes).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
        }
    }
    out.push('-');
}

#[cfg(test)]
mod tests {
    // Benches include this file with `--cfg test` but without the test harness, which strips
    // the tests and leaves the import unused.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn mutf7_encodes_ascii_and_ampersand() {
        assert_eq!(mutf7_encode("INBOX"), "INBOX");
        assert_eq!(mutf7_encode("Archive/2024"), "Archive/2024");
        assert_eq!(mutf7_encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(mutf7_encode("~peter/mail"), "~peter/mail");
    }

    #[test]
    fn mutf7_encodes_non_ascii_runs() {
        assert_eq!(mutf7_encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mutf7_encode("Résumé"), "R&AOk-sum&AOk-");
        assert_eq!(mutf7_encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(mutf7_encode("Größe"), "Gr&APYA3w-e");
        assert_eq!(
            mutf7_encode("Ünïcödé/Ordner"),
            "&ANw-n&AO8-c&APY-d&AOk-/Ordner"
        );
        // RFC 3501's own example.
        assert_eq!(
            mutf7_encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
    }

    #[test]
    fn mutf7_encodes_surrogate_pairs() {
        assert_eq!(mutf7_encode("📧"), "&2D3c5w-");
        assert_eq!(mutf7_encode("a📧&"), "a&2D3c5w-&-");
    }

    #[test]
    fn maildir_flags_are_sorted_and_validated() {
        assert_eq!(maildir_flags(""), "");
        assert_eq!(maildir_flags("SF"), "FS");
        assert_eq!(maildir_flags("TSRDFS"), "DFRST");
        assert_eq!(maildir_flags("P"), "P");
    }

    #[test]
    fn rawlog_timestamps_are_stripped() {
        assert_eq!(
            strip_rawlog_timestamp(b"1795747105.287619 a NOOP\r\n"),
            b"a NOOP\r\n"
        );
        assert_eq!(strip_rawlog_timestamp(b"a NOOP\r\n"), b"a NOOP\r\n");
        assert_eq!(strip_rawlog_timestamp(b"12 apples\r\n"), b"12 apples\r\n");
    }
}
