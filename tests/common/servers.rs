//! The IMAP servers the cross-server suite (`tests/interop.rs`) runs against, and a bridge in
//! front of each.
//!
//! Users point the bridge at servers that advertise very different things, so the suite runs
//! on real Dovecot told by `imap_capability` to advertise only what a well-known server does
//! (Dovecot then still executes everything, so the bridge must choose by what is advertised),
//! and on a real Cyrus IMAP.
//!
//! | profile | what it advertises after login |
//! |---|---|
//! | `dovecot` | Dovecot 2.3's full list (LITERAL+, MOVE, UIDPLUS, CONDSTORE, QRESYNC, SORT, THREAD, SPECIAL-USE, LIST-STATUS, ESEARCH…) |
//! | `gmail` | Gmail's list as imap.gmail.com sends it, minus what Dovecot cannot do (X-GM-EXT-1, XLIST, COMPRESS=DEFLATE, UTF8=ACCEPT, APPENDLIMIT): CONDSTORE without QRESYNC, LITERAL- instead of LITERAL+, no SORT or THREAD |
//! | `exchange` | Microsoft 365's list as outlook.office365.com sends it: no CONDSTORE, QRESYNC, SORT, THREAD, SPECIAL-USE, LIST-STATUS or ESEARCH |
//! | `minimal` | `IMAP4rev1 IDLE`: no literal extensions, MOVE, UIDPLUS, UNSELECT, ID, ENABLE, NAMESPACE, and no special-use attributes on mailboxes |
//! | `bare` | `IMAP4rev1` alone, as old appliances: the `minimal` profile without IDLE |
//! | `cyrus` | Cyrus IMAP 3.6 as Debian ships it (`tests/common/cyrus.rs`) |

use std::time::SystemTime;

use imap_bridge::config::{Config, Security};
use imap_bridge::http::AppState;
use imap_bridge::imap::pool::Session;
use imap_bridge::imap::{Credentials, MailboxName, UserKey};

use super::bridge::{BridgeApi, DirectImap, PASSWORD, Serving, USER};
use super::cyrus::{self, Cyrus};
use super::dovecot::{Dovecot, DovecotOptions};

/// A server, or a Dovecot advertising a well-known server's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Dovecot as it comes.
    Dovecot,
    /// Dovecot advertising what Gmail does.
    Gmail,
    /// Dovecot advertising what Microsoft 365 does.
    Exchange,
    /// Dovecot advertising `IMAP4rev1 IDLE` only.
    Minimal,
    /// Dovecot advertising `IMAP4rev1` only.
    Bare,
    /// Cyrus IMAP.
    Cyrus,
}

/// Gmail's capabilities after login (imap.gmail.com), without those Dovecot does not
/// implement.
pub const GMAIL_CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID CHILDREN \
     UIDPLUS ENABLE MOVE CONDSTORE ESEARCH LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE";
/// Microsoft 365's capabilities after login (outlook.office365.com), without its private
/// extensions and SASL mechanisms.
pub const EXCHANGE_CAPABILITIES: &str =
    "IMAP4rev1 UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";
/// The least a server can offer that events are pushed with.
pub const MINIMAL_CAPABILITIES: &str = "IMAP4rev1 IDLE";
/// The least a server can offer.
pub const BARE_CAPABILITIES: &str = "IMAP4rev1";

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 6] = [
        Profile::Dovecot,
        Profile::Gmail,
        Profile::Exchange,
        Profile::Minimal,
        Profile::Bare,
        Profile::Cyrus,
    ];

    /// The profile's name in test names and the README.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Dovecot => "dovecot",
            Profile::Gmail => "gmail",
            Profile::Exchange => "exchange",
            Profile::Minimal => "minimal",
            Profile::Bare => "bare",
            Profile::Cyrus => "cyrus",
        }
    }

    /// Whether the profile advertises `capability`.
    pub fn has(self, capability: &str) -> bool {
        match self {
            Profile::Dovecot => !matches!(capability, "LITERAL-"),
            Profile::Gmail => GMAIL_CAPABILITIES.split(' ').any(|c| c == capability),
            Profile::Exchange => EXCHANGE_CAPABILITIES.split(' ').any(|c| c == capability),
            Profile::Minimal => MINIMAL_CAPABILITIES.split(' ').any(|c| c == capability),
            Profile::Bare => BARE_CAPABILITIES.split(' ').any(|c| c == capability),
            Profile::Cyrus => cyrus::CAPABILITIES.contains(&capability),
        }
    }

    fn dovecot_options(self) -> DovecotOptions {
        let mut opts = DovecotOptions::default();
        let capabilities = match self {
            Profile::Dovecot | Profile::Cyrus => return opts,
            Profile::Gmail => GMAIL_CAPABILITIES,
            Profile::Exchange => EXCHANGE_CAPABILITIES,
            Profile::Minimal => MINIMAL_CAPABILITIES,
            Profile::Bare => BARE_CAPABILITIES,
        };
        opts.extra_config = format!("imap_capability = {capabilities}\n");
        if matches!(self, Profile::Minimal | Profile::Bare) {
            // An old server knows no special-use attributes: the roles must come from names.
            for name in ["Drafts", "Sent", "Trash", "Junk", "Archive"] {
                opts.extra_config.push_str(&format!(
                    "namespace inbox {{\n  mailbox {name} {{\n    special_use =\n  }}\n}}\n"
                ));
            }
        }
        opts
    }
}

/// A running server of some profile.
pub enum MailServer {
    /// Dovecot, maybe advertising less than it has.
    Dovecot(Dovecot),
    /// Cyrus IMAP.
    Cyrus(Cyrus),
}

impl MailServer {
    /// Starts a server of `profile` with the default user.
    pub async fn start(profile: Profile) -> MailServer {
        tokio::task::spawn_blocking(move || {
            if profile == Profile::Cyrus {
                let cyrus = Cyrus::start();
                cyrus.add_user(USER, PASSWORD);
                // What Dovecot's test configuration creates for every user.
                cyrus.create_special_use_mailboxes(USER);
                return MailServer::Cyrus(cyrus);
            }
            let dovecot = Dovecot::start_with(profile.dovecot_options());
            dovecot.add_user(USER, PASSWORD);
            MailServer::Dovecot(dovecot)
        })
        .await
        .expect("server start")
    }

    /// The bridge's settings for this server over implicit TLS, verified against its test CA.
    pub fn bridge_config(&self) -> Config {
        let (addr, ca) = self.tls_endpoint();
        let mut config = Config::for_server("localhost", addr.port(), Security::Tls);
        config.imap_ca_file = Some(ca);
        super::bridge::test_settings(&mut config);
        // Servers without IDLE are polled; a second keeps the event tests short.
        config.poll_interval = 1;
        config
    }

    /// Delivers `raw` to the default user's `mailbox` (UTF-8 name, `/` separator) with Maildir
    /// `flags` letters (`S` seen, `F` flagged, `T` deleted…) and an optional internal date.
    pub fn deliver(
        &self,
        mailbox: &str,
        raw: &[u8],
        flags: &str,
        internal_date: Option<SystemTime>,
    ) {
        match self {
            MailServer::Dovecot(d) => {
                d.deliver(USER, mailbox, raw, flags, internal_date);
            }
            MailServer::Cyrus(c) => {
                c.deliver(USER, mailbox, raw, flags, internal_date);
            }
        }
    }

    /// Delivers many messages to the default user's `mailbox`, in order.
    pub fn deliver_many(&self, mailbox: &str, messages: Vec<Vec<u8>>) {
        match self {
            MailServer::Dovecot(d) => d.deliver_many(USER, mailbox, messages),
            MailServer::Cyrus(c) => c.deliver_many(USER, mailbox, messages),
        }
    }

    /// Creates a mailbox for the default user behind the bridge's back.
    pub fn create_mailbox(&self, name: &str) {
        match self {
            MailServer::Dovecot(d) => d.create_mailbox(USER, name),
            MailServer::Cyrus(c) => c.create_mailbox(USER, name),
        }
    }

    /// The implicit-TLS listener and the CA that issued its certificate.
    pub fn tls_endpoint(&self) -> (std::net::SocketAddr, std::path::PathBuf) {
        match self {
            MailServer::Dovecot(d) => (d.imaps_addr(), d.ca_cert_path()),
            MailServer::Cyrus(c) => (c.imaps_addr(), c.ca_cert_path()),
        }
    }

    /// A direct IMAP session of the default user, to check what the bridge did or to play
    /// another client: plain TCP to Dovecot, TLS to Cyrus (which refuses LOGIN without it).
    pub async fn direct(&self) -> DirectImap {
        match self {
            MailServer::Dovecot(d) => DirectImap::login(d.imap_addr(), USER, PASSWORD).await,
            MailServer::Cyrus(c) => {
                DirectImap::login_tls(c.imaps_addr(), &c.ca_cert_path(), USER, PASSWORD).await
            }
        }
    }
}

/// A bridge in front of a server of some profile.
pub struct ServerBridge {
    /// Which server.
    pub profile: Profile,
    /// The server.
    pub server: MailServer,
    /// The bridge's HTTP side.
    pub api: BridgeApi,
    /// The bridge's state.
    pub state: AppState,
    serving: Serving,
}

impl std::ops::Deref for ServerBridge {
    type Target = BridgeApi;

    fn deref(&self) -> &BridgeApi {
        &self.api
    }
}

impl ServerBridge {
    /// A server of `profile` with the default user, and a bridge in front of it.
    pub async fn start(profile: Profile) -> ServerBridge {
        Self::start_with(profile, |_| {}).await
    }

    /// Like [`ServerBridge::start`], with `adjust` applied to the bridge's settings.
    pub async fn start_with(profile: Profile, adjust: impl FnOnce(&mut Config)) -> ServerBridge {
        let server = MailServer::start(profile).await;
        let mut config = server.bridge_config();
        adjust(&mut config);
        let (serving, api, state) = Serving::start(config).await;
        ServerBridge {
            profile,
            server,
            api,
            state,
            serving,
        }
    }

    /// Stops serving and waits for the bridge to log out its sessions.
    pub async fn stop(&mut self) {
        self.serving.stop().await;
    }

    /// Whether the server advertises `capability`.
    pub fn has(&self, capability: &str) -> bool {
        self.profile.has(capability)
    }

    /// A session of the bridge's own pool for the default user, with `mailbox` selected.
    pub async fn pooled_session(&self, mailbox: &str) -> Session {
        let key = UserKey {
            upstream: self.state.upstream.clone(),
            username: USER.to_owned(),
        };
        let credentials = Credentials::password(USER, PASSWORD);
        let mut session = self
            .state
            .pools
            .session(&key, &credentials)
            .await
            .expect("a session");
        session
            .select(&MailboxName::new(mailbox).expect("name"))
            .await
            .expect("select");
        session
    }

    /// The JSON of `GET path`, asserting success.
    pub async fn get_ok(&self, token: &str, path: &str) -> serde_json::Value {
        let (status, body) = self.get_json(token, path).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{path}: {body}");
        body
    }

    /// The value of a counter series on the bridge's `/metrics` (0 when absent), by the
    /// exposition line's prefix, e.g. `imap_bridge_imap_commands_total{command="UID THREAD"`.
    pub async fn counter(&self, series: &str) -> f64 {
        let res = self
            .request(reqwest::Method::GET, "/metrics", None)
            .send()
            .await
            .expect("metrics");
        let text = res.text().await.expect("metrics text");
        text.lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
