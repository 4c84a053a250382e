//! Listing mailboxes with their roles and counts.

use std::collections::HashMap;

use async_imap::imap_proto::{MailboxDatum, NameAttribute, Response, Status, StatusAttribute};
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
        infer_roles(&mut listed);
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
        infer_roles(&mut listed);
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
        let created = created?;
        if created.status == Status::No && created.code.is_none() && self.is_listed(name).await? {
            // Cyrus says "Mailbox already exists" without RFC 5530's ALREADYEXISTS.
            return Err(ImapError::AlreadyExists);
        }
        created.into_result()?;
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
        let delimiter = self.check_hierarchy_levels(to).await?;
        self.ensure_listed(from).await?;
        // RENAME moves the children along, but neither Dovecot nor Cyrus moves their
        // subscriptions: the bridge moves every subscription under the old name too.
        let subscribed: Vec<MailboxName> = self
            .subscribed_names()
            .await?
            .into_iter()
            .filter(|n| is_descendant(n, from, delimiter.as_deref()))
            .collect();
        let renamed = self
            .run(
                &Command::new("RENAME").mailbox(from).mailbox(to),
                |_| Ok(()),
            )
            .await;
        self.names_changed();
        let renamed = renamed?;
        if renamed.status == Status::No && renamed.code.is_none() && self.is_listed(to).await? {
            return Err(ImapError::AlreadyExists);
        }
        missing_or(renamed)?;
        let mut moves = vec![
            Command::new("UNSUBSCRIBE").mailbox(from),
            Command::new("SUBSCRIBE").mailbox(to),
        ];
        for old in subscribed {
            let suffix = &old.as_str()[from.as_str().len()..];
            if let Ok(new) = MailboxName::new(&format!("{}{suffix}", to.as_str())) {
                moves.push(Command::new("UNSUBSCRIBE").mailbox(&old));
                moves.push(Command::new("SUBSCRIBE").mailbox(&new));
            }
        }
        self.subscribe_quietly(&moves).await
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
        let deleted = deleted?;
        if deleted.status == Status::No {
            let has_children = match deleted.code_name() {
                Some("HASCHILDREN") => true,
                // A server without RFC 5530 codes says it in words; LIST tells for sure.
                None => self.has_children(name).await?,
                Some(_) => false,
            };
            if has_children {
                return Err(ImapError::HasChildren);
            }
        }
        missing_or(deleted)?;
        self.subscribe_quietly(&[Command::new("UNSUBSCRIBE").mailbox(name)])
            .await
    }

    /// Whether LIST shows `name` as an existing mailbox.
    async fn is_listed(&mut self, name: &MailboxName) -> Result<bool> {
        match self.ensure_listed(name).await {
            Ok(()) => Ok(true),
            Err(ImapError::MailboxNotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether any mailbox lies below `name` in the hierarchy.
    async fn has_children(&mut self, name: &MailboxName) -> Result<bool> {
        let delimiter = self.hierarchy_delimiter().await?;
        Ok(self
            .list_mailboxes_only()
            .await?
            .iter()
            .any(|m| is_descendant(&m.name, name, delimiter.as_deref())))
    }

    /// Every subscribed name (LSUB, which every IMAP4rev1 server has).
    async fn subscribed_names(&mut self) -> Result<Vec<MailboxName>> {
        let mut names = Vec::new();
        self.run_raw(
            &Command::new("LSUB").atom("\"\"").list_pattern("*"),
            |r, raw| {
                if let Response::MailboxData(MailboxDatum::List(data)) = r
                    && let Ok(name) = listed_name(raw, &data.name)
                {
                    names.push(name);
                }
                Ok(())
            },
        )
        .await?
        .into_result()?;
        Ok(names)
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
    /// Returns the hierarchy delimiter.
    async fn check_hierarchy_levels(&mut self, name: &MailboxName) -> Result<Option<String>> {
        let delimiter = self.hierarchy_delimiter().await?;
        match &delimiter {
            Some(d) if !d.is_empty() && name.as_str().split(d.as_str()).any(str::is_empty) => {
                Err(InvalidArgument::Empty {
                    what: "part of a mailbox name between hierarchy delimiters",
                }
                .into())
            }
            _ => Ok(delimiter),
        }
    }

    /// The hierarchy delimiter: `LIST "" ""` names it (RFC 3501 §6.3.8).
    async fn hierarchy_delimiter(&mut self) -> Result<Option<String>> {
        let mut delimiter = None;
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
        Ok(delimiter.filter(|d| !d.is_empty()))
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

/// Whether `name` lies below `parent` in a hierarchy delimited by `delimiter`.
fn is_descendant(name: &MailboxName, parent: &MailboxName, delimiter: Option<&str>) -> bool {
    delimiter.is_some_and(|d| {
        name.as_str()
            .strip_prefix(parent.as_str())
            .is_some_and(|rest| rest.starts_with(d))
    })
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

/// Names that clients and servers without SPECIAL-USE (RFC 6154) use for each role, as the
/// last level of a top-level name or of one directly under INBOX (`INBOX.Sent` on Courier).
const WELL_KNOWN_NAMES: [(SpecialUse, &[&str]); 5] = [
    (
        SpecialUse::Trash,
        &[
            "trash",
            "deleted items",
            "deleted messages",
            "deleted",
            "bin",
        ],
    ),
    (
        SpecialUse::Sent,
        &["sent", "sent items", "sent messages", "sent mail"],
    ),
    (SpecialUse::Drafts, &["drafts", "draft"]),
    (
        SpecialUse::Junk,
        &["junk", "spam", "junk e-mail", "junk email", "bulk mail"],
    ),
    (SpecialUse::Archive, &["archive", "archives"]),
];

/// Gives a role to a well-known name when no mailbox has that role from SPECIAL-USE, so a
/// server that marks none (Microsoft 365, old servers) still has a Trash to delete into.
fn infer_roles(listed: &mut [MailboxInfo]) {
    for (role, names) in WELL_KNOWN_NAMES {
        if listed.iter().any(|m| m.special_use == Some(role)) {
            continue;
        }
        let candidate = listed.iter_mut().find(|m| {
            m.special_use.is_none() && m.selectable && {
                let name = m.name.as_str();
                let local = match m.delimiter.as_deref().filter(|d| !d.is_empty()) {
                    Some(d) => {
                        let under_inbox = name
                            .get(..5)
                            .filter(|p| p.eq_ignore_ascii_case("INBOX"))
                            .and_then(|_| name[5..].strip_prefix(d));
                        match under_inbox {
                            Some(rest) => rest,
                            None => name,
                        }
                    }
                    None => name,
                };
                let top_level = m
                    .delimiter
                    .as_deref()
                    .filter(|d| !d.is_empty())
                    .is_none_or(|d| !local.contains(d));
                top_level && names.iter().any(|n| local.eq_ignore_ascii_case(n))
            }
        });
        if let Some(mailbox) = candidate {
            mailbox.special_use = Some(role);
        }
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

    fn info(name: &str, special_use: Option<SpecialUse>) -> MailboxInfo {
        MailboxInfo {
            name: MailboxName::new(name).expect("name"),
            delimiter: Some("/".into()),
            attributes: Vec::new(),
            special_use,
            subscribed: false,
            selectable: true,
            counts: None,
        }
    }

    #[test]
    fn well_known_names_get_the_roles_no_mailbox_has() {
        let mut listed = vec![
            info("INBOX", Some(SpecialUse::Inbox)),
            info("Projects/Trash", None),
            info("Deleted Items", None),
            info("INBOX/Sent Items", None),
            info("Spam", None),
            info("Archive", None),
            info("Old Drafts", Some(SpecialUse::Drafts)),
            info("Drafts", None),
        ];
        infer_roles(&mut listed);
        let roles: Vec<(&str, Option<SpecialUse>)> = listed
            .iter()
            .map(|m| (m.name.as_str(), m.special_use))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("INBOX", Some(SpecialUse::Inbox)),
                ("Projects/Trash", None),
                ("Deleted Items", Some(SpecialUse::Trash)),
                ("INBOX/Sent Items", Some(SpecialUse::Sent)),
                ("Spam", Some(SpecialUse::Junk)),
                ("Archive", Some(SpecialUse::Archive)),
                ("Old Drafts", Some(SpecialUse::Drafts)),
                ("Drafts", None),
            ]
        );
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
