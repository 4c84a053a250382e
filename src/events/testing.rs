//! What the tests of the event parts share.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::format::{EventFormat, StreamEnd};
use super::watcher::{Watcher, WatcherShared};
use crate::imap::UserKey;
use crate::imap::state::MailboxState;
use crate::imap::transport::{Security, Upstream};
use crate::mail::summary::Summary;

pub(crate) fn state(m: u64, n: u32) -> MailboxState {
    MailboxState {
        uid_validity: 7,
        highest_modseq: m,
        uid_next: n,
    }
}

pub(crate) fn user(name: &str) -> UserKey {
    UserKey {
        upstream: Upstream {
            host: "imap.example.com".into(),
            port: 993,
            security: Security::Tls,
        },
        username: name.into(),
    }
}

pub(crate) fn watcher_with_queue(queue: usize) -> Arc<Watcher> {
    let (tx, _) = broadcast::channel(queue);
    let (_ready_tx, ready) = watch::channel(Some(Ok(())));
    Arc::new(Watcher {
        shared: Arc::new(Mutex::new(WatcherShared {
            state: Some(state(1, 1)),
            seq: 0,
            ended: None,
            tx,
        })),
        ready,
        startup_error: Arc::new(Mutex::new(None)),
        stop: CancellationToken::new(),
    })
}

/// Event data as compact JSON with the fields the tests look for.
pub(crate) struct TestFormat;

impl EventFormat for TestFormat {
    fn message_new(&self, mailbox: &str, summary: &Summary) -> String {
        serde_json::json!({"mailbox": mailbox, "uid": summary.uid}).to_string()
    }

    fn message_flags(&self, mailbox: &str, uid: u32, flags: &[String]) -> String {
        serde_json::json!({"mailbox": mailbox, "uid": uid, "flags": flags}).to_string()
    }

    fn message_expunged(&self, mailbox: &str, uid: u32) -> String {
        serde_json::json!({"mailbox": mailbox, "uid": uid}).to_string()
    }

    fn mailbox_reset(&self, mailbox: &str, uid_validity: u32) -> String {
        serde_json::json!({"mailbox": mailbox, "uid_validity": uid_validity}).to_string()
    }

    fn auth_expired(&self, detail: &str) -> String {
        serde_json::json!({"detail": detail}).to_string()
    }

    fn stream_end(&self, end: &StreamEnd<'_>) -> String {
        serde_json::json!({"code": end.code, "detail": end.detail, "mailbox": end.mailbox})
            .to_string()
    }
}
