//! Header lists and message views: `GET /v1/mailboxes/{mailbox}/messages` and
//! `GET /v1/mailboxes/{mailbox}/messages/{uid}`. Downloads live in [`super::downloads`].

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::schema::{BinarySchema, CursorSchema, FlagListSchema, MailboxNameSchema, UidSchema};
use crate::imap::encode::{ImapString, MailboxName, SearchKey};
use crate::imap::messages::{HeaderPage, Order, PageRequest, SortKey};
use crate::imap::state::{PageCursor, query_fingerprint};
use crate::mail::content::{Header, decode_text, parse_headers};
use crate::mail::listing::push_json_string;
use crate::mail::structure::Attachment;
use crate::mail::summary::Summary;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, append_message))
        .routes(routes!(get_message, delete_message))
}

/// Sort key of a header list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortParam {
    /// The order mail entered the folder (UID order).
    #[default]
    Arrival,
    /// The Date header.
    Date,
    /// The sender.
    From,
    /// The subject.
    Subject,
    /// The size.
    Size,
}

/// Direction of a header list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderParam {
    /// Newest (largest, last) first.
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// Paging, order and filters of a header list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<CursorSchema>)]
    pub cursor: Option<String>,
    /// Sort key; anything but `arrival` needs IMAP SORT on the server.
    #[param(inline)]
    pub sort: Option<SortParam>,
    /// Direction.
    #[param(inline)]
    pub order: Option<OrderParam>,
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
    /// Include each summary's `preview` (the default). `false` leaves it out, and the bridge
    /// then reads no message text for it.
    #[param(default = true)]
    pub preview: Option<bool>,
}

/// Longest accepted filter string.
const MAX_FILTER_LEN: usize = 1000;

/// The filters of a list query, borrowed: header lists and the thread routes take the same.
pub(super) struct Filters<'a> {
    pub(super) unseen: Option<bool>,
    pub(super) flagged: Option<bool>,
    pub(super) from: &'a Option<String>,
    pub(super) to: &'a Option<String>,
    pub(super) subject: &'a Option<String>,
    pub(super) text: &'a Option<String>,
    pub(super) since: Option<NaiveDate>,
    pub(super) before: Option<NaiveDate>,
}

impl Filters<'_> {
    /// The IMAP search keys, each checked; what each adds to the query's fingerprint (which
    /// cursors carry) is pushed on `fingerprint`.
    pub(super) fn search_keys(&self, fingerprint: &mut Vec<String>) -> ApiResult<Vec<SearchKey>> {
        let mut filters = Vec::new();
        match self.unseen {
            Some(true) => filters.push(SearchKey::Unseen),
            Some(false) => filters.push(SearchKey::Seen),
            None => {}
        }
        match self.flagged {
            Some(true) => filters.push(SearchKey::Flagged),
            Some(false) => filters.push(SearchKey::Unflagged),
            None => {}
        }
        fingerprint.push(format!("{:?}{:?}", self.unseen, self.flagged));
        for (field, value, make) in [
            (
                "from",
                self.from,
                SearchKey::From as fn(ImapString) -> SearchKey,
            ),
            ("to", self.to, SearchKey::To),
            ("subject", self.subject, SearchKey::Subject),
            ("text", self.text, SearchKey::Text),
        ] {
            if let Some(value) = value {
                if value.is_empty() || value.chars().count() > MAX_FILTER_LEN {
                    return Err(ApiError::invalid(format!(
                        "`{field}` must be 1 to {MAX_FILTER_LEN} characters."
                    )));
                }
                let s = ImapString::new(value)
                    .map_err(|e| ApiError::invalid(format!("`{field}`: {e}")))?;
                filters.push(make(s));
                fingerprint.push(format!("{field}={value}"));
            }
        }
        if let Some(d) = self.since {
            filters.push(SearchKey::Since(d));
            fingerprint.push(format!("since={d}"));
        }
        if let Some(d) = self.before {
            filters.push(SearchKey::Before(d));
            fingerprint.push(format!("before={d}"));
        }
        Ok(filters)
    }
}

impl ListQuery {
    fn to_page_request(&self) -> ApiResult<PageRequest> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 200."));
        }
        let mut fingerprint_parts: Vec<String> = Vec::new();
        let filters = Filters {
            unseen: self.unseen,
            flagged: self.flagged,
            from: &self.from,
            to: &self.to,
            subject: &self.subject,
            text: &self.text,
            since: self.since,
            before: self.before,
        }
        .search_keys(&mut fingerprint_parts)?;
        let sort = match self.sort.unwrap_or_default() {
            SortParam::Arrival => SortKey::Arrival,
            SortParam::Date => SortKey::Date,
            SortParam::From => SortKey::From,
            SortParam::Subject => SortKey::Subject,
            SortParam::Size => SortKey::Size,
        };
        let order = match self.order.unwrap_or_default() {
            OrderParam::Desc => Order::Desc,
            OrderParam::Asc => Order::Asc,
        };
        fingerprint_parts.push(format!("{sort:?}/{order:?}"));
        let parts: Vec<&str> = fingerprint_parts.iter().map(String::as_str).collect();
        let query = query_fingerprint(&parts);
        // Whether the cursor was made for this query is checked after its UIDVALIDITY (in
        // `header_page`): a cursor from before a mailbox reset gets 409 whatever it was for.
        let cursor = self
            .cursor
            .as_deref()
            .map(str::parse::<PageCursor>)
            .transpose()?;
        Ok(PageRequest {
            limit,
            cursor,
            sort,
            order,
            filters,
            query,
            preview: self.preview.unwrap_or(true),
        })
    }
}

// The handler writes this JSON with `message_list_json`, from summaries kept as JSON: the
// struct is its schema, and what that JSON says.
/// A page of the header list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "mailbox": "INBOX",
    "uid_validity": 1700000000,
    "total": 10234,
    "state": "s1.1700000000.48211.10301",
    "messages": [{
        "uid": 10300, "message_id": "<CAF=ab12@mail.example.com>",
        "subject": "Quarterly report", "from": [{"name": "Bob Martin", "address": "bob@example.com"}],
        "to": [{"name": null, "address": "alice@example.com"}], "cc": [], "reply_to": [],
        "date": "2024-03-01T10:15:00Z", "received_at": "2024-03-01T10:15:02Z",
        "flags": ["\\Seen"], "size": 48213, "has_attachments": true, "in_reply_to": null,
        "preview": "Hi Alice, the Q1 report is attached. Revenue is up 4% on last quarter."
    }],
    "next_cursor": "c1.1700000000.10300.10234.5d41402a"
}))]
pub struct MessageList {
    /// The mailbox.
    pub mailbox: String,
    /// UIDVALIDITY the UIDs belong to; a change means the client must start over.
    pub uid_validity: u32,
    /// Messages in the mailbox, or matching the filters.
    pub total: u32,
    /// Delta-sync state for `changes` and events.
    pub state: String,
    /// The page.
    pub messages: Vec<Summary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A header list, newest first by default. Cost grows with `limit`, not with the mailbox.
///
/// Each summary carries its `preview` unless `preview=false`: the server's `PREVIEW`, fetched
/// with the summaries where the server offers it, else the start (2 KiB) of each message's
/// first text part. That part is section 1 for most messages and is then read with the
/// summaries; a page holding others takes one more round trip for them. Previews are cached
/// with the summaries, so a repeated page reads no text.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/messages",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment (`Archive%2F2024`)."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of summaries.", body = MessageList),
        (status = 400, description = "Bad name, cursor, limit, date or filter (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cursor's UIDVALIDITY is gone (`uid_validity_changed`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`sort` other than arrival order on a server without SORT (`upstream_capability_missing`; the detail names the capability).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let name = MailboxName::new(&mailbox)?;
    let request = query.to_page_request()?;
    let mut session = user.session(&state).await?;
    let page = session.header_page(&name, &request).await?;
    drop(session);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        message_list_json(name.as_str(), &page),
    )
        .into_response())
}

/// The JSON of a [`MessageList`], written from the page's entries by concatenation.
fn message_list_json(mailbox: &str, page: &HeaderPage) -> String {
    let entries: usize = page.messages.iter().map(|m| m.json_len() + 1).sum();
    let mut out = String::with_capacity(entries + 2 * mailbox.len() + 192);
    out.push_str("{\"mailbox\":");
    push_json_string(&mut out, mailbox);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        ",\"uid_validity\":{},\"total\":{},\"state\":\"{}\",\"messages\":[",
        page.uid_validity, page.total, page.state
    );
    for (i, entry) in page.messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        entry.write(&mut out, page.preview);
    }
    out.push_str("],\"next_cursor\":");
    match &page.next_cursor {
        Some(cursor) => {
            let _ = write!(out, "\"{cursor}\"");
        }
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Options of a message view.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Also set `\Seen` (reading never changes flags otherwise).
    #[param(default = false)]
    pub mark_seen: Option<bool>,
    /// Let the `html` body load remote content: `http:`/`https:` images, table backgrounds
    /// and CSS background images, which can tell the sender that and when the message was
    /// read. Off by default: each blocked image keeps its element, with its URL moved to a
    /// `data-blocked-src` attribute (`data-blocked-background` for table backgrounds) so
    /// that a front end can offer to load them, e.g. by asking again with this parameter.
    /// Scripts and other active content are removed either way.
    #[param(default = false)]
    pub remote_content: Option<bool>,
}

/// A message: summary, decoded headers, text and HTML bodies, attachment list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "uid": 10300, "message_id": "<CAF=ab12@mail.example.com>",
    "subject": "Quarterly report", "from": [{"name": "Bob Martin", "address": "bob@example.com"}],
    "to": [{"name": null, "address": "alice@example.com"}], "cc": [], "reply_to": [],
    "date": "2024-03-01T10:15:00Z", "received_at": "2024-03-01T10:15:02Z",
    "flags": ["\\Seen"], "size": 48213, "has_attachments": true, "in_reply_to": null,
    "headers": [{"name": "Subject", "value": "Quarterly report"}, {"name": "From", "value": "Bob Martin <bob@example.com>"}],
    "text": "Hi Alice,\n\nthe report is attached.\n\nBob\n",
    "html": "<p>Hi Alice,</p><p>the report is attached.</p><p>Bob</p>",
    "attachments": [{"part_id": "2", "filename": "Q1 report.pdf", "content_type": "application/pdf",
                     "size": 40960, "content_id": null, "inline": false}]
}))]
pub struct MessageView {
    /// Summary fields.
    #[serde(flatten)]
    pub summary: Summary,
    /// Every header, decoded, in message order.
    pub headers: Vec<Header>,
    /// The plain-text body, decoded to UTF-8.
    pub text: Option<String>,
    /// The HTML body, decoded to UTF-8.
    pub html: Option<String>,
    /// Attachments and inline parts, downloadable by `part_id`.
    pub attachments: Vec<Attachment>,
}

/// The most HTML sanitised on the request's own task (about 80 µs of work on a loaded core,
/// measured); beyond it the sanitiser runs on a blocking thread.
const INLINE_SANITISE_MAX: usize = 2 * 1024;

/// One message, parsed.
///
/// The `html` body is sanitised for display: no scripts, event handlers, `javascript:` or
/// `data:` links, forms, frames, plugins, `<meta>`, `<base>`, `<link>` or `<style>`
/// elements; `style` attributes keep only layout and typography properties. Links keep
/// `http`, `https`, `mailto` and `tel` targets and open in a new browsing context
/// (`target="_blank"`, `rel="noopener noreferrer"`). Remote images are blocked unless
/// `remote_content=true` (see that parameter). `cid:` references to the message's own parts
/// are rewritten to their download path (`/v1/mailboxes/{mailbox}/messages/{uid}/attachments/{part_id}`,
/// fetched with the same bearer token); inline `data:` images (PNG, GIF, JPEG, WebP, BMP,
/// AVIF) are kept. The result is an HTML fragment, best shown in a sandboxed frame.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/messages/{uid}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("uid" = UidSchema, Path, description = "The message's UID."),
        MessageQuery,
    ),
    responses(
        (status = 200, description = "The message.", body = MessageView),
        (status = 400, description = "Bad mailbox name or UID (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The message's MIME structure exceeds the bridge's limits (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox or message (`mailbox_not_found`, `message_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, uid)): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<MessageQuery>,
) -> ApiResult<Json<MessageView>> {
    let name = MailboxName::new(&mailbox)?;
    if uid == 0 {
        return Err(ApiError::invalid("UIDs start at 1."));
    }
    let mut session = user.session(&state).await?;
    let detail = session
        .message_detail(
            &name,
            uid,
            query.mark_seen.unwrap_or(false),
            &state.walk_limits,
        )
        .await?;
    drop(session);
    let decode = |parts: &[crate::mail::structure::BodyPart]| -> Vec<String> {
        parts
            .iter()
            .filter_map(|p| detail.bodies.get(&p.part_id).map(|raw| decode_text(raw, p)))
            .collect()
    };
    let texts = decode(&detail.parts.text_parts);
    let text = (!texts.is_empty()).then(|| texts.join("\n"));
    let html_parts = decode(&detail.parts.html_parts);
    let html_len: usize = html_parts.iter().map(String::len).sum();
    let html = if html_parts.is_empty() {
        None
    } else {
        // `cid:` URLs resolve to the download path of the part with that Content-ID.
        let mailbox_segment = percent_encoding::utf8_percent_encode(
            name.as_str(),
            percent_encoding::NON_ALPHANUMERIC,
        );
        let inline_parts = detail
            .parts
            .attachments
            .iter()
            .filter_map(|part| {
                let url = format!(
                    "/v1/mailboxes/{mailbox_segment}/messages/{uid}/attachments/{}",
                    part.part_id
                );
                Some((part.content_id.clone()?, url))
            })
            .collect();
        let policy = crate::mail::html::HtmlPolicy {
            remote_content: query.remote_content.unwrap_or(false),
            inline_parts,
        };
        // Each part on its own, so that markup left open in one cannot swallow the next.
        let sanitise = move || {
            html_parts
                .iter()
                .map(|html| crate::mail::html::sanitize_html(html, &policy))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Sanitising megabytes of HTML is CPU work: keep it off the async workers. A small
        // body takes less than handing it to another thread would.
        let sanitised = if html_len <= INLINE_SANITISE_MAX {
            sanitise()
        } else {
            tokio::task::spawn_blocking(sanitise).await.map_err(|e| {
                tracing::error!(error = %e, "HTML sanitiser failed");
                ApiError::internal()
            })?
        };
        Some(sanitised)
    };
    Ok(Json(MessageView {
        headers: parse_headers(&detail.header),
        text,
        html,
        attachments: detail
            .parts
            .attachments
            .iter()
            .map(|p| p.to_attachment())
            .collect(),
        summary: detail.summary,
    }))
}

/// Options of a message deletion.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Expunge for good instead of moving to Trash (always the case inside Trash).
    #[param(default = false)]
    pub permanent: Option<bool>,
}

/// Deletes a message: moves it to the Trash mailbox (found by its special-use role), or, with
/// `permanent=true` or when it already is in Trash, marks it `\Deleted` and expunges that UID
/// only.
#[utoipa::path(
    delete,
    path = "/v1/mailboxes/{mailbox}/messages/{uid}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("uid" = UidSchema, Path, description = "The message's UID."),
        DeleteQuery,
    ),
    responses(
        (status = 204, description = "Deleted (moved to Trash, or expunged)."),
        (status = 400, description = "Bad name or UID (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox or message (`mailbox_not_found`, `message_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account has no Trash mailbox; delete with `permanent=true` (`conflict`). Or the server has neither MOVE nor UIDPLUS and other messages of the mailbox are marked `\\Deleted`, so the expunge could not be limited to this one (`other_messages_deleted`); nothing was changed.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The user's mailbox quota leaves no room for it (`insufficient_storage`); retrying does not help until mail is deleted.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, uid)): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> ApiResult<axum::http::StatusCode> {
    let name = MailboxName::new(&mailbox)?;
    let uids = crate::imap::encode::UidSet::single(uid)?;
    let mut session = user.session(&state).await?;
    let trash = if query.permanent.unwrap_or(false) {
        None
    } else {
        session
            .special_use_mailbox(crate::imap::mailboxes::SpecialUse::Trash)
            .await?
    };
    let permanent = query.permanent.unwrap_or(false) || trash.as_ref() == Some(&name);
    let gone = if permanent {
        !session.expunge_messages(&name, &uids).await?.is_empty()
    } else {
        let trash = trash.ok_or_else(|| {
            ApiError::conflict("This account has no Trash mailbox; delete with `permanent=true`.")
        })?;
        if session.capabilities().has("UIDPLUS") {
            // COPYUID tells whether the message existed.
            session
                .move_messages(&name, &uids, &trash)
                .await?
                .iter()
                .any(|t| t.new_uid.is_some())
        } else {
            session.select(&name).await?;
            let existed = !session
                .search_uids(&[crate::imap::encode::SearchKey::Uid(uids.clone())])
                .await?
                .is_empty();
            session.move_messages(&name, &uids, &trash).await?;
            existed
        }
    };
    if gone {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(crate::imap::ImapError::MessageNotFound.into())
    }
}

/// Options of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppendQuery {
    /// Flags for the new message, comma separated (`\Seen,$Label1`).
    #[param(value_type = Option<FlagListSchema>)]
    pub flags: Option<String>,
}

/// The stored message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"uid": 10305, "uid_validity": 1700000000}))]
pub struct Appended {
    /// Its UID; null when the server does not report it (no UIDPLUS).
    pub uid: Option<u32>,
    /// UIDVALIDITY of the mailbox the UID belongs to.
    pub uid_validity: Option<u32>,
}

/// Stores a message (`message/rfc822`) in a mailbox, e.g. a draft or a sent copy (IMAP APPEND).
#[utoipa::path(
    post,
    path = "/v1/mailboxes/{mailbox}/messages",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        AppendQuery,
    ),
    request_body(content = BinarySchema, content_type = "message/rfc822", description = "The complete message, RFC 5322."),
    responses(
        (status = 201, description = "Stored.", body = Appended),
        (status = 400, description = "Bad name, flags or message (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The message is larger than the bridge accepts (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `message/rfc822` (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The user's mailbox quota leaves no room for it (`insufficient_storage`); retrying does not help until mail is deleted.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn append_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiQuery(query): ApiQuery<AppendQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(axum::http::StatusCode, Json<Appended>)> {
    let name = MailboxName::new(&mailbox)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("message/rfc822")
    {
        return Err(ApiError::unsupported_media_type(
            "Send the message as message/rfc822.",
        ));
    }
    let flags = match query.flags.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .take(51)
            .map(|f| {
                crate::imap::encode::Flag::parse(f)
                    .map_err(|e| ApiError::invalid(format!("`flags`: {e}")))
            })
            .collect::<ApiResult<Vec<_>>>()?,
    };
    if flags.len() > 50 {
        return Err(ApiError::invalid("`flags` holds at most 50 flags."));
    }
    let limit = state.config.max_append_size;
    let too_large =
        || ApiError::payload_too_large(format!("Messages are limited to {limit} bytes."));
    if headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let message = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    validate_message(&message)?;
    let mut session = user.session(&state).await?;
    let appended = session.append(&name, &flags, &message).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(Appended {
            uid: appended.map(|(_, uid)| uid),
            uid_validity: appended.map(|(v, _)| v),
        }),
    ))
}

/// The least a message must be: header fields before a body, no NUL (IMAP literals cannot
/// carry NUL without BINARY).
fn validate_message(message: &[u8]) -> ApiResult<()> {
    if message.is_empty() {
        return Err(ApiError::invalid("The message is empty."));
    }
    if message.contains(&0) {
        return Err(ApiError::invalid("The message contains NUL bytes."));
    }
    let first_line = message.split(|b| *b == b'\n').next().unwrap_or_default();
    let looks_like_header = first_line
        .iter()
        .position(|b| *b == b':')
        .is_some_and(|colon| colon > 0 && first_line[..colon].iter().all(|b| b.is_ascii_graphic()));
    if !looks_like_header {
        return Err(ApiError::invalid(
            "The message must start with a header field (RFC 5322).",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::state::MailboxState;
    use crate::mail::listing::ListEntry;
    use crate::mail::summary::Address;

    fn summary(uid: u32, flags: &[&str]) -> Summary {
        Summary {
            uid,
            message_id: Some(format!("<{uid}@example.com>")),
            subject: Some("Quarterly \"report\" \\ ✉".into()),
            from: vec![Address {
                name: Some("Bob".into()),
                address: "bob@example.com".into(),
            }],
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            date: None,
            received_at: Some("2024-03-01T10:15:02Z".into()),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            size: 48_213,
            has_attachments: uid.is_multiple_of(2),
            in_reply_to: None,
            preview: Some(format!("Preview of \"{uid}\" ✉")),
        }
    }

    #[test]
    fn a_page_is_written_as_serde_writes_the_message_list() {
        let state = MailboxState {
            uid_validity: 1_700_000_000,
            highest_modseq: 48_211,
            uid_next: 10_301,
        };
        for (messages, next_cursor) in [
            (
                vec![summary(10_300, &["\\Seen"]), summary(10_299, &[])],
                Some(PageCursor {
                    uid_validity: 1_700_000_000,
                    anchor_uid: 10_299,
                    position: 10_233,
                    query: 0x5d41_402a,
                }),
            ),
            (Vec::new(), None),
        ] {
            for (mailbox, preview) in [("INBOX", true), ("Archiv \"2024\" / Zoë", false)] {
                let expected = serde_json::to_string(&MessageList {
                    mailbox: mailbox.to_owned(),
                    uid_validity: state.uid_validity,
                    total: 10_234,
                    state: state.to_string(),
                    messages: messages
                        .iter()
                        .map(|m| Summary {
                            preview: m.preview.clone().filter(|_| preview),
                            ..m.clone()
                        })
                        .collect(),
                    next_cursor: next_cursor.map(|c| c.to_string()),
                })
                .unwrap();
                let page = HeaderPage {
                    uid_validity: state.uid_validity,
                    total: 10_234,
                    state,
                    messages: messages
                        .iter()
                        .cloned()
                        .map(ListEntry::from_summary)
                        .collect(),
                    next_cursor,
                    preview,
                };
                assert_eq!(message_list_json(mailbox, &page), expected);
            }
        }
    }
}
