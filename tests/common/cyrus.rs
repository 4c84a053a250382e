//! Private Cyrus IMAP 3.6 server instances for integration tests: the second real server
//! beside [`Dovecot`](super::dovecot::Dovecot), with the same method names so a test can
//! switch servers.
//!
//! Each [`Cyrus`] is a `master` process with its own `imapd.conf` and `cyrus.conf` in a
//! temporary directory, listening on two free loopback ports (plain + STARTTLS, and implicit
//! TLS), with users in a private sasldb and a certificate from the tests' CA (the same cached
//! set [`Dovecot`](super::dovecot::Dovecot) uses). Seeding goes over IMAP (Cyrus owns its
//! spool: its index files cannot be written from outside) with a minimal blocking client.
//! The directory is on `/dev/shm` when there is one: Cyrus fsyncs every message and index
//! change and has no setting against it, which on a disk that parallel builds keep busy
//! made 1,000 APPENDs take 1 to 8 s instead of 0.2 s. A test process killed with SIGKILL
//! leaves its directory there (its processes still stop).
//!
//! `scripts/setup` installs Debian's `cyrus-common` (master, tools, libraries) and
//! `sasl2-bin` (`saslpasswd2`), and unpacks `cyrus-imapd` (`imapd`, `idled`) into `.cyrus/`
//! at the repository root, because that package conflicts with `dovecot-imapd`. A
//! system-wide `imapd` in `/usr/lib/cyrus/bin` is used when `.cyrus/` is missing.
//!
//! Settings are Cyrus's defaults except what a private instance needs: paths, ports,
//! `servername`, the sasldb, the certificate and one admin; and `idled` runs, as in Cyrus's
//! sample configuration. So the user-facing listeners keep `allowplaintext: no`: LOGIN and
//! AUTHENTICATE PLAIN need TLS there. The harness itself talks to a third listener, a unix
//! socket (`conf/socket/harness`, service `harness`) that tests never see, where
//! `harness_allowplaintext: yes` (a per-service setting) lets it authenticate with PLAIN as
//! the admin `harness-admin`: as the admin itself (to create `user/<name>`) or, with the user
//! as authorization id, as that user (Cyrus lets admins do that): mail is seeded by the
//! user's own session, so `\Seen` and subscriptions are the user's.
//!
//! Layout of an instance directory ([`Cyrus::dir`]):
//!
//! | path | contents |
//! | --- | --- |
//! | `imapd.conf`, `cyrus.conf` | generated configuration |
//! | `cyrus.log` | stdout/stderr of `master` and every process it starts |
//! | `master.pid` | `master`'s pid |
//! | `certs/` | `ca.pem`, `server.pem`, `server.key` |
//! | `sasldb2` | the users and their passwords (realm: the instance's `servername`) |
//! | `conf/` | Cyrus's `configdirectory`: databases, `proc/`, `socket/`, `lock/`, `log/` |
//! | `spool/` | the `default` partition |
//! | `sieve/`, `tmp/` | `sievedir` and `temp_path` |
//!
//! Facts about Cyrus 3.6.1 (Debian 12) this module relies on, most checked by
//! `tests/cyrus_harness.rs`:
//!
//! * `master` does not pass its `-C` on: every command in `cyrus.conf` names this
//!   instance's `imapd.conf` itself, or it would use the system's (`/etc/imapd.conf`).
//! * Started as root, `master` binds its listeners and then switches to the `cyrus` user
//!   (group `mail`) that `cyrus-common` creates, so the instance's files belong to that
//!   user. Started as anyone else it exits at once (it cannot `setgroups`), so these tests
//!   need root, as on the project's machines and in CI.
//! * Cyrus logs through syslog(3) only; without a syslog daemon (as here: no `/dev/log`)
//!   those lines are lost. [`Cyrus::log`] has the processes' stdout/stderr, which is
//!   where fatal start-up errors (`bind: ...`) end up. [`Cyrus::record_traffic`] turns on
//!   Cyrus's per-user protocol telemetry, the closest thing to Dovecot's rawlog.
//! * A listener whose port is taken is skipped with a syslog line, and `master` runs on
//!   without it, so [`Cyrus::start`] checks in `/proc/net/tcp` that both ports are bound by
//!   `master` itself, and retries with new ports otherwise. SIGTERM stops `master` and
//!   every process it started within milliseconds.
//! * Defaults: `altnamespace: yes` and `unixhierarchysep: yes`, so NAMESPACE is
//!   `(("" "/")) (("Other Users/" "/")) (("Shared Folders/" "/"))`; `INBOX` is not created at
//!   login (`autocreate_quota: -1`): [`Cyrus::add_user`] creates it, unsubscribed. The
//!   sasldb is read on every login, so new users and passwords apply at once.
//! * Before STARTTLS the plain port greets with `[CAPABILITY ... STARTTLS LOGINDISABLED
//!   ...]` and offers only non-plaintext SASL mechanisms (SCRAM-*, DIGEST-MD5, CRAM-MD5,
//!   NTLM); LOGIN answers `NO Login only available under a layer` at once, AUTHENTICATE
//!   PLAIN `NO encryption needed to use mechanism` after 3 s. After login Cyrus advertises,
//!   among others, [`CAPABILITIES`]; no NOTIFY. Odd but harmless: the CAPABILITY code in
//!   LOGIN's OK (even over TLS) still lists `LOGINDISABLED` and the `AUTH=` mechanisms.
//! * A failed LOGIN answers `NO Login failed: authentication failure` after Cyrus's
//!   default `failedloginpause` of 3 s.
//! * `munge8bit: yes` (default): raw 8-bit bytes in header fields are replaced by `X` on
//!   APPEND (`Subject: Grüße` is stored as `Subject: GrXXXXe`); bodies are kept.
//! * Creating `Archive/2024` also creates `Archive`, a real, selectable but unsubscribed
//!   mailbox (`\HasChildren`), where Dovecot shows a `\Noselect` parent. CREATE of an
//!   existing mailbox answers `NO Mailbox already exists` (no `[ALREADYEXISTS]`); DELETE of a
//!   mailbox with children `NO [HASCHILDREN] Mailbox has inferior hierarchical names`, of a
//!   special-use mailbox `NO SPECIAL-USE flag conflict` (`specialuse_protect`). Names
//!   travel in modified UTF-7 (`Entw&APw-rfe`).
//! * IDLE is served by `idled`: an IDLE session sees a new message within tens of
//!   milliseconds; without `idled` it would poll every 60 s.
//! * `conf/proc/<pid>` holds one line per connection, `service TAB host TAB user TAB
//!   mailbox TAB command`; [`Cyrus::connections`] counts those of the `imap` and `imaps`
//!   services. Cyrus has no per-user disconnect: [`Cyrus::kick`] sends SIGTERM to the
//!   `imapd` processes serving the user, and their clients see the connection close
//!   without a BYE.
//! * MULTIAPPEND stores a batch of messages in one command, and APPENDUID reports the UID
//!   set; [`Cyrus::deliver_many`] pipelines batches of 100 with LITERAL+.
//!
//! Measured on the project's 2-core machine while other builds ran: [`Cyrus::start`] takes
//! 0.12 to 0.23 s (plus about 80 ms once a week to make certificates), dropping 5 to 15 ms;
//! [`Cyrus::deliver_many`] stores 1,000 messages of the bulk corpus (3.9 MB) in 0.15 to
//! 0.2 s, over 5,000 messages per second.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::dovecot::{install_certificates, mutf7_encode};

/// What Cyrus advertises after login that the bridge and the tests rely on.
pub const CAPABILITIES: &[&str] = &[
    "IMAP4rev1",
    "LITERAL+",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "CONDSTORE",
    "QRESYNC",
    "PREVIEW",
    "ESEARCH",
    "SORT",
    "THREAD=REFERENCES",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "MULTIAPPEND",
    "UNSELECT",
    "CHILDREN",
    "BINARY",
];

/// The special-use mailboxes of [`Cyrus::create_special_use_mailboxes`], each named after
/// its attribute.
const SPECIAL_USE: [&str; 5] = ["Drafts", "Sent", "Trash", "Junk", "Archive"];
/// How often the whole start (new ports, new config) is retried when another process holds
/// one of the chosen ports.
const START_ATTEMPTS: usize = 5;
/// How long to wait for both listeners and the greeting after spawning `master`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM-initiated shutdown may take before SIGKILL is used.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the log quoted in panic messages.
const LOG_TAIL_LINES: usize = 60;
/// The admin the harness authenticates as (never a test user: add_user refuses the name).
const ADMIN: &str = "harness-admin";
/// The `cyrus.conf` service on the harness's unix socket, which allows plaintext logins.
const HARNESS_SERVICE: &str = "harness";
/// Messages per MULTIAPPEND command in [`Cyrus::deliver_many`].
const BULK_BATCH: usize = 100;
/// Where instance directories go when it exists (tmpfs), rather than the temp dir.
const SHM_DIR: &str = "/dev/shm";
/// Where cyrus-common puts `master` and the tools.
const SYSTEM_BIN: &str = "/usr/lib/cyrus/bin";
/// Where `scripts/setup` unpacks cyrus-imapd, relative to the repository root.
const PRIVATE_BIN: &str = ".cyrus/usr/lib/cyrus/bin";

/// Runs `master` in the foreground under a small `sh` supervisor, as
/// `tests/common/dovecot.rs` does for Dovecot: when the supervisor's stdin (whose only writer
/// is the test process) closes, on a stop, on `Drop` or when the test process dies in any
/// way, it sends SIGTERM to `master`, which stops every process it started. `$0` is
/// `master`, `$1` `imapd.conf`, `$2` `cyrus.conf`, `$3` the pid file; `-D` keeps stdout and
/// stderr (the log file) open for `master` and its children.
const SUPERVISOR_SCRIPT: &str = r#"exec 3<&0 </dev/null
"$0" -C "$1" -M "$2" -p "$3" -D 3<&- &
d=$!
(read _ <&3; kill -TERM "$d") 2>/dev/null &
w=$!
exec 3<&-
wait "$d"
s=$?
kill "$w" 2>/dev/null
wait "$w"
exit "$s""#;

/// A running private Cyrus instance listening on two loopback ports.
///
/// Dropping it stops `master` (and with it every Cyrus process) and deletes the instance
/// directory. If the test process dies without running `Drop`, the supervisor stops Cyrus.
pub struct Cyrus {
    dir: PathBuf,
    log_path: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    /// Unique per start: in the greeting (so a foreign server is never taken for ours) and
    /// the SASL realm of every user.
    servername: String,
    admin_password: String,
    /// `cyrus` user and `mail` group ids, which own everything Cyrus reads or writes.
    owner: (u32, u32),
    process: Option<Supervisor>,
    // Declared last so it is deleted only after the processes have stopped.
    _temp: TempDir,
}

impl Cyrus {
    /// Starts an instance in a fresh temporary directory that is deleted on drop. Panics
    /// (with the log's tail) if Cyrus cannot start.
    pub fn start() -> Self {
        // Cyrus fsyncs every message and index change and has no setting against it; on
        // tmpfs that costs nothing, on a disk that other builds keep busy it costs seconds.
        let shm = Path::new(SHM_DIR);
        let mut builder = tempfile::Builder::new();
        builder.prefix("imap-bridge-cyrus-");
        let temp = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for Cyrus: {e}"));
        let dir = temp.path().to_path_buf();
        let created_by = fs::metadata(&dir)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", dir.display()))
            .uid();
        assert_eq!(
            created_by, 0,
            "Cyrus's master only starts as root (it switches to the cyrus user itself)"
        );
        // Cyrus's processes (user cyrus) must reach their files below it.
        set_mode(&dir, 0o755);
        let mut cyrus = Self {
            log_path: dir.join("cyrus.log"),
            imap_port: 0,
            imaps_port: 0,
            servername: String::new(),
            admin_password: format!("admin-{}", unique_token()),
            owner: cyrus_owner(),
            process: None,
            _temp: temp,
            dir,
        };
        const DIRS: [&str; 6] = ["certs", "conf", "conf/socket", "spool", "sieve", "tmp"];
        for sub in DIRS {
            let path = cyrus.dir.join(sub);
            fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        // Still root's, so the certificates come from Dovecot's cache (kept per owner).
        install_certificates(&cyrus.dir.join("certs"));
        for sub in DIRS {
            cyrus.own(&cyrus.dir.join(sub));
        }
        for file in ["ca.pem", "server.pem", "server.key"] {
            cyrus.own(&cyrus.dir.join("certs").join(file));
        }
        cyrus.launch();
        cyrus.set_password(ADMIN, &cyrus.admin_password);
        cyrus
    }

    /// The instance directory (see the module documentation for its layout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Address of the plain IMAP listener, which offers STARTTLS and (Cyrus's default)
    /// refuses LOGIN and AUTHENTICATE PLAIN before it.
    pub fn imap_addr(&self) -> SocketAddr {
        loopback(self.imap_port)
    }

    /// Address of the implicit-TLS IMAP listener (certificate for `localhost` and
    /// `127.0.0.1`, issued by [`Cyrus::ca_cert_path`]).
    pub fn imaps_addr(&self) -> SocketAddr {
        loopback(self.imaps_port)
    }

    /// PEM file of the CA that issued the server certificate.
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

    /// The stdout and stderr of `master` and its processes so far (Cyrus's own log lines go
    /// to syslog; see the module documentation).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Adds `user` with `password` (or replaces the password of an existing user) and
    /// creates the user's empty INBOX (`user/<user>`, as the admin). The user can log in at
    /// once. User names are ASCII letters, digits and `.`, `-`, `_`.
    pub fn add_user(&self, user: &str, password: &str) {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        assert!(
            !user.is_empty()
                && user.chars().all(valid_char)
                && !user.starts_with('.')
                && user != ADMIN,
            "invalid user name {user:?}: use ASCII letters, digits and . - _ (not first: .)"
        );
        self.set_password(user, password);
        let mut admin = self.session(None);
        admin.create(&format!("user/{user}"));
        admin.logout();
    }

    /// Creates mailbox `name` (UTF-8, hierarchy separator `/`) for `user` and subscribes
    /// it, in the user's own session. Missing parents are created too (Cyrus does that).
    /// Does nothing for INBOX or a mailbox that exists (but subscribes it).
    pub fn create_mailbox(&self, user: &str, name: &str) {
        if is_inbox(name) {
            return;
        }
        assert!(
            !name.split('/').any(str::is_empty),
            "mailbox name {name:?} has an empty hierarchy level"
        );
        let mut session = self.session(Some(user));
        session.create(name);
        session.ok(&format!("SUBSCRIBE {}", quote_mailbox(name)));
        session.logout();
    }

    /// Creates and subscribes the special-use mailboxes the Dovecot harness gives every user
    /// (`Drafts`, `Sent`, `Trash`, `Junk`, `Archive` with `\\Drafts` and so on), for tests
    /// that expect them. Cyrus's default `specialuse_protect` then refuses to DELETE them
    /// (`NO SPECIAL-USE flag conflict`).
    pub fn create_special_use_mailboxes(&self, user: &str) {
        let mut session = self.session(Some(user));
        for name in SPECIAL_USE {
            session.create(name);
            session.ok(&format!(
                "SETMETADATA {name} (/private/specialuse \"\\\\{name}\")"
            ));
            session.ok(&format!("SUBSCRIBE {name}"));
        }
        session.logout();
    }

    /// Starts recording the IMAP traffic of `user`'s sessions on the `imap` and `imaps`
    /// listeners (Cyrus's telemetry: every session that logs in from now on); read it with
    /// [`Cyrus::traffic`].
    pub fn record_traffic(&self, user: &str) {
        let dir = self.dir.join("conf").join("log").join(user);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        self.own(&dir);
        self.own(&self.dir.join("conf").join("log"));
    }

    /// What [`Cyrus::record_traffic`] recorded for `user`, session after session (oldest
    /// first): after login only, each chunk the client sent prefixed `<unix-time<` and each
    /// chunk Cyrus wrote `>unix-time>` (so a multi-line response has one prefix).
    pub fn traffic(&self, user: &str) -> String {
        let dir = self.dir.join("conf").join("log").join(user);
        let mut files: Vec<(SystemTime, PathBuf)> = fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot read {} (was record_traffic({user:?}) called?): {e}",
                    dir.display()
                )
            })
            .filter_map(Result::ok)
            .filter(|entry| {
                !entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{HARNESS_SERVICE}-"))
            })
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        files.sort();
        files
            .iter()
            .map(|(_, path)| {
                String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
            })
            .collect()
    }

    /// APPENDs one message to `user`'s `mailbox` (created and subscribed if missing) and
    /// returns its UID. `flags` are [`Dovecot::deliver`](super::dovecot::Dovecot::deliver)'s
    /// Maildir letters in any order: `D` \Draft, `F` \Flagged, `R` \Answered, `S` \Seen,
    /// `T` \Deleted. `internal_date` (default: now, whole seconds) becomes INTERNALDATE.
    pub fn deliver(
        &self,
        user: &str,
        mailbox: &str,
        raw: &[u8],
        flags: &str,
        internal_date: Option<SystemTime>,
    ) -> u32 {
        let flags = imap_flags(flags);
        let date = internal_date.unwrap_or_else(SystemTime::now);
        let mut session = self.session(Some(user));
        let mut command = append_command(mailbox);
        append_message(&mut command, &flags, date, raw);
        let (_, status) = session.command_bytes(&command);
        let status = if status.starts_with("NO [TRYCREATE]") {
            session.create(mailbox);
            session.ok(&format!("SUBSCRIBE {}", quote_mailbox(mailbox)));
            session.command_bytes(&command).1
        } else {
            status
        };
        assert!(
            status.starts_with("OK"),
            "APPEND to {user}'s {mailbox} failed: {status}\n{}",
            self.log_tail()
        );
        session.logout();
        appended_uids(&status)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no APPENDUID in {status:?}"))
    }

    /// Bulk-seeds `messages` (raw RFC 5322 bytes, no flags) into `user`'s `mailbox`
    /// (created and subscribed if missing) over one connection: MULTIAPPENDs of 100
    /// messages with LITERAL+, pipelined. Message `i` of `n` gets the internal date
    /// `now - (n - i)` seconds, so UID order and INTERNALDATE order match the iteration
    /// order. The iterator is collected first to know `n`.
    pub fn deliver_many(
        &self,
        user: &str,
        mailbox: &str,
        messages: impl IntoIterator<Item = Vec<u8>>,
    ) {
        let messages: Vec<Vec<u8>> = messages.into_iter().collect();
        if messages.is_empty() {
            return;
        }
        let mut session = self.session(Some(user));
        if !is_inbox(mailbox) {
            session.create(mailbox);
            session.ok(&format!("SUBSCRIBE {}", quote_mailbox(mailbox)));
        }
        let count = u64::try_from(messages.len()).expect("message count fits in u64");
        let first = SystemTime::now() - Duration::from_secs(count);
        let mut dates = (0u64..).map(|i| first + Duration::from_secs(i));
        let commands: Vec<Vec<u8>> = messages
            .chunks(BULK_BATCH)
            .map(|batch| {
                let mut command = append_command(mailbox);
                for raw in batch {
                    let date = dates.next().expect("endless dates");
                    append_message(&mut command, "", date, raw);
                }
                command
            })
            .collect();
        for status in session.pipeline(&commands) {
            assert!(
                status.starts_with("OK"),
                "bulk APPEND to {user}'s {mailbox} failed: {status}\n{}",
                self.log_tail()
            );
        }
        session.logout();
    }

    /// Number of `user`'s logged-in connections to the `imap` and `imaps` listeners right
    /// now, from Cyrus's `conf/proc/<pid>` files (one per connection; the harness's own
    /// sessions are not counted).
    pub fn connections(&self, user: &str) -> usize {
        self.user_processes(user).len()
    }

    /// Polls [`Cyrus::connections`] until it equals `expected`; panics after `timeout`.
    pub fn wait_for_connections(&self, user: &str, expected: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.connections(user);
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{user} has {now} IMAP connection(s), expected {expected} within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Disconnects all of `user`'s IMAP sessions by sending SIGTERM to the `imapd` processes
    /// serving them (Cyrus has no per-user kick); their clients see the connection close
    /// without a BYE. A user without sessions is not an error. Returns at once; use
    /// [`Cyrus::wait_for_connections`] to wait until they are gone.
    pub fn kick(&self, user: &str) {
        let pids = self.user_processes(user);
        if pids.is_empty() {
            return;
        }
        // A process that ended meanwhile makes kill fail for it alone, which is fine.
        let _ = Command::new("kill")
            .arg("-TERM")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }

    /// Stops Cyrus now (idempotent). The directory stays until the value is dropped.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// Pids of the `imapd` processes of the `imap` and `imaps` listeners that serve `user`.
    fn user_processes(&self, user: &str) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.dir.join("conf").join("proc")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                // A file left by a process that died without cleaning up is no connection.
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    return None;
                }
                let text = fs::read_to_string(entry.path()).ok()?;
                let mut fields = text.split('\t');
                let service = fields.next()?;
                let _host = fields.next()?;
                let who = fields.next()?;
                ((service == "imap" || service == "imaps") && who == user).then_some(pid)
            })
            .collect()
    }

    /// Writes the configuration and starts `master`, retrying with new ports when one is
    /// taken.
    fn launch(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            let (imap_port, imaps_port) = free_port_pair();
            self.imap_port = imap_port;
            self.imaps_port = imaps_port;
            self.servername = format!("imap-bridge-cyrus-{}-{attempt}", unique_token());
            self.write_config();
            let pid_file = self.dir.join("master.pid");
            let _ = fs::remove_file(&pid_file);
            let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            let mut process = Supervisor::spawn(&self.dir, &self.log_path);
            match process.wait_ready(&pid_file, [imap_port, imaps_port], &self.servername) {
                Ok(()) => {
                    self.process = Some(process);
                    return;
                }
                Err(ReadyError::PortTaken(port)) if attempt < START_ATTEMPTS => {
                    process.stop();
                    eprintln!("Cyrus: port {port} was taken, retrying with new ports");
                }
                Err(error) => {
                    process.stop();
                    panic!(
                        "Cyrus did not start (attempt {attempt}): {error:?}\n{}",
                        self.log_from(log_start)
                    );
                }
            }
        }
        unreachable!("the last start attempt either returns or panics")
    }

    fn write_config(&self) {
        let dir = self.dir.display();
        let conf = self.dir.join("imapd.conf");
        let imapd_conf = format!(
            "# Generated by tests/common/cyrus.rs for one private test instance: Cyrus's defaults
# except paths, the server name (greeting and SASL realm), users and TLS material.
configdirectory: {dir}/conf
partition-default: {dir}/spool
defaultpartition: default
sievedir: {dir}/sieve
temp_path: {dir}/tmp
servername: {servername}
syslog_prefix: imap-bridge-cyrus
admins: {ADMIN}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {dir}/sasldb2
tls_server_cert: {dir}/certs/server.pem
tls_server_key: {dir}/certs/server.key
# Only the harness's unix socket accepts LOGIN and PLAIN without TLS.
{HARNESS_SERVICE}_allowplaintext: yes
",
            servername = self.servername,
        );
        let imapd = cyrus_binary("imapd");
        let idled = cyrus_binary("idled");
        let ctl = Path::new(SYSTEM_BIN).join("ctl_cyrusdb");
        for path in [&self.dir, &imapd, &idled, &ctl] {
            assert!(
                !path.to_string_lossy().contains([' ', '"', '\t']),
                "cyrus.conf cannot name {}: it contains a space or a quote",
                path.display()
            );
        }
        let c = format!("-C {}", conf.display());
        let (imapd, idled, ctl) = (imapd.display(), idled.display(), ctl.display());
        let cyrus_conf = format!(
            r#"# Generated by tests/common/cyrus.rs. Every command names this instance's imapd.conf:
# master does not pass its own -C on.
START {{
  recover cmd="{ctl} {c} -r"
}}
SERVICES {{
  imap cmd="{imapd} {c}" listen="127.0.0.1:{imap}"
  imaps cmd="{imapd} {c} -s" listen="127.0.0.1:{imaps}"
  {HARNESS_SERVICE} cmd="{imapd} {c}" listen="{dir}/conf/socket/{HARNESS_SERVICE}"
}}
EVENTS {{
  checkpoint cmd="{ctl} {c} -c" period=30
}}
DAEMON {{
  idled cmd="{idled} {c}"
}}
"#,
            imap = self.imap_port,
            imaps = self.imaps_port,
        );
        for (name, text) in [("imapd.conf", imapd_conf), ("cyrus.conf", cyrus_conf)] {
            let path = self.dir.join(name);
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }

    /// Sets `user`'s password in the sasldb (creating the entry if needed).
    fn set_password(&self, user: &str, password: &str) {
        assert!(
            !password.is_empty() && !password.contains(['\n', '\r', '\0']),
            "passwords must be non-empty, without NUL or line breaks"
        );
        let sasldb = self.dir.join("sasldb2");
        let mut child = Command::new(find_binary("saslpasswd2"))
            .args(["-p", "-c", "-f"])
            .arg(&sasldb)
            .args(["-u", &self.servername, user])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run saslpasswd2 (run scripts/setup): {e}"));
        child
            .stdin
            .take()
            .expect("saslpasswd2 stdin")
            .write_all(password.as_bytes())
            .expect("write the password to saslpasswd2");
        let out = child.wait_with_output().expect("wait for saslpasswd2");
        assert!(
            out.status.success(),
            "saslpasswd2 for {user} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.own(&sasldb);
    }

    /// A harness session on the unix socket, authenticated as the admin, or as `user` by the
    /// admin's authority.
    fn session(&self, user: Option<&str>) -> HarnessSession<'_> {
        HarnessSession::open(self, user.unwrap_or(""))
    }

    /// Gives `path` to the `cyrus` user.
    fn own(&self, path: &Path) {
        let (uid, gid) = self.owner;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
    }

    fn log_from(&self, offset: u64) -> String {
        let log = fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        format!(
            "--- {} ---\n{}",
            self.log_path.display(),
            String::from_utf8_lossy(&log[start..])
        )
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log_path.display())
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking IMAP session on the harness's unix socket.
struct HarnessSession<'a> {
    cyrus: &'a Cyrus,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    tag: u32,
}

impl<'a> HarnessSession<'a> {
    /// Connects and authenticates with AUTHENTICATE PLAIN (initial response) as the admin,
    /// with `authz` (empty: none) as the identity to act as.
    fn open(cyrus: &'a Cyrus, authz: &str) -> Self {
        let socket = cyrus.dir.join("conf").join("socket").join(HARNESS_SERVICE);
        let stream = UnixStream::connect(&socket).unwrap_or_else(|e| {
            panic!(
                "cannot connect to {}: {e}\n{}",
                socket.display(),
                cyrus.log_tail()
            )
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set read timeout");
        let writer = stream.try_clone().expect("clone the harness socket");
        let mut session = Self {
            cyrus,
            reader: BufReader::new(stream),
            writer,
            tag: 0,
        };
        let greeting = session.read_line();
        assert!(
            greeting.starts_with("* OK"),
            "unexpected greeting {greeting:?}"
        );
        let token = base64(format!("{authz}\0{ADMIN}\0{}", cyrus.admin_password).as_bytes());
        let (_, status) = session.command_bytes(format!("AUTHENTICATE PLAIN {token}").as_bytes());
        assert!(
            status.starts_with("OK"),
            "the harness cannot authenticate as {ADMIN} for {authz:?}: {status}\n{}",
            cyrus.log_tail()
        );
        session
    }

    /// Sends `command` with a fresh tag and returns the untagged lines and the tagged status
    /// (without the tag).
    fn command_bytes(&mut self, command: &[u8]) -> (Vec<String>, String) {
        let tag = self.send(command);
        self.read_until_tagged(&tag)
    }

    /// [`Self::command_bytes`] for a text command that must succeed; returns the untagged
    /// lines.
    fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, status) = self.command_bytes(command.as_bytes());
        assert!(
            status.starts_with("OK"),
            "{command:?} failed: {status}\n{}",
            self.cyrus.log_tail()
        );
        untagged
    }

    /// CREATEs `mailbox` (UTF-8); one that exists already is fine (Cyrus answers `NO
    /// Mailbox already exists`, without RFC 5530's `[ALREADYEXISTS]`).
    fn create(&mut self, mailbox: &str) {
        let (_, status) =
            self.command_bytes(format!("CREATE {}", quote_mailbox(mailbox)).as_bytes());
        assert!(
            status.starts_with("OK")
                || status.starts_with("NO [ALREADYEXISTS]")
                || status == "NO Mailbox already exists",
            "CREATE {mailbox:?} failed: {status}\n{}",
            self.cyrus.log_tail()
        );
    }

    /// Sends all `commands` on a writer thread while reading their results, so neither
    /// side waits for the other; returns each tagged status in order.
    fn pipeline(&mut self, commands: &[Vec<u8>]) -> Vec<String> {
        let first = self.tag + 1;
        let tags: Vec<String> = (first..).take(commands.len()).map(tag_name).collect();
        self.tag += u32::try_from(commands.len()).expect("fewer than 2^32 commands");
        let mut writer = self.writer.try_clone().expect("clone the harness socket");
        thread::scope(|scope| {
            let sender = scope.spawn(move || {
                for (tag, command) in tags.iter().zip(commands) {
                    let mut line = Vec::with_capacity(command.len() + 16);
                    line.extend_from_slice(tag.as_bytes());
                    line.push(b' ');
                    line.extend_from_slice(command);
                    line.extend_from_slice(b"\r\n");
                    writer.write_all(&line)?;
                }
                writer.flush()
            });
            let statuses = (first..)
                .take(commands.len())
                .map(|n| self.read_until_tagged(&tag_name(n)).1)
                .collect();
            sender
                .join()
                .expect("pipeline writer thread")
                .expect("write pipelined commands");
            statuses
        })
    }

    fn logout(mut self) {
        let _ = self.command_bytes(b"LOGOUT");
    }

    fn send(&mut self, command: &[u8]) -> String {
        self.tag += 1;
        let tag = tag_name(self.tag);
        let mut line = Vec::with_capacity(command.len() + 16);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        self.writer
            .write_all(&line)
            .unwrap_or_else(|e| panic!("cannot write to the harness socket: {e}"));
        tag
    }

    fn read_until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line();
            if let Some(status) = line
                .strip_prefix(tag)
                .and_then(|rest| rest.strip_prefix(' '))
            {
                return (untagged, status.to_owned());
            }
            untagged.push(line);
        }
    }

    /// One response line without CRLF, literals inlined (lossily decoded as UTF-8).
    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        loop {
            let start = line.len();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .unwrap_or_else(|e| panic!("cannot read from Cyrus: {e}"));
            assert!(n > 0, "Cyrus closed the harness connection");
            let Some(size) = literal_size(&line[start..]) else {
                break;
            };
            let mut literal = vec![0; size];
            self.reader
                .read_exact(&mut literal)
                .unwrap_or_else(|e| panic!("cannot read a literal from Cyrus: {e}"));
            line.extend_from_slice(&literal);
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

fn tag_name(n: u32) -> String {
    format!("h{n}")
}

/// `N` when `line` ends with a literal announcement `{N}\r\n`.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

/// The start of an APPEND to `mailbox`, before its messages.
fn append_command(mailbox: &str) -> Vec<u8> {
    format!("APPEND {}", quote_mailbox(mailbox)).into_bytes()
}

/// Adds one message with `flags` (IMAP syntax) and INTERNALDATE `date` to an APPEND
/// command, as a LITERAL+ literal.
fn append_message(command: &mut Vec<u8>, flags: &str, date: SystemTime, raw: &[u8]) {
    command.extend_from_slice(
        format!(
            " ({flags}) \"{}\" {{{}+}}\r\n",
            internal_date(date),
            raw.len()
        )
        .as_bytes(),
    );
    command.extend_from_slice(raw);
}

/// The UIDs of an `OK [APPENDUID <validity> <uid-set>]` status, in order.
fn appended_uids(status: &str) -> Vec<u32> {
    let Some(rest) = status.strip_prefix("OK [APPENDUID ") else {
        return Vec::new();
    };
    let set = rest.split([' ', ']']).nth(1).unwrap_or("");
    let mut uids = Vec::new();
    for part in set.split(',') {
        let (low, high) = part.split_once(':').unwrap_or((part, part));
        if let (Ok(low), Ok(high)) = (low.parse::<u32>(), high.parse::<u32>()) {
            uids.extend(low..=high);
        }
    }
    uids
}

/// A mailbox name in modified UTF-7 as an IMAP quoted string.
fn quote_mailbox(name: &str) -> String {
    let encoded = mutf7_encode(name);
    format!("\"{}\"", encoded.replace('\\', "\\\\").replace('"', "\\\""))
}

/// IMAP flags for Dovecot-style Maildir letters.
fn imap_flags(letters: &str) -> String {
    let mut flags: Vec<&str> = letters
        .chars()
        .map(|c| match c {
            'D' => "\\Draft",
            'F' => "\\Flagged",
            'R' => "\\Answered",
            'S' => "\\Seen",
            'T' => "\\Deleted",
            other => {
                panic!("unsupported flag letter {other:?} in {letters:?}; use D, F, R, S or T")
            }
        })
        .collect();
    flags.sort_unstable();
    flags.dedup();
    flags.join(" ")
}

/// `dd-Mon-yyyy hh:mm:ss +0000` (RFC 3501 date-time) of `time`, whole seconds.
fn internal_date(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("internal dates before 1970 are not supported")
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{day:02}-{}-{year} {:02}:{:02}:{:02} +0000",
        MONTHS[usize::try_from(month - 1).expect("month index")],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn is_inbox(mailbox: &str) -> bool {
    mailbox.eq_ignore_ascii_case("INBOX")
}

/// The supervisor `sh` process and the pipe that keeps Cyrus alive.
struct Supervisor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

#[derive(Debug)]
enum ReadyError {
    /// `master` (or its supervisor) exited.
    Exited(std::process::ExitStatus),
    /// Another process listens on this port, so `master` could not bind it.
    PortTaken(u16),
    Timeout,
}

impl Supervisor {
    fn spawn(dir: &Path, log_path: &Path) -> Self {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("duplicate log file handle");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR_SCRIPT)
            .arg(Path::new(SYSTEM_BIN).join("master"))
            .arg(dir.join("imapd.conf"))
            .arg(dir.join("cyrus.conf"))
            .arg(dir.join("master.pid"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn sh to run Cyrus: {e}"));
        let lifeline = child.stdin.take();
        Self { child, lifeline }
    }

    /// Waits until `master` listens on both `ports` itself and the first greets with our
    /// `servername`.
    fn wait_ready(
        &mut self,
        pid_file: &Path,
        ports: [u16; 2],
        servername: &str,
    ) -> Result<(), ReadyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("waitpid on the Cyrus supervisor")
            {
                return Err(ReadyError::Exited(status));
            }
            let master = fs::read_to_string(pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(master) = master {
                let mut bound = 0;
                for port in ports {
                    match port_owner(port, master) {
                        PortOwner::Master => bound += 1,
                        PortOwner::Other => return Err(ReadyError::PortTaken(port)),
                        PortOwner::Nobody => {}
                    }
                }
                if bound == ports.len() && greets(loopback(ports[0]), servername) {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err(ReadyError::Timeout)
    }

    /// Stops Cyrus and reaps the supervisor: SIGTERM to `master` (which stops its processes
    /// within milliseconds), SIGKILL to the whole process group after [`STOP_TIMEOUT`].
    fn stop(mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .expect("waitpid on the Cyrus supervisor")
                .is_some()
            {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        // The supervisor is not reaped yet, so its pid still names the group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("sh")
            .args(["-c", "kill -s KILL -- \"$0\" 2>/dev/null", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// Whether `addr` answers with an `* OK` greeting that names `servername`.
fn greets(addr: SocketAddr, servername: &str) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("set read timeout");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("* OK")
        && line.contains(servername)
}

enum PortOwner {
    Master,
    Other,
    Nobody,
}

/// Who listens on TCP `port` (any local address, IPv4 or IPv6): process `master`, another
/// process, or nobody yet.
fn port_owner(port: u16, master: u32) -> PortOwner {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is "<hex address>:<hex port>", st 0A is LISTEN, inode is field 9.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return PortOwner::Nobody;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{master}/fd")) else {
        return PortOwner::Nobody;
    };
    let master_sockets: Vec<String> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    if inodes.iter().all(|inode| master_sockets.contains(inode)) {
        PortOwner::Master
    } else {
        PortOwner::Other
    }
}

/// The uid of the `cyrus` user and the gid of its primary group (`mail`), which Cyrus's
/// master switches to.
fn cyrus_owner() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"cyrus")).then(|| {
                let id = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
                Some((id(2)?, id(3)?))
            })?
        })
        .expect("system user 'cyrus' is missing; run scripts/setup to install Cyrus")
}

/// `imapd` or `idled`: unpacked by scripts/setup into `.cyrus/`, or installed system-wide.
fn cyrus_binary(name: &str) -> PathBuf {
    let private = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(PRIVATE_BIN)
        .join(name);
    let system = Path::new(SYSTEM_BIN).join(name);
    [private, system]
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("Cyrus's {name} is missing; run scripts/setup"))
}

/// Finds `name` on `PATH` or in the usual sbin directories.
fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH or in /usr/sbin; run scripts/setup"))
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

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    // Benches include this file with `--cfg test` but without the test harness, which strips
    // the tests and leaves the import unused.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn internal_dates_are_rfc3501_date_times() {
        assert_eq!(internal_date(UNIX_EPOCH), "01-Jan-1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!(internal_date(leap), "29-Feb-2024 12:34:56 +0000");
        let end = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // 2025-12-31T23:59:59Z
        assert_eq!(internal_date(end), "31-Dec-2025 23:59:59 +0000");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\0admin\0pw"), "AGFkbWluAHB3");
    }

    #[test]
    fn appenduid_sets_expand() {
        assert_eq!(appended_uids("OK [APPENDUID 17 5] Completed"), [5]);
        assert_eq!(
            appended_uids("OK [APPENDUID 17 1:3,7] Completed"),
            [1, 2, 3, 7]
        );
        assert!(appended_uids("OK Completed").is_empty());
    }

    #[test]
    fn literal_announcements_are_found() {
        assert_eq!(literal_size(b"* LIST () \"/\" {5}\r\n"), Some(5));
        assert_eq!(literal_size(b"* OK done\r\n"), None);
    }

    #[test]
    fn flag_letters_become_imap_flags() {
        assert_eq!(imap_flags(""), "");
        assert_eq!(imap_flags("SF"), "\\Flagged \\Seen");
        assert_eq!(
            imap_flags("TSRDF"),
            "\\Answered \\Deleted \\Draft \\Flagged \\Seen"
        );
    }
}
