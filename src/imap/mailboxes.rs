//! Listing mailboxes with their roles and counts.

use std::collections::HashMap;

use async_imap::imap_proto::{MailboxDatum, NameAttribute, Response, StatusAttribute};
use tracing::warn;

use super::connection::{Connection, wire_string};
use super::encode::{Command, InvalidArgument, MailboxName};
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
            .run_raw(&list_cmd, |r, raw| {
                match r {
                    Response::MailboxData(MailboxDatum::List(data)) => {
                        let attrs: Vec<String> =
                            data.name_attributes.iter().map(attribute_text).collect();
                        match listed_name(raw, &data.name) {
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
                        statuses.insert(wire_string(raw, mailbox).into_owned(), counts(status));
                    }
                    _ => {}
                }
                Ok(())
            })
            .await?;
        done.into_result()?;

        if !list_status {
            // LSUB answers look like LIST answers to imap-proto, so it runs on its own.
            self.run_raw(
                &Command::new("LSUB").atom("\"\"").list_pattern("*"),
                |r, raw| {
                    if let Response::MailboxData(MailboxDatum::List(data)) = r {
                        subscribed.push(wire_string(raw, &data.name).into_owned());
                    }
                    Ok(())
                },
            )
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
                    .run_pipelined_raw(&cmds, |_, r, raw| {
                        if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r {
                            statuses.insert(wire_string(raw, mailbox).into_owned(), counts(status));
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
        self.run_raw(&cmd, |r, raw| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r
                && let Ok(name) = listed_name(raw, &data.name)
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
    ///
    /// The subscription follows only a successful CREATE: sent together, a refused CREATE
    /// (the name exists) would still subscribe the existing mailbox.
    pub async fn create_mailbox(&mut self, name: &MailboxName) -> Result<()> {
        if name.is_inbox() {
            return Err(ImapError::AlreadyExists);
        }
        self.check_hierarchy_levels(name).await?;
        let created = self
            .run(&Command::new("CREATE").mailbox(name), |_| Ok(()))
            .await;
        self.names_changed();
        created?.into_result()?;
        self.subscribe_quietly(&[Command::new("SUBSCRIBE").mailbox(name)])
            .await
    }

    /// Renames a mailbox (and its children) and moves its subscription.
    ///
    /// The subscription moves only after the RENAME succeeded, so a refused rename (the new
    /// name exists, the old one does not) changes nothing.
    pub async fn rename_mailbox(&mut self, from: &MailboxName, to: &MailboxName) -> Result<()> {
        if from.is_inbox() {
            return Err(ImapError::NotAllowed("INBOX cannot be renamed.".into()));
        }
        if to.is_inbox() {
            return Err(ImapError::AlreadyExists);
        }
        self.check_hierarchy_levels(to).await?;
        self.ensure_listed(from).await?;
        let renamed = self
            .run(
                &Command::new("RENAME").mailbox(from).mailbox(to),
                |_| Ok(()),
            )
            .await;
        self.names_changed();
        missing_or(renamed?)?;
        self.subscribe_quietly(&[
            Command::new("UNSUBSCRIBE").mailbox(from),
            Command::new("SUBSCRIBE").mailbox(to),
        ])
        .await
    }

    /// Deletes a mailbox and its subscription.
    ///
    /// The subscription goes only after the DELETE succeeded: a mailbox the server refuses to
    /// delete (it has children, say) stays subscribed.
    pub async fn delete_mailbox(&mut self, name: &MailboxName) -> Result<()> {
        if name.is_inbox() {
            return Err(ImapError::NotAllowed("INBOX cannot be deleted.".into()));
        }
        // A session cannot delete the mailbox it has selected on every server.
        if self.selected().is_some_and(|s| s.name == *name) && self.capabilities().has("UNSELECT") {
            self.run(&Command::new("UNSELECT"), |_| Ok(())).await?;
            self.forget_selected();
        }
        self.ensure_listed(name).await?;
        let deleted = self
            .run(&Command::new("DELETE").mailbox(name), |_| Ok(()))
            .await;
        self.names_changed();
        missing_or(deleted?)?;
        self.subscribe_quietly(&[Command::new("UNSUBSCRIBE").mailbox(name)])
            .await
    }

    /// `MailboxNotFound` unless LIST shows `name`. Asked before DELETE and RENAME because
    /// Dovecot answers those for a name its storage could never hold (too long for the file
    /// system) with an internal error rather than "no such mailbox".
    async fn ensure_listed(&mut self, name: &MailboxName) -> Result<()> {
        let mut listed = false;
        self.run(&Command::new("LIST").atom("\"\"").mailbox(name), |r| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r {
                listed |= !data.name_attributes.iter().any(|a| {
                    matches!(a, NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent"))
                });
            }
            Ok(())
        })
        .await?
        .into_result()?;
        if listed {
            Ok(())
        } else {
            Err(ImapError::MailboxNotFound)
        }
    }

    /// Refuses a name with an empty level (`A//B`, `/A`, `A/`), which servers reject or, worse,
    /// quietly change: Dovecot creates `A` for `A/` (RFC 3501 reads a trailing delimiter as "will
    /// have children"), so the caller would be told of a mailbox that does not exist.
    async fn check_hierarchy_levels(&mut self, name: &MailboxName) -> Result<()> {
        let mut delimiter = None;
        // `LIST "" ""` names the hierarchy delimiter (RFC 3501 §6.3.8).
        self.run_raw(&Command::new("LIST").atom("\"\" \"\""), |r, raw| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r {
                delimiter = data
                    .delimiter
                    .as_deref()
                    .map(|d| wire_string(raw, d).into_owned());
            }
            Ok(())
        })
        .await?
        .into_result()?;
        match delimiter {
            Some(d) if !d.is_empty() && name.as_str().split(d.as_str()).any(str::is_empty) => {
                Err(InvalidArgument::Empty {
                    what: "part of a mailbox name between hierarchy delimiters",
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// Updates subscriptions after a change that already happened: the server's NO (e.g. to
    /// unsubscribing a name that was never subscribed) does not undo the change, so only a
    /// broken session is an error.
    async fn subscribe_quietly(&mut self, cmds: &[Command]) -> Result<()> {
        for done in self.run_pipelined(cmds, |_, _| Ok(())).await? {
            if done.status != async_imap::imap_proto::Status::Ok {
                warn!(text = %done.text, "subscription update refused");
            }
        }
        Ok(())
    }
}

/// A mailbox name as LIST reports it, from the response's `raw` bytes: a quoted name has its
/// escapes undone, a literal is taken as is (Dovecot sends names holding both `"` and `\` as
/// literals), then the modified UTF-7 is decoded.
fn listed_name(raw: &[u8], name: &str) -> Result<MailboxName, InvalidArgument> {
    MailboxName::from_imap(&wire_string(raw, name))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The name in a LIST response line, parsed by imap-proto as the bridge receives it.
    fn name_in(line: &[u8]) -> String {
        let (_, response) = async_imap::imap_proto::Response::parse(line).expect("parses");
        let Response::MailboxData(MailboxDatum::List(data)) = response else {
            panic!("a LIST response");
        };
        listed_name(line, &data.name)
            .expect("valid")
            .as_str()
            .to_owned()
    }

    #[test]
    fn quoted_names_lose_their_escapes_and_literals_keep_every_byte() {
        assert_eq!(name_in(b"* LIST () \"/\" \"Plain\"\r\n"), "Plain");
        assert_eq!(
            name_in(b"* LIST () \"/\" \"Tom &- \\\"Jerry\\\" \\\\o/\"\r\n"),
            r#"Tom & "Jerry" \o/"#
        );
        // Dovecot sends a name holding both `"` and `\` as a literal: nothing to undo.
        let literal = b"* LIST (\\Subscribed) \"/\" {22}\r\nhe said \"hi\\\" \\\\ there\r\n";
        assert_eq!(name_in(literal), r#"he said "hi\" \\ there"#);
        assert_eq!(
            name_in(b"* LIST () \"/\" \"&BB8EQAQ+BDUEOgRCBEs-/&ANw-ber\"\r\n"),
            "Проекты/Über"
        );
        // A string that is not inside the response is taken as is.
        assert_eq!(wire_string(b"other", r#"a\"b"#), r#"a\"b"#);
    }
}
