#!/usr/bin/env python3
"""The independent decoder of tests/message_fidelity.rs: reads each .eml named on the command
line with Python's email package (BytesParser, policy.default) and prints one JSON object per
message, in order:

  file, subject, from/to/cc ([{name, address}]), date (RFC 3339 UTC or null), text (the
  text/plain body parts joined with a newline, or null), html (whether there is an HTML body),
  html_text (the visible text of the HTML body), attachments ([{filename, content_type, size,
  sha256}] of the decoded content), header_names (in order, duplicates kept) and header_values
  ([name, value] of Subject, Comments and X-* fields).

Which parts are body and which attachments follows the rules the bridge documents (the last
text/plain and HTML alternative, the root of multipart/related, inline text parts without a
file name); everything that is decoding — header words, addresses, dates, charsets, transfer
encodings, file names — is Python's own. Bytes Python cannot decode come out as U+FFFD.
"""

import hashlib
import html.parser
import json
import re
import sys
from datetime import timezone
from email import policy
from email.parser import BytesParser

SURROGATES = re.compile("[\udc80-\udcff]")
LINE_ENDS = re.compile(rb"\r\n|\r|\n")
BINARY_ENCODINGS = ("base64", "x-uuencode", "uuencode", "uue", "x-uue")

# Re-serialising an attached message without refolding or re-encoding anything, to compare
# it with the bytes the server serves for that part.
RAW_POLICY = policy.default.clone(linesep="\r\n", refold_source="none", max_line_length=None, cte_type="8bit")


def clean(text):
    if text is None:
        return None
    return SURROGATES.sub("\ufffd", str(text))


def addresses(msg, name):
    header = msg[name]
    if header is None:
        return []
    return [
        {"name": clean(a.display_name) or None, "address": clean(a.addr_spec)}
        for a in getattr(header, "addresses", ())
    ]


def date(msg):
    header = msg["date"]
    value = getattr(header, "datetime", None) if header is not None else None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Sorted:
    def __init__(self):
        self.text, self.html, self.attachments = [], [], []

    def has_body(self):
        return bool(self.text or self.html)

    def extend(self, other):
        self.text += other.text
        self.html += other.html
        self.attachments += other.attachments


def strip_angle(value):
    value = (value or "").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()


def walk(part, placement):
    """Sorts a part into body text, HTML and attachments, as the bridge documents."""
    out = Sorted()
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        children = part.get_payload()
        subtype = part.get_content_subtype()
        if subtype == "alternative":
            alternatives = [walk(child, placement) for child in children]
            text_choice = max((i for i, a in enumerate(alternatives) if a.text), default=None)
            html_choice = max((i for i, a in enumerate(alternatives) if a.html), default=None)
            for i, alternative in enumerate(alternatives):
                if not (i in (text_choice, html_choice) or not alternative.has_body()):
                    continue
                if i == text_choice:
                    out.text += alternative.text
                if i == html_choice:
                    out.html += alternative.html
                out.attachments += alternative.attachments
        elif subtype == "related":
            start = strip_angle(part.get_param("start"))
            root = 0
            if start:
                for i, child in enumerate(children):
                    if strip_angle(child.get("content-id")) == start:
                        root = i
                        break
            for i, child in enumerate(children):
                out.extend(walk(child, placement if i == root else "resource"))
        else:
            for child in children:
                out.extend(walk(child, placement))
        return out
    content_type = part.get_content_type()
    is_body = placement == "body" and part.get_content_disposition() != "attachment" and part.get_filename() is None
    if content_type == "text/plain" and is_body:
        out.text.append(part)
    elif content_type == "text/html" and is_body:
        out.html.append(part)
    else:
        out.attachments.append(part)
    return out


class VisibleText(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def content(part):
    try:
        return clean(part.get_content())
    except Exception as error:  # Python's failure is part of what the test compares
        return f"<python error: {type(error).__name__}: {error}>"


def eml_name(part):
    """The bridge's documented name for an attached message without one: its subject."""
    nested = part.get_payload(0) if part.is_multipart() else None
    subject = clean(nested["subject"]) if nested is not None and nested["subject"] is not None else ""
    name = "".join("_" if c in "/\\" else c for c in subject if c.isprintable())[:120].strip()
    return f"{name}.eml" if name else None


def attachment(part):
    content_type = part.get_content_type()
    filename = clean(part.get_filename())
    if content_type == "message/rfc822":
        nested = part.get_payload(0)
        data = nested.as_bytes(policy=RAW_POLICY)
        filename = filename or eml_name(part)
    else:
        data = part.get_payload(decode=True) or b""
        if part.get("content-transfer-encoding", "").strip().lower() not in BINARY_ENCODINGS:
            data = LINE_ENDS.sub(b"\r\n", data)
    return {
        "filename": filename,
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def describe(path):
    with open(path, "rb") as handle:
        msg = BytesParser(policy=policy.default).parse(handle)
    sorted_parts = walk(msg, "body")
    texts = [content(p) for p in sorted_parts.text]
    htmls = [content(p) for p in sorted_parts.html]
    visible = VisibleText()
    for markup in htmls:
        visible.feed(markup)
        visible.close()
    subject = msg["subject"]
    items = [(name, value) for name, value in msg.items()]
    return {
        "file": path.rsplit("/", 1)[-1],
        "subject": clean(subject) if subject is not None else None,
        "from": addresses(msg, "from"),
        "to": addresses(msg, "to"),
        "cc": addresses(msg, "cc"),
        "date": date(msg),
        "text": "\n".join(texts) if texts else None,
        "html": bool(htmls),
        "html_text": " ".join(visible.parts) if htmls else None,
        "attachments": [attachment(p) for p in sorted_parts.attachments],
        "header_names": [name for name, _ in items],
        "header_values": [
            [name, clean(value)]
            for name, value in items
            if name.lower() in ("subject", "comments") or name.lower().startswith("x-")
        ],
    }


def main():
    print(json.dumps({"python": sys.version.split()[0]}))
    for path in sys.argv[1:]:
        print(json.dumps(describe(path), ensure_ascii=False))


if __name__ == "__main__":
    main()
