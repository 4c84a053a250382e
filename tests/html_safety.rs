//! Hostile mail against a real Dovecot: HTML bodies come back with nothing that runs and
//! nothing that loads from elsewhere unless the reader asks for remote content; inline
//! images point at the bridge's own parts; downloads are attachments a browser will not
//! run; MIME structures beyond the bridge's limits are refused quickly.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::bridge::{TestBridge, USER, json_of, seg};
use regex::Regex;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// One hostile HTML mail: how its body is written and what a reader must not get.
struct Hostile {
    name: &'static str,
    /// The HTML part as sent (before transfer encoding).
    html: &'static str,
    /// Charset parameter of the HTML part.
    charset: &'static str,
    /// Content-Transfer-Encoding of the HTML part.
    encoding: Encoding,
    /// A remote image URL the message shows when remote content is allowed.
    remote_image: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Encoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

const fn hostile(name: &'static str, html: &'static str) -> Hostile {
    Hostile {
        name,
        html,
        charset: "utf-8",
        encoding: Encoding::SevenBit,
        remote_image: None,
    }
}

/// At least 25 ways to smuggle script or remote loads into an HTML body.
fn hostile_corpus() -> Vec<Hostile> {
    vec![
        hostile("script-plain", "<p>Hello</p><script>alert(1)</script>"),
        hostile(
            "script-upper-src",
            "<SCRIPT SRC=https://evil.example/x.js></SCRIPT><ScRiPt>alert(1)</sCrIpT>",
        ),
        hostile(
            "script-split",
            "<scr<script>ipt>alert(1)</scr</script>ipt><script/xss src=x></script><script\n>alert(2)</script\n>",
        ),
        hostile(
            "event-handlers",
            "<img src=x onerror=alert(1)><div onmouseover=\"alert(2)\" ONCLICK='alert(3)'>hover</div><body onload=alert(4)><details open ontoggle=alert(5)><summary>s</summary></details><marquee onstart=alert(6)>m</marquee>",
        ),
        hostile(
            "javascript-href",
            "<a href=\"javascript:alert(1)\">a</a><a href=\"JaVaScRiPt:alert(2)\">b</a><a href=\" javascript:alert(3)\">c</a><a href=\"jav&#x09;ascript:alert(4)\">d</a><a href=\"java\nscript:alert(5)\">e</a>",
        ),
        hostile(
            "entity-encoded-javascript",
            "<a href=\"&#106;avascript:alert(1)\">a</a><a href=\"&#x6A;&#x61;&#x76;&#x61;script&colon;alert(2)\">b</a><a href=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(3)\">c</a>",
        ),
        hostile(
            "vbscript-and-data-links",
            "<a href=\"vbscript:msgbox(1)\">v</a><a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">d</a><a href=\"DATA:text/html,<script>alert(1)</script>\">D</a>",
        ),
        hostile(
            "javascript-and-svg-image-src",
            "<img src=\"javascript:alert(1)\"><img src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\"><img src=\"data:text/html,<script>alert(1)</script>\">",
        ),
        hostile(
            "svg-script",
            "<svg><script>alert(1)</script></svg><svg onload=alert(2)><circle r=5 /></svg><svg><a xlink:href=\"javascript:alert(3)\"><text>x</text></a></svg>",
        ),
        hostile(
            "svg-animate",
            "<svg><a><animate attributeName=href values=javascript:alert(1) /><text x=20 y=20>click</text></a><set attributeName=onmouseover to=alert(2) /></svg>",
        ),
        hostile(
            "math-mxss",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math><math href=\"javascript:alert(2)\">m</math>",
        ),
        hostile(
            "iframe-srcdoc",
            "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\"></iframe><iframe src=\"https://evil.example/\"></iframe><frameset><frame src=\"javascript:alert(2)\"></frameset>",
        ),
        hostile(
            "meta-refresh",
            "<meta http-equiv=\"refresh\" content=\"0; url=https://evil.example/\"><meta http-equiv=\"Set-Cookie\" content=\"a=b\"><p>text</p>",
        ),
        hostile(
            "base-href",
            "<base href=\"https://evil.example/\"><a href=\"/login\">relative</a><img src=\"tracker.gif\">",
        ),
        hostile(
            "css-expression-and-urls",
            "<div style=\"width: expression(alert(1))\">a</div><div style=\"background:url(javascript:alert(2))\">b</div><div style=\"behavior:url(x.htc);-moz-binding:url(https://evil.example/x.xml#x)\">c</div><div style=\"background:u\\72l(https://tracker.example/escaped.gif)\">d</div><div style=\"color:red;background-image:url('https://tracker.example/css.gif')\">e</div>",
        ),
        hostile(
            "style-and-link-elements",
            "<style>body{background:url(https://tracker.example/sheet.gif)} @import 'https://evil.example/x.css'; *{behavior:url(x.htc)}</style><link rel=stylesheet href=\"https://evil.example/x.css\"><p>styled</p>",
        ),
        Hostile {
            remote_image: Some("https://tracker.example/open.gif?id=4711"),
            ..hostile(
                "tracking-pixel",
                "<p>News</p><img src=\"https://tracker.example/open.gif?id=4711\" width=\"1\" height=\"1\" alt=\"\">",
            )
        },
        Hostile {
            remote_image: Some("https://img.example/photo.jpg"),
            ..hostile(
                "srcset-and-picture",
                "<img src=\"https://img.example/photo.jpg\" srcset=\"https://tracker.example/2x.jpg 2x, https://tracker.example/3x.jpg 3x\"><picture><source srcset=\"https://tracker.example/p.webp\"><img src=\"//tracker.example/protocol-relative.gif\"></picture>",
            )
        },
        hostile(
            "background-attributes",
            "<body background=\"https://tracker.example/body.gif\"><table background=\"https://tracker.example/table.gif\"><tr><td background=\"javascript:alert(1)\">cell</td></tr></table>",
        ),
        hostile(
            "comment-and-cdata-tricks",
            "<!--<script>alert(1)//--><script>alert(2)</script><!-- --!><script>alert(3)</script> --><![CDATA[<script>alert(4)</script>]]><!--[if gte mso 9]><script>alert(5)</script><![endif]--><!-->x<script>alert(6)</script>",
        ),
        hostile(
            "unclosed-tags",
            "<img src=x onerror=alert(1)//<a href=\"javascript:alert(2)\" <b>bold<div <script>alert(3)</script><p title=\"</p><script>alert(4)</script>",
        ),
        hostile(
            "noscript-mxss",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript><noscript><img src=\"https://tracker.example/noscript.gif\"></noscript>",
        ),
        hostile(
            "forms-and-inputs",
            "<form action=\"https://evil.example/steal\"><input type=password name=p><input type=image src=\"https://tracker.example/input.gif\"><button formaction=\"javascript:alert(1)\">Go</button><textarea><script>alert(2)</script></textarea></form>",
        ),
        hostile(
            "plugins",
            "<object data=\"https://evil.example/x.swf\" type=\"application/x-shockwave-flash\"></object><embed src=\"https://evil.example/x.swf\"><applet code=\"X.class\"></applet><video poster=\"https://tracker.example/poster.jpg\"><source src=\"https://tracker.example/v.mp4\" onerror=alert(1)></video><audio src=\"https://tracker.example/a.mp3\" autoplay></audio>",
        ),
        hostile(
            "template-and-shadow-root",
            "<template shadowrootmode=\"open\"><script>alert(1)</script><img src=x onerror=alert(2)></template><div is=\"x-evil\">custom</div>",
        ),
        hostile(
            "target-and-opener",
            "<a href=\"https://ok.example/\" target=\"_self\" rel=\"opener\">ok</a><a href=\"https://ok.example/2\" ping=\"https://tracker.example/ping\">ping</a><area href=\"javascript:alert(1)\">",
        ),
        Hostile {
            charset: "utf-7",
            ..hostile(
                "utf7-charset",
                "+ADw-script+AD4-alert(1)+ADw-/script+AD4-<p>seven</p>",
            )
        },
        hostile(
            "meta-charset-utf7",
            "<meta charset=\"utf-7\"><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-7\">+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
        ),
        Hostile {
            encoding: Encoding::QuotedPrintable,
            ..hostile(
                "quoted-printable-split",
                "<scr=\r\nipt>alert(1)</script><a href=3D\"java=\r\nscript:alert(2)\">qp</a><img src=3Dx on=\r\nerror=3Dalert(3)>",
            )
        },
        Hostile {
            encoding: Encoding::Base64,
            ..hostile(
                "base64-body",
                "<html><head><script>alert(1)</script></head><body onload=\"alert(2)\"><p>b64</p></body></html>",
            )
        },
        Hostile {
            charset: "x-no-such-charset",
            ..hostile(
                "unknown-charset",
                "<p>\u{fffd}</p><script>alert(1)</script><a href=\"javascript:alert(2)\">x</a>",
            )
        },
    ]
}

/// An HTML-only message with `subject` carrying `hostile`'s body.
fn html_message(subject: &str, hostile: &Hostile) -> Vec<u8> {
    let (cte, body) = match hostile.encoding {
        Encoding::SevenBit => ("8bit", hostile.html.to_owned()),
        // The corpus writes quoted-printable itself, soft breaks included.
        Encoding::QuotedPrintable => ("quoted-printable", hostile.html.to_owned()),
        Encoding::Base64 => ("base64", base64_lines(hostile.html.as_bytes())),
    };
    format!(
        "From: Mallory <mallory@evil.example>\r\n\
         To: {USER}@example.test\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 06 May 2024 12:00:00 +0000\r\n\
         Message-ID: <{subject}@evil.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=\"{}\"\r\n\
         Content-Transfer-Encoding: {cte}\r\n\
         \r\n\
         {body}\r\n",
        hostile.charset
    )
    .into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Tags a sanitised body may contain.
const ALLOWED_TAGS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "article",
    "aside",
    "b",
    "bdi",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "data",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "main",
    "mark",
    "nav",
    "ol",
    "p",
    "pre",
    "q",
    "rp",
    "rt",
    "rtc",
    "ruby",
    "s",
    "samp",
    "section",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "time",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
];

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(/?)([a-zA-Z][^\s/>]*)([^>]*)>").expect("regex"));
static ATTRIBUTE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"([^\s"'=/>]+)(?:="([^"]*)")?"#).expect("regex"));

/// Every tag of a sanitised body: (name, [(attribute, value)]). html5ever serialises
/// attribute values in double quotes with `<`, `>`, `"` and `&` escaped, so a `>` always
/// ends a tag and text never holds a `<`.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    TAG.captures_iter(html)
        .filter(|c| c[1].is_empty())
        .map(|c| {
            let attributes = ATTRIBUTE
                .captures_iter(&c[3])
                .map(|a| {
                    let value = a.get(2).map_or("", |v| v.as_str());
                    (a[1].to_ascii_lowercase(), unescape(value))
                })
                .collect();
            (c[2].to_ascii_lowercase(), attributes)
        })
        .collect()
}

fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn is_remote(url: &str) -> bool {
    let url = url.trim().to_ascii_lowercase();
    url.starts_with("http:") || url.starts_with("https:") || url.starts_with("//")
}

/// Asserts that `html` holds nothing that runs and, unless `remote_allowed`, nothing that
/// loads from elsewhere; returns the remote URLs it would load.
fn assert_inert(name: &str, html: &str, remote_allowed: bool) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<style") && !lower.contains("<iframe"),
        "{name}: active element in {html}"
    );
    let mut loads = Vec::new();
    for (tag, attributes) in tags(html) {
        assert!(
            ALLOWED_TAGS.contains(&tag.as_str()),
            "{name}: <{tag}> in {html}"
        );
        for (attribute, value) in &attributes {
            let value_lower = value.to_ascii_lowercase();
            assert!(
                !attribute.starts_with("on"),
                "{name}: {attribute} in {html}"
            );
            assert!(
                ![
                    "srcset",
                    "ping",
                    "formaction",
                    "action",
                    "xlink:href",
                    "srcdoc",
                    "poster"
                ]
                .contains(&attribute.as_str()),
                "{name}: {attribute} in {html}"
            );
            for bad in [
                "javascript:",
                "vbscript:",
                "data:text",
                "data:image/svg",
                "expression(",
                "behavior",
                "binding",
            ] {
                assert!(
                    !value_lower
                        .replace(['\t', '\n', '\r', ' '], "")
                        .contains(bad),
                    "{name}: {bad} in {attribute}={value:?} of {html}"
                );
            }
            match attribute.as_str() {
                "href" => {
                    assert_eq!(tag, "a", "{name}: href on <{tag}>");
                    assert!(
                        ["http:", "https:", "mailto:", "tel:"]
                            .iter()
                            .any(|s| value_lower.starts_with(s)),
                        "{name}: link {value:?}"
                    );
                }
                "src" | "background" => {
                    if is_remote(value) {
                        assert!(remote_allowed, "{name}: remote {attribute}={value:?}");
                        assert!(
                            !value.starts_with("//"),
                            "{name}: protocol-relative {value:?}"
                        );
                        loads.push(value.clone());
                    } else {
                        assert!(
                            value.starts_with("/v1/mailboxes/")
                                || value_lower.starts_with("data:image/"),
                            "{name}: {attribute}={value:?}"
                        );
                    }
                }
                "style" => {
                    let urls = value_lower.matches("url(").count();
                    assert!(
                        urls == 0 || remote_allowed,
                        "{name}: CSS url() without remote content: {value:?}"
                    );
                    assert!(!value.contains('\\'), "{name}: CSS escape in {value:?}");
                    if urls > 0 {
                        loads.push(value.clone());
                    }
                }
                _ => {}
            }
        }
        if tag == "a" {
            let get = |n: &str| {
                attributes
                    .iter()
                    .find(|(a, _)| a == n)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(get("rel"), Some("noopener noreferrer"), "{name}: {html}");
            assert_eq!(get("target"), Some("_blank"), "{name}: {html}");
        }
    }
    loads
}

/// Delivers `messages` (subject, raw) to INBOX and returns subject → UID.
async fn seed(
    bridge: &TestBridge,
    token: &str,
    messages: &[(String, Vec<u8>)],
) -> HashMap<String, u32> {
    for (_, raw) in messages {
        bridge.dovecot.deliver(USER, "INBOX", raw, "", None);
    }
    let (status, list) = bridge
        .get_json(token, "/v1/mailboxes/INBOX/messages?limit=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap_or_default().to_owned(),
                u32::try_from(m["uid"].as_u64().expect("uid")).expect("u32"),
            )
        })
        .collect()
}

async fn view(bridge: &TestBridge, token: &str, uid: u32, query: &str) -> Value {
    let (status, message) = bridge
        .get_json(token, &format!("/v1/mailboxes/INBOX/messages/{uid}{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{uid}{query}: {message}");
    message
}

#[tokio::test]
async fn hostile_html_mail_shows_nothing_that_runs_or_phones_home() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let corpus = hostile_corpus();
    assert!(corpus.len() >= 25);
    let messages: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .map(|h| {
            let subject = format!("hostile-{}", h.name);
            let raw = html_message(&subject, h);
            (subject, raw)
        })
        .collect();
    let uids = seed(&bridge, &token, &messages).await;

    let mut shown = HashMap::new();
    for hostile in &corpus {
        let uid = uids[&format!("hostile-{}", hostile.name)];
        let message = view(&bridge, &token, uid, "").await;
        let html = message["html"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no html in {message}", hostile.name));
        let loads = assert_inert(hostile.name, html, false);
        assert!(loads.is_empty());
        if let Some(image) = hostile.remote_image {
            // The image keeps its element, its URL parked for a "load images" button.
            let escaped = image.replace('&', "&amp;");
            assert!(
                html.contains(&format!("data-blocked-src=\"{escaped}\"")),
                "{}: {html}",
                hostile.name
            );
        }
        shown.insert(hostile.name, html.to_owned());
    }

    // What legitimate content there is survives.
    let text_of = |name: &str| shown[name].as_str();
    assert!(text_of("event-handlers").contains("hover"));
    assert!(text_of("base64-body").contains("<p>b64</p>"));
    assert!(text_of("utf7-charset").contains("<p>seven</p>"));
    let styled = text_of("css-expression-and-urls");
    assert!(styled.contains("style=\"color:red\""), "{styled}");
    let links = text_of("target-and-opener");
    assert!(links.contains("href=\"https://ok.example/\""), "{links}");
    assert!(
        !links.contains("_self") && !links.contains("\"opener\""),
        "{links}"
    );
    let background = text_of("background-attributes");
    assert!(
        background.contains("data-blocked-background=\"https://tracker.example/table.gif\""),
        "{background}"
    );
}

#[tokio::test]
async fn asking_for_remote_content_loads_images_but_never_scripts() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let corpus = hostile_corpus();
    let messages: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .map(|h| {
            let subject = format!("remote-{}", h.name);
            let raw = html_message(&subject, h);
            (subject, raw)
        })
        .collect();
    let uids = seed(&bridge, &token, &messages).await;

    for hostile in &corpus {
        let uid = uids[&format!("remote-{}", hostile.name)];
        let message = view(&bridge, &token, uid, "?remote_content=true").await;
        let html = message["html"].as_str().expect("html");
        let loads = assert_inert(hostile.name, html, true);
        if let Some(image) = hostile.remote_image {
            assert!(
                loads.iter().any(|l| l == image),
                "{}: {loads:?} in {html}",
                hostile.name
            );
            assert!(
                !html.contains("data-blocked-src"),
                "{}: {html}",
                hostile.name
            );
        }
        for load in &loads {
            // Only what the mail shows as an image or background loads; never what only
            // srcset, <source>, <input>, <video>, <link>, <style> or noscript asked for.
            for hidden in [
                "2x.jpg",
                "p.webp",
                "input.gif",
                "poster.jpg",
                "sheet.gif",
                "noscript.gif",
                "protocol-relative",
                "escaped.gif",
            ] {
                assert!(!load.contains(hidden), "{}: {load}", hostile.name);
            }
        }
    }
    let css = view(
        &bridge,
        &token,
        uids["remote-css-expression-and-urls"],
        "?remote_content=true",
    )
    .await;
    assert!(
        css["html"]
            .as_str()
            .expect("html")
            .contains("url(&quot;https://tracker.example/css.gif&quot;)"),
        "{css}"
    );

    // The parameter is validated like every other.
    let (status, body) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages/{}?remote_content=maybe",
                uids["remote-script-plain"]
            ),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

/// A newsletter whose HTML shows an inline logo (`cid:`), refers to a part that is not
/// there, and carries a PDF.
fn related_message() -> Vec<u8> {
    let png: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    format!(
        "From: News <news@example.test>\r\n\
         To: {USER}@example.test\r\n\
         Subject: inline images\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\
         \r\n\
         --mixed\r\n\
         Content-Type: multipart/related; boundary=\"rel\"; type=\"text/html\"\r\n\
         \r\n\
         --rel\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         \r\n\
         <p><img src=\"cid:logo@example.test\" alt=\"Logo\"><img src=\"cid:missing@example.test\" alt=\"gone\">\
         <img src=\"CID:Logo%40Example.test\" alt=\"case\"><img src=\"cid:photo%20one@example.test\"></p>\r\n\
         --rel\r\n\
         Content-Type: image/png; name=\"logo.png\"\r\n\
         Content-ID: <logo@example.test>\r\n\
         Content-Disposition: inline; filename=\"logo.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n\
         --rel\r\n\
         Content-Type: image/jpeg\r\n\
         Content-ID: <photo one@example.test>\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         /9j/4AAQ\r\n\
         --rel--\r\n\
         --mixed\r\n\
         Content-Type: application/pdf; name=\"Q1 \\\"final\\\"; report.pdf\"\r\n\
         Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22Q1%22%3B%20%E2%82%AC.pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         JVBERi0xLjQKJcfsj6IK\r\n\
         --mixed\r\n\
         Content-Type: text/html; charset=utf-8; name=\"page.html\"\r\n\
         Content-Disposition: attachment; filename=\"page.html\"\r\n\
         \r\n\
         <script>alert(document.domain)</script>\r\n\
         --mixed--\r\n",
        base64_lines(png)
    )
    .into_bytes()
}

#[tokio::test]
async fn inline_images_point_at_the_bridges_own_parts() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let folder = "Entwürfe/Bilder & Co";
    bridge
        .dovecot
        .deliver(USER, folder, &related_message(), "", None);
    let base = format!("/v1/mailboxes/{}/messages", seg(folder));
    let (status, list) = bridge.get_json(&token, &base).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let uid = list["messages"][0]["uid"].as_u64().expect("uid");
    let (status, message) = bridge.get_json(&token, &format!("{base}/{uid}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    let html = message["html"].as_str().expect("html");
    let attachments = message["attachments"].as_array().expect("attachments");
    let part_of = |cid: &str| {
        attachments
            .iter()
            .find(|a| a["content_id"] == cid)
            .unwrap_or_else(|| panic!("{cid} in {attachments:?}"))["part_id"]
            .as_str()
            .expect("part_id")
            .to_owned()
    };
    let logo_url = format!("{base}/{uid}/attachments/{}", part_of("logo@example.test"));
    let photo_url = format!(
        "{base}/{uid}/attachments/{}",
        part_of("photo one@example.test")
    );
    let images: Vec<Vec<(String, String)>> = tags(html)
        .into_iter()
        .filter(|(tag, _)| tag == "img")
        .map(|(_, attributes)| attributes)
        .collect();
    let src = |alt: Option<&str>, index: usize| -> Option<String> {
        let attributes = match alt {
            Some(alt) => images
                .iter()
                .find(|a| a.iter().any(|(n, v)| n == "alt" && v == alt))
                .expect("image"),
            None => &images[index],
        };
        attributes
            .iter()
            .find(|(n, _)| n == "src")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(src(Some("Logo"), 0), Some(logo_url.clone()), "{html}");
    assert_eq!(
        src(Some("gone"), 0),
        None,
        "a cid without a part is dropped: {html}"
    );
    assert_eq!(src(Some("case"), 0), Some(logo_url.clone()), "{html}");
    assert_eq!(src(None, 3), Some(photo_url), "{html}");
    assert_inert("related", html, false);

    // The rewritten URL is the bridge's own: with the token, it serves the image.
    let res = bridge
        .request(Method::GET, &logo_url, Some(&token))
        .send()
        .await
        .expect("logo");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert!(res.bytes().await.expect("png").starts_with(b"\x89PNG"));
}

fn header<'r>(res: &'r reqwest::Response, name: &str) -> &'r str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ascii header")
}

/// Asserts the headers that keep a download from running as a page of the bridge.
fn assert_download_headers(what: &str, res: &reqwest::Response) {
    assert!(
        header(res, "content-disposition").starts_with("attachment;"),
        "{what}"
    );
    assert!(
        header(res, "content-disposition").contains("filename*=UTF-8''"),
        "{what}"
    );
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
    let csp = header(res, "content-security-policy");
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{what}: {csp}"
    );
    assert!(header(res, "etag").starts_with('"'), "{what}");
}

#[tokio::test]
async fn downloads_are_attachments_a_browser_will_not_run() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let raw = related_message();
    bridge.dovecot.deliver(USER, "INBOX", &raw, "", None);
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = list["messages"][0]["uid"].as_u64().expect("uid");
    let (_, message) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    let attachments = message["attachments"].as_array().expect("attachments");
    let part = |content_type: &str| {
        attachments
            .iter()
            .find(|a| a["content_type"] == content_type)
            .unwrap_or_else(|| panic!("{content_type}"))["part_id"]
            .as_str()
            .expect("id")
            .to_owned()
    };

    let get = |path: String| {
        let request = bridge.request(Method::GET, &path, Some(&token));
        async move { request.send().await.expect("download") }
    };
    let res = get(format!("/v1/mailboxes/INBOX/messages/{uid}/raw")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_download_headers("raw", &res);
    assert_eq!(
        header(&res, "content-disposition"),
        format!("attachment; filename=\"message-{uid}.eml\"; filename*=UTF-8''message-{uid}.eml")
    );
    assert_eq!(res.bytes().await.expect("raw").as_ref(), raw.as_slice());

    // An HTML attachment stays an attachment, however inviting its content.
    let res = get(format!(
        "/v1/mailboxes/INBOX/messages/{uid}/attachments/{}",
        part("text/html")
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_download_headers("html attachment", &res);
    assert!(header(&res, "content-disposition").contains("page.html"));

    // A file name with quotes, a semicolon and non-ASCII letters cannot break the header.
    let res = get(format!(
        "/v1/mailboxes/INBOX/messages/{uid}/attachments/{}",
        part("application/pdf")
    ))
    .await;
    assert_download_headers("pdf", &res);
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"R_sum_ _Q1_; _.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22Q1%22%3B%20%E2%82%AC.pdf"
    );
    assert!(res.bytes().await.expect("pdf").starts_with(b"%PDF"));

    // Inline parts download the same way.
    let res = get(format!(
        "/v1/mailboxes/INBOX/messages/{uid}/attachments/{}",
        part("image/png")
    ))
    .await;
    assert_download_headers("inline image", &res);
}

#[tokio::test]
async fn downloads_resume_and_revalidate_with_range_and_etag() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let size = 300_000;
    let raw = common::corpus::with_attachment(size);
    bridge.dovecot.deliver(USER, "INBOX", &raw, "", None);
    let expected = common::corpus::attachment_bytes(size);
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = list["messages"][0]["uid"].as_u64().expect("uid");
    // JSON still travels compressed; only downloads are left alone.
    let listing = bridge
        .request(Method::GET, "/v1/mailboxes/INBOX/messages", Some(&token))
        .header("accept-encoding", GZIP)
        .send()
        .await
        .expect("listing");
    assert_eq!(header(&listing, "content-encoding"), "gzip");
    let raw_path = format!("/v1/mailboxes/INBOX/messages/{uid}/raw");
    let part_path = format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/2");

    for (path, content) in [
        (&raw_path, raw.as_slice()),
        (&part_path, expected.as_slice()),
    ] {
        let send = |headers: Vec<(&'static str, String)>| {
            let mut request = bridge.request(Method::GET, path, Some(&token));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            async move { request.send().await.expect("download") }
        };
        // Asking for compression, as browsers do: a download still comes whole, sized and
        // resumable.
        let full = send(vec![("accept-encoding", GZIP.into())]).await;
        assert_eq!(full.status(), StatusCode::OK, "{path}");
        assert_download_headers(path, &full);
        assert_eq!(header(&full, "accept-ranges"), "bytes");
        assert_eq!(full.headers().get("content-encoding"), None, "{path}");
        // The raw message's length is known up front; a base64 part's decoded length only
        // after decoding, so it streams without one.
        if path == &raw_path {
            assert_eq!(header(&full, "content-length"), content.len().to_string());
        } else {
            assert_eq!(full.headers().get("content-length"), None, "{path}");
        }
        let etag = header(&full, "etag").to_owned();
        assert_eq!(
            full.bytes().await.expect("body").as_ref(),
            content,
            "{path}"
        );

        // Resuming: a range, with and without a matching If-Range.
        let part = send(vec![
            ("accept-encoding", GZIP.into()),
            ("range", "bytes=1000-".into()),
            ("if-range", etag.clone()),
        ])
        .await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{path}");
        assert_download_headers(path, &part);
        assert_eq!(part.headers().get("content-encoding"), None, "{path}");
        assert_eq!(
            header(&part, "content-length"),
            (content.len() - 1000).to_string()
        );
        assert_eq!(
            header(&part, "content-range"),
            format!("bytes 1000-{}/{}", content.len() - 1, content.len())
        );
        assert_eq!(part.bytes().await.expect("body").as_ref(), &content[1000..]);
        let stale = send(vec![
            ("range", "bytes=1000-".into()),
            ("if-range", "\"1-1\"".into()),
        ])
        .await;
        assert_eq!(
            stale.status(),
            StatusCode::OK,
            "{path}: a stale If-Range gets everything"
        );
        assert_eq!(stale.bytes().await.expect("body").as_ref(), content);
        let suffix = send(vec![("range", "bytes=-10".into())]).await;
        assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            suffix.bytes().await.expect("body").as_ref(),
            &content[content.len() - 10..]
        );

        // Revalidating: the same ETag answers 304 without a body.
        let cached = send(vec![("if-none-match", etag.clone())]).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&cached, "etag"), etag);
        assert!(cached.bytes().await.expect("body").is_empty());
        let (status, problem) =
            json_of(send(vec![("range", format!("bytes={}-", content.len()))]).await).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Some("range_not_satisfiable")
            )
        );
    }
}

/// What browsers send as `Accept-Encoding`.
const GZIP: &str = "gzip, deflate, br";

/// A message whose body is `depth` multiparts nested in one another around one text part.
fn nested_message(subject: &str, depth: usize) -> Vec<u8> {
    let mut raw = format!(
        "From: Mallory <mallory@evil.example>\r\nTo: {USER}@example.test\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
    );
    for level in 1..depth {
        raw.push_str(&format!(
            "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n",
            level - 1
        ));
    }
    raw.push_str(&format!(
        "--b{}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ninnermost\r\n",
        depth - 1
    ));
    for level in (0..depth).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    raw.into_bytes()
}

/// A message with `parts` text parts side by side.
fn wide_message(subject: &str, parts: usize) -> Vec<u8> {
    let mut raw = format!(
        "From: Mallory <mallory@evil.example>\r\nTo: {USER}@example.test\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"w\"\r\n\r\n"
    );
    for index in 0..parts {
        raw.push_str(&format!(
            "--w\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\npart {index}\r\n"
        ));
    }
    raw.push_str("--w--\r\n");
    raw.into_bytes()
}

/// Opens `subject`'s message, its first attachment and its raw form, timing each answer.
async fn open_timed(
    bridge: &TestBridge,
    token: &str,
    uids: &HashMap<String, u32>,
    subject: &str,
) -> (StatusCode, Value, StatusCode, StatusCode) {
    let uid = uids[subject];
    let started = Instant::now();
    let (view_status, view) = bridge
        .get_json(token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    let (part_status, _) = bridge
        .get_json(
            token,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/1"),
        )
        .await;
    let raw = bridge
        .request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/raw"),
            Some(token),
        )
        .send()
        .await
        .expect("raw");
    let raw_status = raw.status();
    raw.bytes().await.expect("raw body");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{subject}: {:?}",
        started.elapsed()
    );
    (view_status, view, part_status, raw_status)
}

/// Runs `test` the way the bridge's binary runs: on worker threads with 32 MiB stacks.
/// imap-proto parses (and drops) BODYSTRUCTURE recursively; on the 2 MiB stack of a
/// default test runtime, a debug build overflows at about 60 levels of multipart and the
/// whole test process aborts.
fn on_bridge_runtime(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(32 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test);
}

/// Asserts that opening a message beyond the limits is refused with 403 `forbidden`,
/// its parts too, while the raw message stays downloadable.
async fn assert_refused(
    bridge: &TestBridge,
    token: &str,
    uids: &HashMap<String, u32>,
    subject: &str,
) {
    let (view_status, view, part_status, raw_status) =
        open_timed(bridge, token, uids, subject).await;
    assert_eq!(
        (view_status, view["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{subject}: {view}"
    );
    assert!(
        view["detail"]
            .as_str()
            .is_some_and(|d| d.contains("MIME structure")),
        "{subject}: {view}"
    );
    assert_eq!(part_status, StatusCode::FORBIDDEN, "{subject}");
    assert_eq!(
        raw_status,
        StatusCode::OK,
        "{subject}: the raw message stays downloadable"
    );
}

#[test]
fn mime_structures_beyond_the_limits_are_refused_quickly() {
    on_bridge_runtime(async {
        let bridge = TestBridge::start().await;
        let token = bridge.login().await;
        let messages = vec![
            // Dovecot stops nesting at 100 levels, so 100 is the deepest a server sends.
            ("nested-100".to_owned(), nested_message("nested-100", 100)),
            ("nested-33".to_owned(), nested_message("nested-33", 33)),
            ("nested-32".to_owned(), nested_message("nested-32", 32)),
            ("wide-1500".to_owned(), wide_message("wide-1500", 1500)),
            ("wide-999".to_owned(), wide_message("wide-999", 999)),
        ];
        let started = Instant::now();
        let uids = seed(&bridge, &token, &messages).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "listing took {:?}",
            started.elapsed()
        );
        for refused in ["nested-100", "nested-33", "wide-1500"] {
            assert_refused(&bridge, &token, &uids, refused).await;
        }
        for accepted in ["nested-32", "wide-999"] {
            let (view_status, view, _, raw_status) =
                open_timed(&bridge, &token, &uids, accepted).await;
            assert_eq!(view_status, StatusCode::OK, "{accepted}: {view}");
            assert_eq!(raw_status, StatusCode::OK);
            assert!(
                view["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("innermost") || t.contains("part 998")),
                "{accepted}: {view}"
            );
        }
        // The bridge is still serving.
        let (status, _) = bridge.get_json(&token, "/v1/mailboxes").await;
        assert_eq!(status, StatusCode::OK);
    });
}

/// A 10,000-part message (Dovecot's own ceiling) has a BODYSTRUCTURE of about 740 KB.
/// async-imap parses a response again from its start each time more of it arrives, which
/// makes reading it quadratic: about 0.8 s in a release build, 20–35 s in a debug one
/// (past the tests' 10 s IMAP command timeout). Hence release builds only:
/// `cargo nextest run --release --test html_safety`.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "quadratic response parsing in async-imap; run with --release"
)]
fn ten_thousand_parts_are_refused_in_about_a_second() {
    on_bridge_runtime(async {
        let bridge = TestBridge::start().await;
        let token = bridge.login().await;
        let folder = "Wide";
        bridge
            .dovecot
            .deliver(USER, folder, &wide_message("wide-10000", 10_000), "", None);
        let started = Instant::now();
        let (status, list) = bridge
            .get_json(&token, &format!("/v1/mailboxes/{folder}/messages"))
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "listing took {:?}",
            started.elapsed()
        );
        assert_eq!(list["messages"][0]["has_attachments"], false);
        let uid = list["messages"][0]["uid"].as_u64().expect("uid");
        let started = Instant::now();
        let (status, view) = bridge
            .get_json(&token, &format!("/v1/mailboxes/{folder}/messages/{uid}"))
            .await;
        assert_eq!(
            (status, view["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{view}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "opening took {:?}",
            started.elapsed()
        );
    });
}

#[tokio::test]
async fn html_too_complex_to_parse_is_cut_short_quickly() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut reopened = String::from("<div>");
    for index in 0..20_000 {
        reopened.push_str(&format!("<b x={index}>"));
    }
    reopened.push_str("</div>");
    reopened.push_str(&"<p>x</p>".repeat(20_000));
    let bodies = [
        (
            "deep-divs",
            format!("<p>start</p>{}", "<div>".repeat(400_000)),
        ),
        ("reopened-formatting", reopened),
    ];
    let messages: Vec<(String, Vec<u8>)> = bodies
        .iter()
        .map(|(name, html)| {
            let raw = format!(
                "From: m@evil.example\r\nSubject: {name}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
            );
            (name.to_string(), raw.into_bytes())
        })
        .collect();
    let uids = seed(&bridge, &token, &messages).await;
    for (name, _) in &bodies {
        let started = Instant::now();
        let message = view(&bridge, &token, uids[*name], "").await;
        let elapsed = started.elapsed();
        let html = message["html"].as_str().expect("html");
        assert!(elapsed < Duration::from_secs(10), "{name}: {elapsed:?}");
        assert!(html.len() < 1_000_000, "{name}: {} bytes", html.len());
        assert_inert(name, html, false);
    }
    let deep = view(&bridge, &token, uids["deep-divs"], "").await;
    assert!(
        deep["html"]
            .as_str()
            .expect("html")
            .starts_with("<p>start</p>")
    );
}
