//! Making a message's HTML body safe to show: what markup it keeps, which resources it may
//! load, and how its `cid:` references to the message's own parts are resolved.
//!
//! The HTML goes through [ammonia] with an allow-list of tags and attributes, then through
//! our own rules for every attribute that can carry a URL or CSS:
//!
//! * Nothing executable survives: no `<script>`, no `on*` handler, no `javascript:`,
//!   `vbscript:` or `data:` link, no form, frame, `<object>`, `<embed>`, `<meta>`, `<base>`,
//!   `<link>`, SVG or MathML (the content of `<script>`, `<style>`, `<title>`, `<iframe>`,
//!   `<object>`, `<noembed>`, `<noframes>`, `<noscript>`, `<template>`, `<svg>` and `<math>`
//!   is dropped along with the tag; other disallowed tags are unwrapped and their text kept).
//! * Links keep only `http:`, `https:`, `mailto:` and `tel:` targets and get
//!   `rel="noopener noreferrer"` and `target="_blank"`. Relative URLs are dropped: a mail has
//!   no base to resolve them against, and resolved against the front end's own origin they
//!   would be requests the sender chooses.
//! * Remote resources (`http:`/`https:` in `<img src>`, the `background` attribute, CSS
//!   `url()`) load only when the caller asks for remote content. Otherwise an image keeps
//!   its element and its URL moves to `data-blocked-src` (`data-blocked-background` for a
//!   table's background), which a front end can offer to load; remote CSS images are
//!   removed. `srcset` is always dropped (`src` is enough to show the image).
//! * `cid:` references in `<img src>` and `background` become the URL of the part with that
//!   Content-ID, as given in [`HtmlPolicy::inline_parts`], so embedded images show without
//!   a remote load; a `cid:` with no such part is dropped.
//! * `data:` URLs are kept only for raster images in `<img src>` (PNG, GIF, JPEG, WebP,
//!   BMP, AVIF, base64): an image element cannot run code from them. `data:image/svg+xml` is
//!   refused, since an SVG document can carry script when opened on its own.
//! * `style` attributes are kept in a safe form: only layout and typography properties from
//!   [`STYLE_PROPERTIES`], no CSS escapes, comments, at-rules or functions other than
//!   colours and `calc()`, and `url()` only for remote backgrounds when remote content is
//!   allowed. `position` is not among them, so a mail cannot lay itself over the front
//!   end. `<style>` elements are dropped: their selectors could reach outside the message.
//!
//! The result is a fragment (no `<html>`, `<head>` or `<body>`), meant to be shown inside a
//! sandboxed frame; it is safe without one, but styles of the surrounding page still apply.
//!
//! Parsing cost is bounded first ([`budget`]): a body whose tree would nest deeper than 256
//! elements, or build more than 100,000 elements, is cut short where it crosses the limit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ammonia::{Builder, Url, UrlRelative};

mod budget;

pub use budget::BudgetLimits;

/// How one HTML body is sanitised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlPolicy {
    /// Keep `http:`/`https:` images, backgrounds and CSS `url()`s (tracking pixels included).
    pub remote_content: bool,
    /// The message's parts that have a Content-ID, as (Content-ID without angle brackets,
    /// URL serving the part); `cid:` URLs naming them are rewritten to that URL.
    pub inline_parts: Vec<(String, String)>,
}

/// CSS properties a `style` attribute may keep.
pub const STYLE_PROPERTIES: &[&str] = &[
    "background",
    "background-color",
    "background-image",
    "background-position",
    "background-repeat",
    "background-size",
    "border",
    "border-bottom",
    "border-bottom-color",
    "border-bottom-left-radius",
    "border-bottom-right-radius",
    "border-bottom-style",
    "border-bottom-width",
    "border-collapse",
    "border-color",
    "border-left",
    "border-left-color",
    "border-left-style",
    "border-left-width",
    "border-radius",
    "border-right",
    "border-right-color",
    "border-right-style",
    "border-right-width",
    "border-spacing",
    "border-style",
    "border-top",
    "border-top-color",
    "border-top-left-radius",
    "border-top-right-radius",
    "border-top-style",
    "border-top-width",
    "border-width",
    "caption-side",
    "clear",
    "color",
    "direction",
    "display",
    "float",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-variant",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "list-style-position",
    "list-style-type",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-height",
    "max-width",
    "min-height",
    "min-width",
    "opacity",
    "overflow",
    "overflow-wrap",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "table-layout",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "vertical-align",
    "visibility",
    "white-space",
    "width",
    "word-break",
    "word-spacing",
    "word-wrap",
];

/// Properties whose value may hold a `url()` (a remote image, when remote content is on).
const URL_PROPERTIES: &[&str] = &["background", "background-image"];

/// CSS functions a kept declaration may call, besides `url()`.
const CSS_FUNCTIONS: &[&str] = &["rgb", "rgba", "hsl", "hsla", "calc"];

/// Tags kept (others are unwrapped: their text stays, the tag goes).
#[rustfmt::skip]
const TAGS: &[&str] = &[
    "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big",
    "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "data", "dd",
    "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "i", "img", "ins", "kbd", "li",
    "main", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt", "rtc", "ruby", "s", "samp",
    "section", "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
];

/// Tags dropped with everything inside them.
const DROPPED_WITH_CONTENT: &[&str] = &[
    "script", "style", "title", "iframe", "object", "noembed", "noframes", "noscript", "template",
    "svg", "math",
];

/// Attributes any kept tag may have.
const GENERIC_ATTRIBUTES: &[&str] = &["lang", "title", "dir", "style"];

/// Attributes particular tags may have (besides the generic ones).
#[rustfmt::skip]
const TAG_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href", "hreflang"]),
    ("blockquote", &["cite"]),
    ("col", &["align", "char", "charoff", "span", "width", "valign", "bgcolor"]),
    ("colgroup", &["align", "char", "charoff", "span", "width", "valign", "bgcolor"]),
    ("del", &["cite", "datetime"]),
    ("div", &["align"]),
    ("font", &["color", "face", "size"]),
    ("h1", &["align"]), ("h2", &["align"]), ("h3", &["align"]),
    ("h4", &["align"]), ("h5", &["align"]), ("h6", &["align"]),
    ("hr", &["align", "size", "width", "color", "noshade"]),
    ("img", &["align", "alt", "height", "src", "width", "border", "hspace", "vspace"]),
    ("ins", &["cite", "datetime"]),
    ("ol", &["start", "type", "reversed"]),
    ("p", &["align"]),
    ("q", &["cite"]),
    ("table", &["align", "char", "charoff", "summary", "width", "height", "border",
                "cellpadding", "cellspacing", "bgcolor", "background", "frame", "rules"]),
    ("tbody", &["align", "char", "charoff", "valign", "bgcolor"]),
    ("td", &["align", "char", "charoff", "colspan", "headers", "rowspan", "width", "height",
             "valign", "bgcolor", "background", "nowrap"]),
    ("tfoot", &["align", "char", "charoff", "valign", "bgcolor"]),
    ("th", &["align", "char", "charoff", "colspan", "headers", "rowspan", "scope", "width",
             "height", "valign", "bgcolor", "background", "nowrap"]),
    ("thead", &["align", "char", "charoff", "valign", "bgcolor"]),
    ("tr", &["align", "char", "charoff", "valign", "bgcolor", "background", "height"]),
    ("ul", &["type"]),
];

/// Schemes ammonia lets through to [`UrlRules`], which decides per attribute.
const URL_SCHEMES: &[&str] = &["http", "https", "mailto", "tel", "cid", "data"];

/// Link targets kept in `<a href>`.
const LINK_SCHEMES: &[&str] = &["http", "https", "mailto", "tel"];

/// Raster image types allowed in `data:` URLs.
const DATA_IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/gif",
    "image/jpeg",
    "image/jpg",
    "image/pjpeg",
    "image/webp",
    "image/bmp",
    "image/avif",
];

/// Prefix of the attribute that keeps a blocked remote URL (`data-blocked-src`).
pub const BLOCKED_PREFIX: &str = "data-blocked-";

/// Sanitises one HTML body (already decoded to UTF-8) for display under `policy`.
pub fn sanitize_html(html: &str, policy: &HtmlPolicy) -> String {
    sanitize_html_within(html, policy, &BudgetLimits::default())
}

/// [`sanitize_html`] with other parsing limits.
pub fn sanitize_html_within(html: &str, policy: &HtmlPolicy, limits: &BudgetLimits) -> String {
    let within = budget::within_budget(html, limits);
    if within.len() < html.len() {
        tracing::warn!(
            kept = within.len(),
            total = html.len(),
            "HTML body too complex to parse whole; the rest is dropped"
        );
    }
    let html = within;
    let rules = Arc::new(UrlRules::new(policy));
    let filter_rules = Arc::clone(&rules);
    let mut builder = Builder::empty();
    builder
        .tags(TAGS.iter().copied().collect())
        .clean_content_tags(DROPPED_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(
            TAG_ATTRIBUTES
                .iter()
                .map(|(tag, attributes)| (*tag, attributes.iter().copied().collect()))
                .collect(),
        )
        .url_schemes(URL_SCHEMES.iter().copied().collect())
        // Relative URLs from the mail are dropped by `UrlRules`; the only ones left by then
        // are the part URLs it wrote itself.
        .url_relative(UrlRelative::PassThrough)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| {
            filter_rules.filter(element, attribute, value)
        });
    let cleaned = builder.clean(html).to_string();
    rules.restore_blocked(cleaned)
}

/// The per-attribute URL and CSS rules, applied after ammonia's allow-lists.
struct UrlRules {
    remote_content: bool,
    /// Part URLs by Content-ID.
    part_urls: HashMap<String, String>,
    /// Part URLs by lower-cased Content-ID, for mailers that change the case.
    part_urls_any_case: HashMap<String, String>,
    /// A value no mail can contain, put in place of a blocked URL and replaced by a
    /// `data-blocked-*` attribute once ammonia has serialised the result (its filter can
    /// change or drop an attribute, not rename it).
    marker: String,
    /// Blocked (attribute, URL), indexed by the number after the marker.
    blocked: Mutex<Vec<(String, String)>>,
}

impl UrlRules {
    fn new(policy: &HtmlPolicy) -> Self {
        let mut part_urls = HashMap::new();
        let mut part_urls_any_case = HashMap::new();
        // The first part with a Content-ID wins, as in mail readers.
        for (cid, url) in &policy.inline_parts {
            part_urls.entry(cid.clone()).or_insert_with(|| url.clone());
            part_urls_any_case
                .entry(cid.to_ascii_lowercase())
                .or_insert_with(|| url.clone());
        }
        Self {
            remote_content: policy.remote_content,
            part_urls,
            part_urls_any_case,
            marker: format!("xblocked{:032x}", rand::random::<u128>()),
            blocked: Mutex::new(Vec::new()),
        }
    }

    fn filter<'v>(&self, element: &str, attribute: &str, value: &'v str) -> Option<Cow<'v, str>> {
        match (element, attribute) {
            ("a", "href") => link_target(value).then_some(Cow::Borrowed(value)),
            ("img", "src") => self.resource(attribute, value, true),
            (_, "background") => self.resource(attribute, value, false),
            (_, "style") => {
                let style = sanitize_style(value, self.remote_content);
                (!style.is_empty()).then_some(Cow::Owned(style))
            }
            (_, "href" | "src") => None,
            _ => Some(Cow::Borrowed(value)),
        }
    }

    /// An image URL: a part of the message, an inline `data:` image, or a remote one.
    fn resource<'v>(&self, attribute: &str, value: &'v str, is_img: bool) -> Option<Cow<'v, str>> {
        let url = Url::parse(value.trim()).ok()?;
        match url.scheme() {
            "cid" => self.part_url(url.path()).map(Cow::Owned),
            "data" if is_img && is_inline_image_data(value) => Some(Cow::Borrowed(value)),
            "http" | "https" if self.remote_content => Some(Cow::Borrowed(value)),
            "http" | "https" => {
                let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
                blocked.push((attribute.to_owned(), url.to_string()));
                Some(Cow::Owned(format!("{}:{}", self.marker, blocked.len() - 1)))
            }
            _ => None,
        }
    }

    /// The URL of the part a `cid:` URL names (RFC 2392: the Content-ID, URL-encoded),
    /// matched exactly or, failing that, ignoring ASCII case.
    fn part_url(&self, cid_path: &str) -> Option<String> {
        let decoded = percent_encoding::percent_decode_str(cid_path).decode_utf8_lossy();
        let cid = decoded.trim().trim_start_matches('<').trim_end_matches('>');
        if cid.is_empty() {
            return None;
        }
        self.part_urls
            .get(cid)
            .or_else(|| self.part_urls_any_case.get(&cid.to_ascii_lowercase()))
            .cloned()
    }

    /// Turns each `attr="<marker>:<n>"` of the serialised HTML into
    /// `data-blocked-attr="<url>"`, in one pass.
    fn restore_blocked(&self, html: String) -> String {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.is_empty() {
            return html;
        }
        let mut out = String::with_capacity(html.len());
        let mut rest = html.as_str();
        while let Some(at) = rest.find(&self.marker) {
            let after = &rest[at + self.marker.len()..];
            let number_len = after
                .strip_prefix(':')
                .map(|digits| digits.find('"').unwrap_or(digits.len()))
                .unwrap_or(0);
            let entry = after
                .get(1..1 + number_len)
                .and_then(|digits| digits.parse::<usize>().ok())
                .and_then(|index| blocked.get(index));
            match entry {
                Some((attribute, url)) if rest[..at].ends_with(&format!("{attribute}=\"")) => {
                    out.push_str(&rest[..at - attribute.len() - 2]);
                    out.push_str(BLOCKED_PREFIX);
                    out.push_str(attribute);
                    out.push_str("=\"");
                    out.push_str(&escape_attribute(url));
                    rest = &after[1 + number_len..];
                }
                // Not one of ours (cannot happen: no mail knows the marker); leave it.
                _ => {
                    out.push_str(&rest[..at + self.marker.len()]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Whether a link target is one a reader may follow.
fn link_target(value: &str) -> bool {
    Url::parse(value.trim()).is_ok_and(|url| LINK_SCHEMES.contains(&url.scheme()))
}

/// `data:image/<raster type>[;param]*;base64,…`.
fn is_inline_image_data(value: &str) -> bool {
    let Some((head, _)) = value.trim().split_once(',') else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    let Some(head) = head.strip_prefix("data:") else {
        return false;
    };
    let mut pieces = head.split(';').map(str::trim);
    let media_type = pieces.next().unwrap_or_default();
    let params: Vec<&str> = pieces.collect();
    DATA_IMAGE_TYPES.contains(&media_type) && params.last() == Some(&"base64")
}

/// HTML attribute-value escaping, as html5ever does it, plus `<`, `>` and `'`.
fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\u{a0}' => out.push_str("&nbsp;"),
            c => out.push(c),
        }
    }
    out
}

/// Keeps the declarations of a `style` attribute that are safe to show: a property from
/// [`STYLE_PROPERTIES`] and a value in the plain subset [`safe_css_value`] accepts.
/// Returns them as `name: value; …`, or an empty string when none is left.
pub fn sanitize_style(style: &str, remote_content: bool) -> String {
    let mut kept = Vec::new();
    for declaration in split_declarations(style) {
        let Some((name, value)) = declaration.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if !STYLE_PROPERTIES.contains(&name.as_str()) || value.is_empty() {
            continue;
        }
        let allow_url = remote_content && URL_PROPERTIES.contains(&name.as_str());
        if safe_css_value(value, allow_url) {
            kept.push(format!("{name}: {value}"));
        }
    }
    kept.join("; ")
}

/// Splits a declaration list at the semicolons outside quotes and parentheses.
fn split_declarations(style: &str) -> Vec<&str> {
    let mut declarations = Vec::new();
    let mut quote = None;
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in style.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ';') if depth == 0 => {
                declarations.push(&style[start..index]);
                start = index + 1;
            }
            (None, _) => {}
        }
    }
    declarations.push(&style[start..]);
    declarations
}

/// Whether a CSS value stays within a subset that can neither run code nor load anything
/// unexpected: no escapes (which could spell `url` or `expression` in disguise), no
/// comments, no at-rules, no blocks, no markup; functions only from [`CSS_FUNCTIONS`], plus
/// `url()` of an absolute `http:`/`https:` URL when `allow_url`.
fn safe_css_value(value: &str, allow_url: bool) -> bool {
    if value.contains("/*")
        || value
            .chars()
            .any(|c| c.is_control() || matches!(c, '\\' | '<' | '>' | '{' | '}' | '@' | ';' | '&'))
    {
        return false;
    }
    let bytes = value.as_bytes();
    let mut index = 0;
    let mut depth = 0usize;
    while index < bytes.len() {
        let c = bytes[index];
        match c {
            b'"' | b'\'' => match value[index + 1..].find(char::from(c)) {
                Some(end) => index += end + 2,
                None => return false,
            },
            b'(' => return false,
            b')' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
                index += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'-' || c == b'_' => {
                let start = index;
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || matches!(bytes[index], b'-' | b'_'))
                {
                    index += 1;
                }
                if bytes.get(index) != Some(&b'(') {
                    continue;
                }
                let function = value[start..index].to_ascii_lowercase();
                if function == "url" {
                    match url_argument(&value[index + 1..]) {
                        Some(consumed) if allow_url => index += 1 + consumed,
                        _ => return false,
                    }
                } else if CSS_FUNCTIONS.contains(&function.as_str()) {
                    depth += 1;
                    index += 1;
                } else {
                    return false;
                }
            }
            _ => index += 1,
        }
    }
    depth == 0
}

/// Reads the argument of a `url(` up to and including its `)`, returning the bytes consumed
/// when it is one absolute `http:`/`https:` URL.
fn url_argument(rest: &str) -> Option<usize> {
    let close = rest.find(')')?;
    let inner = rest[..close].trim();
    let unquoted = match inner.chars().next() {
        Some(q @ ('"' | '\'')) => inner.strip_prefix(q)?.strip_suffix(q)?,
        _ => inner,
    };
    if unquoted.is_empty() || unquoted.contains(['"', '\'', '(', ' ']) {
        return None;
    }
    let url = Url::parse(unquoted).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        sanitize_html(html, &HtmlPolicy::default())
    }

    fn clean_remote(html: &str) -> String {
        sanitize_html(
            html,
            &HtmlPolicy {
                remote_content: true,
                inline_parts: Vec::new(),
            },
        )
    }

    /// The attributes of the first `<tag …>` in `html`, sorted (ammonia does not keep their
    /// order).
    fn attributes_of(html: &str, tag: &str) -> Vec<String> {
        let start = html.find(&format!("<{tag}")).expect("tag present") + tag.len() + 1;
        let end = start + html[start..].find('>').expect("tag closed");
        let mut attributes: Vec<String> = html[start..end]
            .split("\" ")
            .map(|a| a.trim().trim_end_matches('"').to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        attributes.sort();
        attributes
    }

    #[test]
    fn scripts_and_handlers_go() {
        let out =
            clean("<p onclick=\"x()\">Hi<script>alert(1)</script><img src=x onerror=alert(1)></p>");
        assert_eq!(out, "<p>Hi<img></p>");
    }

    #[test]
    fn links_get_rel_and_target_and_lose_bad_schemes() {
        let links = [
            (
                r#"<a href="https://example.com/a?b=1&amp;c=2">x</a>"#,
                Some("https://example.com/a?b=1&amp;c=2"),
            ),
            (
                r#"<a href="mailto:bob@example.com">x</a>"#,
                Some("mailto:bob@example.com"),
            ),
            (r#"<a href="tel:+4930123">x</a>"#, Some("tel:+4930123")),
            (r#"<a href="javascript:alert(1)">x</a>"#, None),
            (r#"<a href=" &#106;avascript:alert(1)">x</a>"#, None),
            (r#"<a href="java&#x09;script:alert(1)">x</a>"#, None),
            (r#"<a href="JaVaScRiPt:alert(1)">x</a>"#, None),
            (r#"<a href="vbscript:msgbox">x</a>"#, None),
            (
                r#"<a href="data:text/html,<script>alert(1)</script>">x</a>"#,
                None,
            ),
            (r#"<a href="/relative">x</a>"#, None),
            (r#"<a href="//evil.example/x">x</a>"#, None),
            (r#"<a href="cid:part@x">x</a>"#, None),
        ];
        for (html, href) in links {
            let out = clean(html);
            let mut want = vec![
                "rel=\"noopener noreferrer".to_owned(),
                "target=\"_blank".to_owned(),
            ];
            if let Some(href) = href {
                want.push(format!("href=\"{href}"));
            }
            want.sort();
            assert_eq!(attributes_of(&out, "a"), want, "{html} → {out}");
        }
    }

    #[test]
    fn remote_images_are_blocked_but_kept_as_data_attribute() {
        let html = r#"<img src="https://tracker.example/p.gif?u=1&amp;m=&quot;x" width="1" srcset="https://tracker.example/2x.gif 2x" alt="pixel">"#;
        assert_eq!(
            attributes_of(&clean(html), "img"),
            [
                "alt=\"pixel",
                "data-blocked-src=\"https://tracker.example/p.gif?u=1&amp;m=%22x",
                "width=\"1",
            ]
        );
        assert_eq!(
            attributes_of(&clean_remote(html), "img"),
            [
                "alt=\"pixel",
                "src=\"https://tracker.example/p.gif?u=1&amp;m=&quot;x",
                "width=\"1",
            ]
        );
    }

    #[test]
    fn table_backgrounds_follow_the_remote_rule() {
        let html = r#"<table background="http://img.example/bg.png"><tr><td background="javascript:alert(1)">x</td></tr></table>"#;
        assert_eq!(
            clean(html),
            r#"<table data-blocked-background="http://img.example/bg.png"><tbody><tr><td>x</td></tr></tbody></table>"#
        );
        assert!(clean_remote(html).contains(r#"<table background="http://img.example/bg.png">"#));
    }

    #[test]
    fn cid_references_point_at_parts() {
        let policy = HtmlPolicy {
            remote_content: false,
            inline_parts: vec![(
                "logo@example.com".into(),
                "/v1/mailboxes/INBOX/messages/7/attachments/2".into(),
            )],
        };
        let out = sanitize_html(
            r#"<img src="cid:logo@example.com"><img src="CID:Logo%40example.com"><img src="cid:missing@x">"#,
            &policy,
        );
        assert_eq!(
            out,
            concat!(
                r#"<img src="/v1/mailboxes/INBOX/messages/7/attachments/2">"#,
                r#"<img src="/v1/mailboxes/INBOX/messages/7/attachments/2">"#,
                "<img>"
            )
        );
    }

    #[test]
    fn data_urls_only_for_raster_images() {
        let png = "data:image/png;base64,iVBORw0KGgo=";
        assert_eq!(
            clean(&format!(r#"<img src="{png}">"#)),
            format!(r#"<img src="{png}">"#)
        );
        for bad in [
            "data:image/svg+xml;base64,PHN2Zz48c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+PC9zdmc+",
            "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
            "data:image/png,notbase64",
        ] {
            assert_eq!(clean(&format!(r#"<img src="{bad}">"#)), "<img>", "{bad}");
        }
    }

    #[test]
    fn dangerous_elements_go_with_their_content() {
        let cases = [
            "<iframe srcdoc=\"<script>alert(1)</script>\">frame</iframe>",
            "<svg><script>alert(1)</script><a xlink:href=\"javascript:alert(1)\">s</a></svg>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
            "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">",
            "<base href=\"https://evil.example/\">",
            "<object data=\"x.swf\">o</object><embed src=\"x.swf\">",
            "<link rel=stylesheet href=\"https://evil.example/s.css\">",
            "<style>@import url(https://evil.example/s.css);</style>",
            "<noscript><img src=\"https://tracker.example/p.gif\"></noscript>",
            "<template><script>alert(1)</script></template>",
        ];
        for html in cases {
            assert_eq!(
                clean(&format!("{html}<p>kept</p>")),
                "<p>kept</p>",
                "{html}"
            );
        }
        assert_eq!(
            clean("<form action=\"https://evil.example\"><input name=p><button>Go</button></form>"),
            "Go"
        );
    }

    #[test]
    fn styles_are_filtered() {
        let cases = [
            ("color: red; position: fixed; top: 0", "color:red"),
            (
                "COLOR:Red;font-family:'Helvetica Neue', Arial",
                "color:Red;font-family:&quot;Helvetica Neue&quot; , Arial",
            ),
            ("width: expression(alert(1))", ""),
            ("background: url(javascript:alert(1))", ""),
            ("background-image: url(https://tracker.example/bg.png)", ""),
            ("background: u\\72l(https://tracker.example/bg.png)", ""),
            ("color: red /* */; behavior: url(x.htc)", ""),
            ("-moz-binding: url(https://evil.example/x.xml#x)", ""),
            (
                "background: #fff -webkit-image-set(\"https://t.example/a.png\" 1x)",
                "",
            ),
            (
                "color: rgb(1, 2, 3); margin: calc(1px + 2px)",
                "color:rgb(1, 2, 3);margin:calc(1px + 2px)",
            ),
        ];
        for (style, want) in cases {
            let out = clean(&format!(r#"<p style="{style}">x</p>"#));
            let expected = if want.is_empty() {
                "<p>x</p>".to_owned()
            } else {
                format!(r#"<p style="{want}">x</p>"#)
            };
            assert_eq!(out, expected, "{style}");
        }
        let remote = clean_remote(
            r#"<div style="background-image: url('https://img.example/bg.png'); color: url(https://x.example/)">x</div>"#,
        );
        assert!(
            remote.contains("background-image:url(&quot;https://img.example/bg.png&quot;)"),
            "{remote}"
        );
        assert!(!remote.contains("x.example"), "{remote}");
    }

    #[test]
    fn style_value_scanner() {
        assert!(safe_css_value("1px solid #ccc", false));
        assert!(safe_css_value("\"Helvetica Neue\" , serif", false));
        assert!(!safe_css_value("\"a;b\"", false));
        assert!(!safe_css_value("\"unterminated", false));
        assert!(!safe_css_value("(1px)", false));
        assert!(!safe_css_value("rgb(1,2,3))", false));
        assert!(!safe_css_value("url(https://a.example/x.png)", false));
        assert!(safe_css_value(
            "url(https://a.example/x.png) no-repeat",
            true
        ));
        assert!(!safe_css_value("url(//a.example/x.png)", true));
        assert!(!safe_css_value("url(data:image/png;base64,AAAA)", true));
        assert!(!safe_css_value(
            "image-set(\"https://a.example/x.png\" 1x)",
            true
        ));
    }

    #[test]
    fn broken_markup_stays_inert() {
        let unclosed = clean("<p title=\"<script>alert(1)</script>\"><b><i>text");
        assert_eq!(
            unclosed,
            "<p title=\"&lt;script&gt;alert(1)&lt;/script&gt;\"><b><i>text</i></b></p>"
        );
        let comments =
            clean("<!--><script>alert(1)</script>--><![CDATA[<script>alert(2)</script>]]>ok");
        assert!(!comments.contains("<script"), "{comments}");
        assert!(comments.ends_with("ok"), "{comments}");
    }

    #[test]
    fn overly_deep_markup_is_cut_short() {
        let deep = format!("<p>start</p>{}end", "<div>".repeat(50_000));
        let out = clean(&deep);
        assert!(out.starts_with("<p>start</p><div>"), "{out:.40}");
        assert!(!out.contains("end"));
        assert!(out.len() < 20_000, "{}", out.len());
    }

    #[test]
    fn a_marker_cannot_be_forged() {
        // Someone writing the marker shape by hand gets no data-blocked attribute.
        let out = clean("<img src=\"xblocked00:0\">text data-blocked-src=\"x\"");
        assert_eq!(out, "<img>text data-blocked-src=\"x\"");
    }
}
