//! The demo's mail: the user `scripts/demo` creates and the messages it seeds, shared by the
//! demo (`examples/demo.rs`) and the test that runs the README's walk-through on that mail
//! (`tests/readme.rs`), so that what the walk-through is checked against is what the demo serves.
//!
//! INBOX holds 2,000 read bulk messages (UIDs 1–2000, arrived before everything else) and then
//! the INBOX part of the realistic corpus (`corpus.rs`), so INBOX's first page shows the
//! realistic messages; the other mailboxes hold the rest of that corpus. Drafts, Sent, Trash,
//! Junk and Archive exist with their roles (Dovecot's configuration creates them).
#![allow(dead_code)] // each includer uses a subset

use std::time::{Duration, SystemTime};

use super::corpus;
use super::dovecot::Dovecot;

/// The demo user.
pub const USER: &str = "demo";
/// The demo user's password.
pub const PASSWORD: &str = "demo-password";
/// Bulk messages seeded below the realistic corpus.
pub const BULK_MESSAGES: u32 = 2_000;

/// Creates the demo user and seeds its mailboxes.
pub fn seed(dovecot: &Dovecot) {
    if !dovecot.dir().join("passwd").join(USER).exists() {
        dovecot.add_user(USER, PASSWORD);
    }
    let realistic = corpus::realistic();
    let oldest_days = realistic.iter().map(|m| m.days_ago).max().unwrap_or(0);
    for msg in &realistic {
        dovecot.deliver(
            USER,
            msg.mailbox,
            &msg.raw,
            msg.flags,
            Some(msg.internal_date()),
        );
    }
    // Bulk mail arrived (and was read) before the realistic corpus, ten minutes apart. Dovecot
    // numbers new Maildir files in the order of their names, which begin with the arrival
    // time, so UIDs follow arrival and INBOX's first page shows the realistic messages.
    let bulk_end = SystemTime::now() - Duration::from_secs(u64::from(oldest_days + 1) * 86_400);
    for (age, raw) in (1..=BULK_MESSAGES)
        .rev()
        .zip(corpus::bulk(BULK_MESSAGES as usize, 1))
    {
        let arrived = bulk_end - Duration::from_secs(u64::from(age) * 600);
        dovecot.deliver(USER, "INBOX", &raw, "S", Some(arrived));
    }
}
