//! Changing mail: flags, copy, move, delete, append.
//!
//! Every operation names messages by UID, so it touches exactly those messages even while
//! other clients expunge or add mail in the same mailbox.

use std::collections::BTreeMap;

use async_imap::imap_proto::{AttributeValue, Response, ResponseCode, Status};

use super::connection::Connection;
use super::encode::{Command, Flag, MailboxName, SearchKey, UidSet};
use super::error::{ImapError, Result};
use super::mailboxes::SpecialUse;

/// How to change flags.
#[derive(Debug, Clone)]
pub enum FlagChange {
    /// Add some flags and remove others (both may be empty).
    AddRemove {
        /// Flags to add.
        add: Vec<Flag>,
        /// Flags to remove.
        remove: Vec<Flag>,
    },
    /// Replace all flags.
    Set(Vec<Flag>),
}

/// A message's new UID after a copy or move (`None` when the server did not say, or the
/// message was gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// UID in the source mailbox.
    pub uid: u32,
    /// UID in the destination mailbox.
    pub new_uid: Option<u32>,
}

/// Flags collected from FETCH responses, by UID.
fn collect_flags(
    into: &mut BTreeMap<u32, Vec<String>>,
) -> impl FnMut(&Response<'_>) -> Result<()> + Send + '_ {
    move |r| {
        if let Response::Fetch(_, attrs) = r {
            let uid = attrs.iter().find_map(|a| match a {
                AttributeValue::Uid(u) => Some(*u),
                _ => None,
            });
            let flags = attrs.iter().find_map(|a| match a {
                AttributeValue::Flags(f) => Some(f),
                _ => None,
            });
            if let (Some(uid), Some(flags)) = (uid, flags) {
                into.insert(
                    uid,
                    flags
                        .iter()
                        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                        .map(|f| f.to_string())
                        .collect(),
                );
            }
        }
        Ok(())
    }
}

impl Connection {
    /// Changes flags of `uids` and returns every still-existing message's flags afterwards,
    /// as the server reports them. UIDs that do not exist are absent from the answer.
    pub async fn change_flags(
        &mut self,
        mailbox: &MailboxName,
        uids: &UidSet,
        change: &FlagChange,
    ) -> Result<BTreeMap<u32, Vec<String>>> {
        self.select(mailbox).await?;
        let mut cmds = Vec::new();
        match change {
            FlagChange::AddRemove { add, remove } => {
                if !add.is_empty() {
                    cmds.push(
                        Command::new("UID STORE")
                            .uid_set(uids)
                            .atom("+FLAGS.SILENT")
                            .flags(add),
                    );
                }
                if !remove.is_empty() {
                    cmds.push(
                        Command::new("UID STORE")
                            .uid_set(uids)
                            .atom("-FLAGS.SILENT")
                            .flags(remove),
                    );
                }
            }
            FlagChange::Set(flags) => {
                cmds.push(
                    Command::new("UID STORE")
                        .uid_set(uids)
                        .atom("FLAGS.SILENT")
                        .flags(flags),
                );
            }
        }
        // Read the result back in the same round trip: the server's view after both changes,
        // including changes other clients made in between.
        cmds.push(Command::new("UID FETCH").uid_set(uids).atom("(UID FLAGS)"));
        let mut flags = BTreeMap::new();
        let done = {
            let mut collect = collect_flags(&mut flags);
            self.run_pipelined(&cmds, |_, r| collect(r)).await?
        };
        for completion in done {
            completion.into_result()?;
        }
        // Unsolicited FETCHes of other messages (changes by other clients) are not ours.
        flags.retain(|uid, _| uids.contains(*uid));
        Ok(flags)
    }

    /// Copies `uids` to `to` and reports the new UIDs (UIDPLUS).
    pub async fn copy_messages(
        &mut self,
        mailbox: &MailboxName,
        uids: &UidSet,
        to: &MailboxName,
    ) -> Result<Vec<Transferred>> {
        self.select(mailbox).await?;
        let cmd = Command::new("UID COPY").uid_set(uids).mailbox(to);
        let done = self.run(&cmd, |_| Ok(())).await?;
        let done = done_or_missing_target(done)?;
        Ok(pair_up(uids, done.copy_uid.as_ref()))
    }

    /// Moves `uids` to `to`: MOVE where offered, else COPY + STORE `\Deleted` + an expunge
    /// of exactly those UIDs (see [`Connection::expunge_exactly`] for servers without
    /// UIDPLUS).
    pub async fn move_messages(
        &mut self,
        mailbox: &MailboxName,
        uids: &UidSet,
        to: &MailboxName,
    ) -> Result<Vec<Transferred>> {
        self.select(mailbox).await?;
        let mut copy_uid = None;
        if self.capabilities().has("MOVE") {
            let cmd = Command::new("UID MOVE").uid_set(uids).mailbox(to);
            // RFC 6851 sends COPYUID in an untagged OK before the expunges.
            let done = self
                .run(&cmd, |r| {
                    if let Response::Data {
                        status: Status::Ok,
                        outcome,
                    } = r
                        && let Some(ResponseCode::CopyUid(validity, from, to)) = &outcome.code
                    {
                        copy_uid = Some((
                            *validity,
                            super::connection::expand_uid_set(from),
                            super::connection::expand_uid_set(to),
                        ));
                    }
                    Ok(())
                })
                .await?;
            let done = done_or_missing_target(done)?;
            let copy_uid = copy_uid.or(done.copy_uid);
            return Ok(pair_up(uids, copy_uid.as_ref()));
        }
        // Refused before anything changes when the expunge could not be limited to `uids`.
        self.check_expunge_is_exact(uids).await?;
        let copied = self
            .run(&Command::new("UID COPY").uid_set(uids).mailbox(to), |_| {
                Ok(())
            })
            .await?;
        let copied = done_or_missing_target(copied)?;
        let moved: Vec<u32> = match &copied.copy_uid {
            Some((_, from, _)) => from.clone(),
            None => uids.iter().collect(),
        };
        if let Ok(set) = UidSet::from_uids(moved) {
            self.expunge_exactly(&set).await?;
        }
        Ok(pair_up(uids, copied.copy_uid.as_ref()))
    }

    /// Marks `uids` `\Deleted` and expunges exactly them; returns the UIDs that existed.
    pub async fn expunge_messages(
        &mut self,
        mailbox: &MailboxName,
        uids: &UidSet,
    ) -> Result<Vec<u32>> {
        self.select(mailbox).await?;
        let mut existing = BTreeMap::new();
        let cmd = Command::new("UID FETCH").uid_set(uids).atom("(UID FLAGS)");
        self.run(&cmd, collect_flags(&mut existing))
            .await?
            .into_result()?;
        existing.retain(|uid, _| uids.contains(*uid));
        let Ok(present) = UidSet::from_uids(existing.keys().copied()) else {
            return Ok(Vec::new());
        };
        self.check_expunge_is_exact(&present).await?;
        self.expunge_exactly(&present).await?;
        Ok(existing.into_keys().collect())
    }

    /// Without UIDPLUS the only expunge is EXPUNGE, which removes every `\Deleted` message
    /// of the mailbox: refuses with [`ImapError::OtherMessagesDeleted`] when a message
    /// outside `uids` carries `\Deleted`, the way careful mail clients do. Another client
    /// setting `\Deleted` in the round trip between this check and the EXPUNGE cannot be
    /// excluded; the README says so.
    async fn check_expunge_is_exact(&mut self, uids: &UidSet) -> Result<()> {
        if self.capabilities().has("UIDPLUS") {
            return Ok(());
        }
        // A session sees other sessions' flag changes only once it syncs; the NOOP goes alone
        // because Dovecot answers what is pipelined behind it from the view before its sync.
        self.noop().await?;
        let others = self
            .search_uids(&[
                SearchKey::Deleted,
                SearchKey::Not(Box::new(SearchKey::Uid(uids.clone()))),
            ])
            .await?;
        if others.is_empty() {
            Ok(())
        } else {
            Err(ImapError::OtherMessagesDeleted)
        }
    }

    /// Marks `uids` `\Deleted` and expunges them: UID EXPUNGE of exactly those with UIDPLUS,
    /// else EXPUNGE after [`Connection::check_expunge_is_exact`].
    async fn expunge_exactly(&mut self, uids: &UidSet) -> Result<()> {
        let store = Command::new("UID STORE")
            .uid_set(uids)
            .atom("+FLAGS.SILENT (\\Deleted)");
        let expunge = if self.capabilities().has("UIDPLUS") {
            Command::new("UID EXPUNGE").uid_set(uids)
        } else {
            Command::new("EXPUNGE")
        };
        for completion in self.run_pipelined(&[store, expunge], |_, _| Ok(())).await? {
            completion.into_result()?;
        }
        Ok(())
    }

    /// Appends a message to `mailbox` with `flags`; returns its UID when the server reports it
    /// (UIDPLUS).
    pub async fn append(
        &mut self,
        mailbox: &MailboxName,
        flags: &[Flag],
        message: &[u8],
    ) -> Result<Option<(u32, u32)>> {
        let cmd = Command::new("APPEND")
            .mailbox(mailbox)
            .flags(flags)
            .literal(message);
        let done = self.run(&cmd, |_| Ok(())).await?;
        let done = done_or_missing_target(done)?;
        Ok(done
            .append_uid
            .and_then(|(validity, uids)| uids.first().map(|uid| (validity, *uid))))
    }

    /// The mailbox with the given role: from its special-use attribute, or from a well-known
    /// name where the server marks none.
    pub async fn special_use_mailbox(&mut self, role: SpecialUse) -> Result<Option<MailboxName>> {
        let all = self.list_mailboxes_only().await?;
        Ok(all
            .into_iter()
            .find(|m| m.special_use == Some(role))
            .map(|m| m.name))
    }
}

/// NO [TRYCREATE] (or a bare NO naming a missing mailbox) means the destination is missing.
fn done_or_missing_target(
    done: super::connection::Completion,
) -> Result<super::connection::Completion> {
    if done.status == Status::No && done.code.is_none() && done.text.contains("doesn't exist") {
        return Err(ImapError::MailboxNotFound);
    }
    done.into_result()
}

fn pair_up(uids: &UidSet, copy_uid: Option<&(u32, Vec<u32>, Vec<u32>)>) -> Vec<Transferred> {
    let map: BTreeMap<u32, u32> = copy_uid
        .map(|(_, from, to)| from.iter().copied().zip(to.iter().copied()).collect())
        .unwrap_or_default();
    uids.iter()
        .map(|uid| Transferred {
            uid,
            new_uid: map.get(&uid).copied(),
        })
        .collect()
}
