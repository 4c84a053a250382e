//! Everything that speaks IMAP: transport and TLS, sessions and their pools, the typed command
//! encoder, and the mailbox and message operations the HTTP layer calls.

pub mod cache;
pub mod connection;
pub mod encode;
pub mod error;
pub mod event_batch;
pub mod fetch_item;
mod flag_window;
pub mod guard;
pub mod mailboxes;
pub mod messages;
mod meter;
pub mod mutations;
mod paging;
pub mod pool;
pub mod previews;
pub mod sasl;
pub mod state;
pub mod sync;
pub mod thread_cache;
pub mod thread_index;
pub mod threads;
pub mod tracker;
pub mod transport;

pub use connection::{Connection, Credentials, OAuthMechanism, Secret, SessionLimits};
pub use encode::MailboxName;
pub use error::ImapError;
pub use pool::{PoolSettings, Session, SessionPool, UserKey};
pub use transport::{Transport, Upstream};
