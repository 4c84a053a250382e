//! Conversations: `GET /v1/mailboxes/{mailbox}/threads` and
//! `GET /v1/mailboxes/{mailbox}/threads/{thread_id}`.
//!
//! The filter parameters are those of header lists, parsed by the same code
//! (`super::messages::Filters`). The query structs list them again because serde cannot
//! flatten a struct into one that refuses unknown fields.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::messages::Filters;
use super::schema::{CursorSchema, MailboxNameSchema, ThreadIdSchema};
use crate::imap::encode::MailboxName;
use crate::imap::state::{PageCursor, ThreadId, query_fingerprint};
use crate::imap::thread_index::Side;
use crate::imap::threads::{ThreadPageRequest, ThreadQuery};
use crate::mail::summary::{Address, Summary};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_threads))
        .routes(routes!(get_thread))
}

/// Paging and filters of a thread list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThreadListQuery {
    /// Threads per page.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<CursorSchema>)]
    pub cursor: Option<String>,
    /// Only messages without (`true`) or with (`false`) `\Seen`.
    pub unseen: Option<bool>,
    /// Only messages with (`true`) or without (`false`) `\Flagged`.
    pub flagged: Option<bool>,
    /// Substring of the From header.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub from: Option<String>,
    /// Substring of the To header.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub to: Option<String>,
    /// Substring of the subject.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub subject: Option<String>,
    /// Substring of the headers or body.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub text: Option<String>,
    /// Received on or after this day (IMAP internal date).
    pub since: Option<NaiveDate>,
    /// Received before this day (IMAP internal date).
    pub before: Option<NaiveDate>,
    /// Also thread in the user's own messages from the Sent mailbox (found by its role, or
    /// its usual name).
    #[param(default = false)]
    pub include_sent: Option<bool>,
    /// Include each summary's `preview` (the default). `false` leaves it out, and the bridge
    /// then reads no message text for it.
    #[param(default = true)]
    pub preview: Option<bool>,
}

/// Which threads a thread id is looked up among: the filters and `include_sent` of the list
/// it came from (none: the whole conversation).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThreadQueryParams {
    /// Only messages without (`true`) or with (`false`) `\Seen`.
    pub unseen: Option<bool>,
    /// Only messages with (`true`) or without (`false`) `\Flagged`.
    pub flagged: Option<bool>,
    /// Substring of the From header.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub from: Option<String>,
    /// Substring of the To header.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub to: Option<String>,
    /// Substring of the subject.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub subject: Option<String>,
    /// Substring of the headers or body.
    #[param(min_length = 1, max_length = 1000, pattern = r"^[^\x00\r\n]+$")]
    pub text: Option<String>,
    /// Received on or after this day (IMAP internal date).
    pub since: Option<NaiveDate>,
    /// Received before this day (IMAP internal date).
    pub before: Option<NaiveDate>,
    /// Also thread in the user's own messages from the Sent mailbox (found by its role, or
    /// its usual name).
    #[param(default = false)]
    pub include_sent: Option<bool>,
    /// Include each summary's `preview` (the default). `false` leaves it out, and the bridge
    /// then reads no message text for it.
    #[param(default = true)]
    pub preview: Option<bool>,
}

/// The filters of either query and `include_sent`.
struct ThreadFilters<'a> {
    filters: Filters<'a>,
    include_sent: Option<bool>,
}

impl ThreadFilters<'_> {
    /// The query for the IMAP layer and the fingerprint its cursors carry (which no header
    /// list's cursor has).
    fn to_query(&self) -> ApiResult<(ThreadQuery, u32)> {
        let mut parts: Vec<String> = vec!["threads".to_owned()];
        let filters = self.filters.search_keys(&mut parts)?;
        let include_sent = self.include_sent.unwrap_or(false);
        parts.push(format!("include_sent={include_sent}"));
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok((
            ThreadQuery {
                filters,
                include_sent,
            },
            query_fingerprint(&parts),
        ))
    }
}

impl ThreadListQuery {
    fn to_request(&self) -> ApiResult<(ThreadQuery, ThreadPageRequest)> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 200."));
        }
        let (query, fingerprint) = ThreadFilters {
            filters: Filters {
                unseen: self.unseen,
                flagged: self.flagged,
                from: &self.from,
                to: &self.to,
                subject: &self.subject,
                text: &self.text,
                since: self.since,
                before: self.before,
            },
            include_sent: self.include_sent,
        }
        .to_query()?;
        // Whether the cursor was made for this list is checked after its UIDVALIDITY: a
        // cursor from before a mailbox reset gets 409 whatever it was for.
        let cursor = self
            .cursor
            .as_deref()
            .map(str::parse::<PageCursor>)
            .transpose()?;
        Ok((
            query,
            ThreadPageRequest {
                limit,
                cursor,
                query: fingerprint,
                preview: self.preview.unwrap_or(true),
            },
        ))
    }
}

impl ThreadQueryParams {
    fn to_query(&self) -> ApiResult<ThreadQuery> {
        ThreadFilters {
            filters: Filters {
                unseen: self.unseen,
                flagged: self.flagged,
                from: &self.from,
                to: &self.to,
                subject: &self.subject,
                text: &self.text,
                since: self.since,
                before: self.before,
            },
            include_sent: self.include_sent,
        }
        .to_query()
        .map(|(query, _)| query)
    }
}

/// A thread in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadItem {
    /// The thread's id within the mailbox: pass it to `…/threads/{thread_id}`. It stays the
    /// same as the conversation grows, when earlier messages of it arrive and when its first
    /// message is deleted, as long as the next one names the conversation's start in
    /// `References` or `In-Reply-To` (replies do).
    #[schema(value_type = ThreadIdSchema)]
    pub thread_id: String,
    /// The first message's subject.
    pub subject: Option<String>,
    /// Its messages: `uids` and `sent_uids` together.
    pub messages: u32,
    /// Its messages in the mailbox without `\Seen` (`unread_uids`); the user's own from Sent
    /// never count.
    pub unread: u32,
    /// Distinct authors (From) in reading order, at most 20.
    pub participants: Vec<Address>,
    /// Summary of its latest message in the mailbox: the one the list is ordered by.
    pub latest: Summary,
    /// UIDs of its messages in the mailbox, in reading order.
    pub uids: Vec<u32>,
    /// Those of `uids` without `\Seen`.
    pub unread_uids: Vec<u32>,
    /// UIDs of its messages in `sent_mailbox`, in reading order; empty without `include_sent`.
    pub sent_uids: Vec<u32>,
}

/// A page of a mailbox's threads.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "mailbox": "INBOX",
    "uid_validity": 1700000000,
    "state": "s1.1700000000.48211.10301",
    "total": 4811,
    "sent_mailbox": null,
    "threads": [{
        "thread_id": "t1.5f3e2a11c09d7b64",
        "subject": "Quarterly report",
        "messages": 3,
        "unread": 1,
        "participants": [
            {"name": "Bob Martin", "address": "bob@example.com"},
            {"name": "Alice", "address": "alice@example.com"}
        ],
        "latest": {
            "uid": 10300, "message_id": "<CAF=ab12@mail.example.com>",
            "subject": "Re: Quarterly report", "from": [{"name": "Bob Martin", "address": "bob@example.com"}],
            "to": [{"name": null, "address": "alice@example.com"}], "cc": [], "reply_to": [],
            "date": "2024-03-01T10:15:00Z", "received_at": "2024-03-01T10:15:02Z",
            "flags": [], "size": 48213, "has_attachments": false, "in_reply_to": "<CAF=9x@mail.example.com>",
            "preview": "Thanks, the figures look right to me."
        },
        "uids": [10211, 10254, 10300],
        "unread_uids": [10300],
        "sent_uids": []
    }],
    "next_cursor": "c1.1700000000.10300.10211.5d41402a"
}))]
pub struct ThreadList {
    /// The mailbox.
    pub mailbox: String,
    /// UIDVALIDITY the UIDs belong to; a change means the client must start over.
    pub uid_validity: u32,
    /// Delta-sync state of the mailbox for `changes` and events, taken before the list was
    /// read.
    pub state: String,
    /// Threads in the list.
    pub total: u32,
    /// The Sent mailbox whose messages joined the threads (`include_sent`); null without it,
    /// when the account has none, or when the listed mailbox is Sent.
    pub sent_mailbox: Option<String>,
    /// The page, newest thread first by its latest message in the mailbox.
    pub threads: Vec<ThreadItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A mailbox's conversations, newest first by their latest message in the mailbox (in
/// arrival order, as header lists), each with its message count, unread count, participants
/// and the summary of that latest message.
///
/// Threads are the RFC 5256 REFERENCES algorithm's: by `Message-ID`, `In-Reply-To` and
/// `References`, and replies that lost their references by subject. The server threads where
/// it offers `THREAD=REFERENCES`; otherwise, and with `include_sent`, the bridge threads with
/// the same algorithm from each message's header (fetched once and cached; a cold list of
/// 10,000 messages fetches 10,000 headers). Filters select the messages threads are built
/// from. While the list is cached (the mailbox unchanged), a page costs a NOOP, a STATUS, a
/// search for the unread among the page's messages and the page's summaries.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/threads",
    tag = "threads",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment (`Archive%2F2024`)."),
        ThreadListQuery,
    ),
    responses(
        (status = 200, description = "A page of threads.", body = ThreadList),
        (status = 400, description = "Bad name, cursor (or one of another list), limit, date or filter (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cursor's UIDVALIDITY is gone, or the Sent mailbox threaded in was recreated while the list was read (`uid_validity_changed`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_threads(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiQuery(query): ApiQuery<ThreadListQuery>,
) -> ApiResult<Json<ThreadList>> {
    let name = MailboxName::new(&mailbox)?;
    let (query, page) = query.to_request()?;
    let cache = state.threads.as_ref().map(|c| c.scope(&user.key));
    let mut session = user.session(&state).await?;
    let page = session
        .thread_page(cache.as_ref(), &name, &query, &page)
        .await?;
    Ok(Json(ThreadList {
        mailbox: name.as_str().to_owned(),
        uid_validity: page.uid_validity,
        state: page.state.to_string(),
        total: page.total,
        sent_mailbox: page.sent_mailbox.map(|m| m.as_str().to_owned()),
        threads: page
            .threads
            .into_iter()
            .map(|t| ThreadItem {
                thread_id: t.id.to_string(),
                subject: t.subject,
                messages: count(t.uids.len() + t.sent_uids.len()),
                unread: count(t.unread_uids.len()),
                participants: t.participants,
                latest: t.latest,
                uids: t.uids,
                unread_uids: t.unread_uids,
                sent_uids: t.sent_uids,
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One message of a thread.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadMessageView {
    /// The mailbox it is in: the one asked for, or `sent_mailbox`.
    pub mailbox: String,
    /// Its depth in the reply tree: 0 for the first message (and for replies to a message
    /// that is not there), 1 for its replies…
    pub depth: u32,
    /// Summary fields.
    #[serde(flatten)]
    pub summary: Summary,
}

/// A thread with its messages.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "mailbox": "INBOX",
    "uid_validity": 1700000000,
    "thread_id": "t1.5f3e2a11c09d7b64",
    "subject": "Quarterly report",
    "sent_mailbox": "Sent",
    "unread": 0,
    "participants": [{"name": "Bob Martin", "address": "bob@example.com"}, {"name": "Alice", "address": "alice@example.com"}],
    "messages": [
        {"mailbox": "INBOX", "depth": 0, "uid": 10211, "message_id": "<CAF=9x@mail.example.com>",
         "subject": "Quarterly report", "from": [{"name": "Bob Martin", "address": "bob@example.com"}],
         "to": [{"name": null, "address": "alice@example.com"}], "cc": [], "reply_to": [],
         "date": "2024-02-28T09:00:00Z", "received_at": "2024-02-28T09:00:01Z",
         "flags": ["\\Seen"], "size": 5120, "has_attachments": false, "in_reply_to": null,
         "preview": "Hi Alice, the Q1 report is attached."},
        {"mailbox": "Sent", "depth": 1, "uid": 733, "message_id": "<a1@alice.example.com>",
         "subject": "Re: Quarterly report", "from": [{"name": "Alice", "address": "alice@example.com"}],
         "to": [{"name": "Bob Martin", "address": "bob@example.com"}], "cc": [], "reply_to": [],
         "date": "2024-02-28T11:30:00Z", "received_at": "2024-02-28T11:30:00Z",
         "flags": ["\\Seen"], "size": 2210, "has_attachments": false, "in_reply_to": "<CAF=9x@mail.example.com>",
         "preview": "Thanks, the figures look right to me."}
    ]
}))]
pub struct ThreadView {
    /// The mailbox.
    pub mailbox: String,
    /// UIDVALIDITY the UIDs of the mailbox belong to.
    pub uid_validity: u32,
    /// The thread's id.
    #[schema(value_type = ThreadIdSchema)]
    pub thread_id: String,
    /// The first message's subject.
    pub subject: Option<String>,
    /// The Sent mailbox whose messages joined the thread (`include_sent`), else null.
    pub sent_mailbox: Option<String>,
    /// Its messages in the mailbox without `\Seen`.
    pub unread: u32,
    /// Distinct authors (From) in reading order, at most 20.
    pub participants: Vec<Address>,
    /// Its messages in reading order: each before its replies, replies oldest first.
    pub messages: Vec<ThreadMessageView>,
}

/// One thread with the summaries of its messages in reading order, each with its depth in the
/// reply tree and its mailbox. Without filters it is the whole conversation in the mailbox
/// (and Sent, with `include_sent`); with the filters of the list the id came from, it is the
/// thread as that list showed it. Costs what a thread list costs, plus the summaries of the
/// thread's messages.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/threads/{thread_id}",
    tag = "threads",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("thread_id" = ThreadIdSchema, Path, description = "The thread's `thread_id` from a thread list."),
        ThreadQueryParams,
    ),
    responses(
        (status = 200, description = "The thread.", body = ThreadView),
        (status = 400, description = "Bad name, thread id, date or filter (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`), or no thread with that id among its threads of these filters (`thread_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mailbox, or the Sent mailbox threaded in, was recreated while the thread was read (`uid_validity_changed`): list the threads again.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_thread(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, thread_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ThreadQueryParams>,
) -> ApiResult<Json<ThreadView>> {
    let name = MailboxName::new(&mailbox)?;
    let id: ThreadId = thread_id.parse()?;
    let preview = query.preview.unwrap_or(true);
    let query = query.to_query()?;
    let cache = state.threads.as_ref().map(|c| c.scope(&user.key));
    let mut session = user.session(&state).await?;
    let thread = session
        .thread_detail(cache.as_ref(), &name, &query, id, preview)
        .await?;
    drop(session);
    let sent = thread.sent_mailbox.map(|m| m.as_str().to_owned());
    let unread = thread
        .messages
        .iter()
        .filter(|m| {
            m.side == Side::Listed
                && !m
                    .summary
                    .flags
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case("\\Seen"))
        })
        .count();
    Ok(Json(ThreadView {
        mailbox: name.as_str().to_owned(),
        uid_validity: thread.uid_validity,
        thread_id: thread.id.to_string(),
        subject: thread.subject,
        unread: count(unread),
        participants: thread.participants,
        messages: thread
            .messages
            .into_iter()
            .map(|m| ThreadMessageView {
                mailbox: match m.side {
                    Side::Listed => name.as_str().to_owned(),
                    Side::Sent => sent.clone().unwrap_or_default(),
                },
                depth: m.depth,
                summary: m.summary,
            })
            .collect(),
        sent_mailbox: sent,
    }))
}
