//! Listing mailboxes with their roles and counts.

use std::collections::HashMap;

use async_imap::imap_proto::{MailboxDatum, NameAttribute, Response, StatusAttribute};
use tracing::warn;

use super::connection::Connection;
use super::encode::{Command, MailboxName};
use super::error::{ImapError, Result};

/// A mailbox's special-use role (RFC 6154), plus INBOX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialUse {
    /// The INBOX.
    Inbox,
    /// Sent mail.
    Sent,
    /// Drafts.
    Drafts,
    /// Deleted mail.
    Trash,
    /// Spam.
    Junk,
    /// Archive.
    Archive,
    /// Virtual "all mail".
    All,
    /// Virtual "flagged mail".
    Flagged,
}

/// Message counts from STATUS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Messages in the mailbox.
    pub total: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
}

/// One mailbox as listed.
#[derive(Debug, Clone)]
pub struct MailboxInfo {
    /// Full name.
    pub name: MailboxName,
    /// Hierarchy delimiter, if the server has hierarchy.
    pub delimiter: Option<String>,
    /// LIST attributes as the server sent them (`\HasNoChildren`, `\Sent`, ...).
    pub attributes: Vec<String>,
    /// Role.
    pub special_use: Option<SpecialUse>,
    /// In the subscription list.
    pub subscribed: bool,
    /// Whether it can hold messages (not `\Noselect` / `\NonExistent`).
    pub selectable: bool,
    /// Counts, for selectable mailboxes.
    pub counts: Option<MailboxCounts>,
}

const STATUS_ITEMS: &str = "(MESSAGES UNSEEN UIDVALIDITY UIDNEXT)";

impl Connection {
    /// Every mailbox with role, subscription and counts: one round trip with LIST-STATUS,
    /// otherwise two (LIST + LSUB, then all STATUS commands pipelined).
    pub async fn list_mailboxes(&mut self) -> Result<Vec<MailboxInfo>> {
        let caps = self.capabilities();
        let list_status = caps.has("LIST-STATUS") && caps.has("LIST-EXTENDED");
        let special_use = caps.has("SPECIAL-USE");
        let mut listed: Vec<MailboxInfo> = Vec::new();
        let mut subscribed: Vec<String> = Vec::new();
        let mut statuses: HashMap<String, MailboxCounts> = HashMap::new();

        let list_cmd =
            if list_status {
                Command::new("LIST").atom("\"\"").list_pattern("*").atom(if special_use {
                "RETURN (SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN UIDVALIDITY UIDNEXT))"
            } else {
                "RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN UIDVALIDITY UIDNEXT))"
            })
            } else {
                Command::new("LIST").atom("\"\"").list_pattern("*")
            };
        let done = self
            .run(&list_cmd, |r| {
                match r {
                    Response::MailboxData(MailboxDatum::List(data)) => {
                        let attrs: Vec<String> =
                            data.name_attributes.iter().map(attribute_text).collect();
                        match MailboxName::from_imap(&data.name) {
                            Ok(name) => listed.push(MailboxInfo {
                                special_use: role(&name, &data.name_attributes),
                                subscribed: attrs
                                    .iter()
                                    .any(|a| a.eq_ignore_ascii_case("\\Subscribed")),
                                selectable: !attrs.iter().any(|a| {
                                    a.eq_ignore_ascii_case("\\Noselect")
                                        || a.eq_ignore_ascii_case("\\NonExistent")
                                }),
                                name,
                                delimiter: data.delimiter.as_ref().map(|d| d.to_string()),
                                attributes: attrs,
                                counts: None,
                            }),
                            Err(e) => {
                                warn!(error = %e, "skipping a mailbox whose name does not decode")
                            }
                        }
                    }
                    Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                        statuses.insert(mailbox.to_string(), counts(status));
                    }
                    _ => {}
                }
                Ok(())
            })
            .await?;
        done.into_result()?;

        if !list_status {
            // LSUB answers look like LIST answers to imap-proto, so it runs on its own.
            self.run(&Command::new("LSUB").atom("\"\"").list_pattern("*"), |r| {
                if let Response::MailboxData(MailboxDatum::List(data)) = r {
                    subscribed.push(data.name.to_string());
                }
                Ok(())
            })
            .await?
            .into_result()?;
        }
        if !list_status {
            for info in &mut listed {
                info.subscribed = subscribed.iter().any(|s| *s == info.name.to_imap());
            }
            let wanted: Vec<&MailboxInfo> = listed.iter().filter(|m| m.selectable).collect();
            if !wanted.is_empty() {
                let cmds: Vec<Command> = wanted
                    .iter()
                    .map(|m| Command::new("STATUS").mailbox(&m.name).atom(STATUS_ITEMS))
                    .collect();
                // A mailbox deleted between LIST and STATUS just has no counts.
                let _ = self
                    .run_pipelined(&cmds, |_, r| {
                        if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r {
                            statuses.insert(mailbox.to_string(), counts(status));
                        }
                        Ok(())
                    })
                    .await?;
            }
        }
        for info in &mut listed {
            if let Some(c) = statuses.remove(&info.name.to_imap()) {
                info.counts = Some(c);
            } else if info.name.is_inbox() {
                info.counts = statuses
                    .remove("INBOX")
                    .or_else(|| statuses.remove("inbox"));
            }
        }
        Ok(listed)
    }
}

impl Connection {
    /// Every mailbox with its attributes (special-use included where offered), no counts.
    pub async fn list_mailboxes_only(&mut self) -> Result<Vec<MailboxInfo>> {
        let cmd =
            if self.capabilities().has("SPECIAL-USE") && self.capabilities().has("LIST-EXTENDED") {
                Command::new("LIST")
                    .atom("\"\"")
                    .list_pattern("*")
                    .atom("RETURN (SPECIAL-USE)")
            } else {
                Command::new("LIST").atom("\"\"").list_pattern("*")
            };
        let mut listed = Vec::new();
        self.run(&cmd, |r| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r
                && let Ok(name) = MailboxName::from_imap(&data.name)
            {
                let attributes: Vec<String> =
                    data.name_attributes.iter().map(attribute_text).collect();
                listed.push(MailboxInfo {
                    special_use: role(&name, &data.name_attributes),
                    subscribed: false,
                    selectable: !attributes.iter().any(|a| {
                        a.eq_ignore_ascii_case("\\Noselect")
                            || a.eq_ignore_ascii_case("\\NonExistent")
                    }),
                    name,
                    delimiter: data.delimiter.as_ref().map(|d| d.to_string()),
                    attributes,
                    counts: None,
                });
            }
            Ok(())
        })
        .await?
        .into_result()?;
        Ok(listed)
    }

    /// Creates a mailbox and subscribes to it.
    pub async fn create_mailbox(&mut self, name: &MailboxName) -> Result<()> {
        if name.is_inbox() {
            return Err(ImapError::AlreadyExists);
        }
        let cmds = [
            Command::new("CREATE").mailbox(name),
            Command::new("SUBSCRIBE").mailbox(name),
        ];
        let mut done = self.run_pipelined(&cmds, |_, _| Ok(())).await?.into_iter();
        self.names_changed();
        if let Some(created) = done.next() {
            created.into_result()?;
        }
        Ok(())
    }

    /// Renames a mailbox (and its children) and moves its subscription.
    pub async fn rename_mailbox(&mut self, from: &MailboxName, to: &MailboxName) -> Result<()> {
        if from.is_inbox() {
            return Err(ImapError::NotAllowed("INBOX cannot be renamed.".into()));
        }
        if to.is_inbox() {
            return Err(ImapError::AlreadyExists);
        }
        let cmds = [
            Command::new("RENAME").mailbox(from).mailbox(to),
            Command::new("UNSUBSCRIBE").mailbox(from),
            Command::new("SUBSCRIBE").mailbox(to),
        ];
        let mut done = self.run_pipelined(&cmds, |_, _| Ok(())).await?.into_iter();
        self.names_changed();
        if let Some(renamed) = done.next() {
            missing_or(renamed)?;
        }
        Ok(())
    }

    /// Deletes a mailbox and its subscription.
    pub async fn delete_mailbox(&mut self, name: &MailboxName) -> Result<()> {
        if name.is_inbox() {
            return Err(ImapError::NotAllowed("INBOX cannot be deleted.".into()));
        }
        // A session cannot delete the mailbox it has selected on every server.
        if self.selected().is_some_and(|s| s.name == *name) {
            self.run(&Command::new("UNSELECT"), |_| Ok(())).await?;
            self.forget_selected();
        }
        let cmds = [
            Command::new("DELETE").mailbox(name),
            Command::new("UNSUBSCRIBE").mailbox(name),
        ];
        let mut done = self.run_pipelined(&cmds, |_, _| Ok(())).await?.into_iter();
        self.names_changed();
        if let Some(deleted) = done.next() {
            missing_or(deleted)?;
        }
        Ok(())
    }
}

/// A bare NO about a mailbox that does not exist is "not found"; others keep their mapping.
fn missing_or(done: super::connection::Completion) -> Result<super::connection::Completion> {
    if done.status == async_imap::imap_proto::Status::No
        && done.code.is_none()
        && done.text.contains("doesn't exist")
    {
        return Err(ImapError::MailboxNotFound);
    }
    if done.status == async_imap::imap_proto::Status::No && done.code.as_deref() == Some("INUSE") {
        return Err(ImapError::NotAllowed(
            "The mailbox is in use; try again.".into(),
        ));
    }
    done.into_result()
}

fn counts(status: &[StatusAttribute]) -> MailboxCounts {
    let mut c = MailboxCounts::default();
    for attr in status {
        match attr {
            StatusAttribute::Messages(n) => c.total = *n,
            StatusAttribute::Unseen(n) => c.unseen = *n,
            StatusAttribute::UidValidity(n) => c.uid_validity = *n,
            StatusAttribute::UidNext(n) => c.uid_next = *n,
            _ => {}
        }
    }
    c
}

fn attribute_text(attr: &NameAttribute<'_>) -> String {
    match attr {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(s) => s.to_string(),
        _ => String::new(),
    }
}

fn role(name: &MailboxName, attrs: &[NameAttribute<'_>]) -> Option<SpecialUse> {
    if name.is_inbox() {
        return Some(SpecialUse::Inbox);
    }
    attrs.iter().find_map(|a| match a {
        NameAttribute::Sent => Some(SpecialUse::Sent),
        NameAttribute::Drafts => Some(SpecialUse::Drafts),
        NameAttribute::Trash => Some(SpecialUse::Trash),
        NameAttribute::Junk => Some(SpecialUse::Junk),
        NameAttribute::Archive => Some(SpecialUse::Archive),
        NameAttribute::All => Some(SpecialUse::All),
        NameAttribute::Flagged => Some(SpecialUse::Flagged),
        _ => None,
    })
}
