#!/usr/bin/env python3
"""Writes the real-world message corpus: one .eml per case, and overrides.json.

Run from anywhere: `python3 tests/corpus/realworld/generate.py`. The output is committed; run
this again only after changing it, and commit what changes. Every file is named
`<category>-<what it tests>.eml`; README.md lists the categories.

Messages are built as bytes, not with Python's email package, so that they are exactly as
broken as the mail they imitate. `overrides.json` holds, per message, the fields where
Python's email package (the independent decoder of tests/message_fidelity.rs) is known to
read the message differently from mail clients, with the reason and the right value.
"""

import base64
import binascii
import hashlib
import json
import pathlib
import quopri

HERE = pathlib.Path(__file__).resolve().parent
DATE = b"Mon, 04 Mar 2024 10:00:00 +0000"

MESSAGES = {}
OVERRIDES = {}


def add(name, raw, override=None):
    assert name not in MESSAGES, name
    MESSAGES[name] = raw
    if override:
        OVERRIDES[name] = override


def b(s):
    return s.encode("utf-8") if isinstance(s, str) else s


def crlf(s):
    """Bytes with every line ending made CRLF."""
    s = b(s)
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(name, headers, body=b"", defaults=True):
    """A message: `headers` is a list of (name, value) or raw header lines (bytes ending
    without CRLF); the usual headers are added unless `defaults` is false."""
    lines = []
    have = {
        (h[0] if isinstance(h, tuple) else h.split(b":")[0].decode()).strip().lower()
        for h in headers
    }
    if defaults:
        for key, value in [
            ("From", b"Corpus Sender <sender@example.com>"),
            ("To", b"Robin <robin@example.test>"),
            ("Subject", b(name)),
            ("Date", DATE),
            ("Message-ID", b"<" + b(name) + b"@corpus.test>"),
            ("MIME-Version", b"1.0"),
        ]:
            if key.lower() not in have:
                lines.append(b(key) + b": " + value)
    for header in headers:
        if isinstance(header, tuple):
            lines.append(b(header[0]) + b": " + b(header[1]))
        else:
            lines.append(b(header))
    return b"\r\n".join(lines) + b"\r\n\r\n" + b(body)


def b64(data, width=76, eol=b"\r\n"):
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + width] + eol for i in range(0, len(encoded), width))


def qp(data):
    """Quoted-printable with CRLF hard line breaks."""
    return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")


def part(headers, body):
    lines = [b(k) + b": " + b(v) for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + b(body)


def multipart(boundary, parts, preamble=b"", epilogue=b""):
    out = b(preamble)
    for p in parts:
        out += b"--" + b(boundary) + b"\r\n" + p + b"\r\n"
    return out + b"--" + b(boundary) + b"--\r\n" + b(epilogue)


def text_part(text, charset="utf-8", cte="8bit"):
    data = text.encode(charset) if isinstance(text, str) else text
    body = {"base64": b64, "quoted-printable": qp}.get(cte.lower(), lambda d: d)(data)
    return part(
        [("Content-Type", f"text/plain; charset={charset}"), ("Content-Transfer-Encoding", cte)],
        body,
    )


def html_part(html, charset="utf-8", cte="quoted-printable"):
    data = html.encode(charset)
    body = {"base64": b64, "quoted-printable": qp}.get(cte.lower(), lambda d: d)(data)
    return part(
        [("Content-Type", f"text/html; charset={charset}"), ("Content-Transfer-Encoding", cte)],
        body,
    )


def attachment(filename_params, data, ctype="application/octet-stream", cte="base64", extra=()):
    """An attachment part; `filename_params` is the parameter text after `attachment;`."""
    body = {"base64": b64, "quoted-printable": qp}.get(cte.lower(), lambda d: d)(data)
    return encoded_attachment(filename_params, body, ctype, cte, extra)


def encoded_attachment(filename_params, body, ctype="application/octet-stream", cte="base64", extra=()):
    """An attachment part whose body is given already transfer-encoded."""
    return part(
        [
            ("Content-Type", ctype),
            ("Content-Disposition", b"attachment; " + b(filename_params)),
            ("Content-Transfer-Encoding", cte),
            *extra,
        ],
        body,
    )


def blob(seed, size):
    """Deterministic binary data."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def att(filename, content_type, data):
    """An expected attachment, for overrides."""
    return {
        "filename": filename,
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def addr(name, address):
    return {"name": name, "address": address}


def mixed(name, headers, parts, boundary="mixed-boundary-1", **kw):
    return message(
        name,
        [("Content-Type", f'multipart/mixed; boundary="{boundary}"'), *headers],
        multipart(boundary, parts, **kw),
    )


SIMPLE_BODY = "Hello,\n\nthis is the body of a corpus message.\n\nRegards\n"


def plain(name, headers=(), body=SIMPLE_BODY, charset="utf-8", cte="8bit"):
    data = body.encode(charset) if isinstance(body, str) else body
    encoded = {"base64": b64, "quoted-printable": qp}.get(cte.lower(), lambda d: crlf(d))(data)
    return message(
        name,
        [
            ("Content-Type", f"text/plain; charset={charset}"),
            ("Content-Transfer-Encoding", cte),
            *headers,
        ],
        encoded,
    )


# --- RFC 2047 encoded words ------------------------------------------------------------


def rfc2047():
    cases = [
        ("b-utf8", b"=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="),
        ("q-utf8-underscores", b"=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me_br=C3=BBl=C3=A9e?="),
        ("b-split-multibyte", b"=?UTF-8?B?4oI=?= =?UTF-8?B?rCByYXRlcw==?="),
        ("q-split-multibyte", b"=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9_au_lait?="),
        (
            "b-split-emoji",
            b"=?UTF-8?B?UGFydHkg8J8=?=\r\n =?UTF-8?B?jok=?=\r\n =?UTF-8?B?IHRpbWU=?=",
        ),
        (
            "mixed-charsets",
            b"=?UTF-8?Q?Z=C3=BCrich?= and =?ISO-8859-1?Q?M=FCnchen?= and"
            b" =?KOI8-R?B?7c/Ty9fB?=",
        ),
        (
            "adjacent-words-joined",
            b"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=\r\n    =?ISO-8859-2?Q?_c?=",
        ),
        (
            "iso-2022-jp-split",
            b"=?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCJE47cU5BGyhC?=",
        ),
        ("lowercase-markers", b"=?utf-8?b?bG93ZXIgY2FzZQ==?= =?utf-8?q?=C3=A0_la_carte?="),
        ("language-tag", b"=?UTF-8*en?Q?Hello_World?="),
        ("no-space-before-word", b"Re:=?UTF-8?Q?Caf=C3=A9?="),
        ("q-specials", b"=?UTF-8?Q?What=3F_a=5Fb_=3D_c_=22quoted=22?="),
        ("b-missing-padding", b"=?UTF-8?B?TWlzc2luZyBwYWRkaW5n?="),
        (
            "many-words-folded",
            b"\r\n ".join(
                b"=?UTF-8?Q?" + quopri.encodestring(f"word {i} \u00e9 ".encode(), header=True) + b"?="
                for i in range(30)
            ),
        ),
        ("windows-1252-q", b"=?windows-1252?Q?=93Smart=94_quotes_=96_=80_5?="),
        (
            "mixed-encoded-and-plain",
            b"Re: [list] =?utf-8?q?Caf=C3=A9?= tomorrow =?iso-8859-1?q?=E9t=E9?= ok",
        ),
        ("encoded-word-too-long", b"=?UTF-8?Q?" + b"x" * 90 + b"=C3=A9?="),
        ("b-with-whitespace-between", b"=?UTF-8?B?SGVs?=    \t =?UTF-8?B?bG8=?= world"),
    ]
    for what, subject in cases:
        add(f"rfc2047-{what}.eml", message(f"rfc2047-{what}", [("Subject", subject)], crlf(SIMPLE_BODY)))

    subject = "=?UTF-8?X?abc?= and =?UTF-8?B?not base64!?= and =?UTF-8?Q?unterminated"
    add(
        "rfc2047-invalid-words-left-alone.eml",
        message("x", [("Subject", subject)], crlf(SIMPLE_BODY)),
        {
            "reason": "a B word whose text is not base64 is no encoded word: RFC 2047 §6.3 has it"
            " shown as written; Python shows the text inside it",
            "expect": {"subject": subject, "header_values": [["Subject", subject]]},
        },
    )
    add("rfc2047-unknown-charset.eml", message("x", [("Subject", b"=?x-unknown?Q?caf=C3=A9?=")], crlf(SIMPLE_BODY)))
    add(
        "rfc2047-display-names.eml",
        message(
            "x",
            [
                ("From", b"=?UTF-8?Q?Zo=C3=AB_Martin?= <zoe@example.com>"),
                (
                    "To",
                    b"=?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@example.de>,\r\n"
                    b" =?KOI8-R?B?6dfBziDwxdTSz9c=?= <ivan@example.ru>",
                ),
                ("Cc", b"=?UTF-8?B?5bGx55Sw5aSq6YOO?= <yamada@example.jp>"),
            ],
            crlf(SIMPLE_BODY),
        ),
    )
    add(
        "rfc2047-inside-quoted-string.eml",
        message(
            "x",
            [("From", b'"=?UTF-8?Q?J=C3=B6rg_Sch=C3=A4fer?=" <joerg@example.de>')],
            crlf(SIMPLE_BODY),
        ),
    )
    add(
        "rfc2047-encoded-name-with-comma.eml",
        message("x", [("From", b"=?utf-8?q?Doe=2C_John?= <john@example.com>")], crlf(SIMPLE_BODY)),
    )
    add(
        "rfc2047-filename-encoded-word.eml",
        mixed(
            "x",
            [],
            [
                text_part("See attached.\n"),
                attachment(
                    b'filename="=?UTF-8?B?0J/RgNC40LLQtdGCLmRvY3g=?="',
                    blob("docx", 3000),
                    ctype="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                ),
            ],
        ),
    )


# --- RFC 2231 parameters -----------------------------------------------------------------


def rfc2231():
    cases = [
        ("utf8-filename", b"filename*=UTF-8''%E2%82%AC%20rates.pdf"),
        ("continuations-charset", b"filename*0*=iso-8859-1'fr'r%E9sum%E9%20;\r\n filename*1*=%E9t%E9.txt"),
        ("plain-continuations", b'filename*0="long file ";\r\n filename*1="name.txt"'),
        ("mixed-continuations", b"filename*0*=UTF-8''%C3%BC;\r\n filename*1=ber.txt"),
        ("language-tag", b"filename*=utf-8'de'%C3%9Cbersicht.pdf"),
        ("out-of-order", b"filename*1*=%E9t%E9.txt;\r\n filename*0*=iso-8859-1''r%E9sum%E9%20"),
        ("gb18030-charset", b"filename*=GB18030''%C4%E3%BA%C3.txt"),
        ("many-continuations", b";\r\n ".join(b"filename*%d=\"part%02d-\"" % (i, i) for i in range(12)) + b';\r\n filename*12="end.txt"'),
    ]
    for what, params in cases:
        add(
            f"rfc2231-{what}.eml",
            mixed(what, [], [text_part("Attached.\n"), attachment(params, blob(what, 700))]),
        )
    add(
        "rfc2231-name-on-content-type.eml",
        mixed(
            "x",
            [],
            [
                text_part("Attached.\n"),
                part(
                    [
                        ("Content-Type", b"application/pdf; name*=utf-8''%E6%8A%A5%E5%91%8A.pdf"),
                        ("Content-Transfer-Encoding", "base64"),
                    ],
                    b64(blob("name", 900)),
                ),
            ],
        ),
    )
    data = blob("both", 300)
    add(
        "rfc2231-both-forms.eml",
        mixed(
            "x",
            [],
            [
                text_part("Attached.\n"),
                attachment(b"filename=\"fallback.txt\";\r\n filename*=UTF-8''pr%C3%A9f%C3%A9r%C3%A9.txt", data),
            ],
        ),
        {
            "reason": "with both filename and filename*, the RFC 2231 form wins (RFC 6266 §4.3, what"
            " mail clients do); Python takes the plain one",
            "expect": {"attachments": [att("préféré.txt", "application/octet-stream", data)]},
        },
    )
    add(
        "rfc2231-quoted-extended-value.eml",
        mixed(
            "x",
            [],
            [
                text_part("Attached.\n"),
                attachment(b"filename*=\"UTF-8''%E2%9C%93%20done.txt\"", blob("quoted", 200)),
            ],
        ),
    )


# --- quotes and backslashes ------------------------------------------------------------


def quoting():
    cases = [
        ("comma-in-name", [("From", b'"Doe, John" <john.doe@example.com>'), ("To", b"\"O'Brien, Pat\" <pat@example.ie>")]),
        ("escaped-quote-in-name", [("From", b'"Say \\"Hi\\" Bot" <hi@example.com>')]),
        ("backslash-in-name", [("From", b'"Back\\\\slash \\\\ Corp" <bs@example.com>')]),
        ("subject-quotes-backslashes", [("Subject", b'"Quoted" and \\backslash\\ and \'single\' and \\"both\\"')]),
        ("at-sign-in-quoted-name", [("To", b'"user@example.com" <user@example.com>, "Mikel@Lindsaar" <r@example.com>')]),
        ("angle-in-quoted-name", [("From", b'"A <weird> name" <weird@example.com>')]),
        ("parens-in-quoted-name", [("From", b'"Support (EU)" <support@example.eu>')]),
        ("semicolon-in-quoted-name", [("To", b'"Team; Ops" <ops@example.com>, b@example.com')]),
    ]
    for what, headers in cases:
        add(f"quoting-{what}.eml", message(what, headers, crlf(SIMPLE_BODY)))
    add(
        "quoting-filename-with-quotes.eml",
        mixed(
            "x",
            [],
            [text_part("Attached.\n"), attachment(b'filename="report \\"final\\" v2.pdf"', blob("q", 500), "application/pdf")],
        ),
    )


# --- undeclared 8-bit headers ----------------------------------------------------------


def eight_bit_headers():
    add(
        "8bit-latin1-subject.eml",
        message("x", [("Subject", b"Gr\xfc\xdfe von Heinz M\xfcller")], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared 8-bit header (ISO-8859-1): Python substitutes U+FFFD; the bridge, "
            "like mail clients, reads bytes that are not UTF-8 as windows-1252",
            "expect": {
                "subject": "Grüße von Heinz Müller",
                "header_values": [["Subject", "Grüße von Heinz Müller"]],
            },
        },
    )
    add(
        "8bit-latin1-from-name.eml",
        message("x", [("From", b"Heinz M\xfcller <heinz@example.de>"), ("To", b'"J\xf6rg Sch\xe4fer" <js@example.de>')], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared 8-bit display names (ISO-8859-1): Python keeps undecodable bytes"
            " (U+FFFD here); read as windows-1252",
            "expect": {
                "from": [addr("Heinz Müller", "heinz@example.de")],
                "to": [addr("Jörg Schäfer", "js@example.de")],
            },
        },
    )
    add("8bit-utf8-subject.eml", message("x", [("Subject", "Grüße aus Köln — ünïcödé ✓".encode())], crlf(SIMPLE_BODY)))
    add(
        "8bit-utf8-name.eml",
        message("x", [("From", "Zoë Ångström <zoe@example.se>".encode())], crlf(SIMPLE_BODY)),
        {
            "reason": "raw UTF-8 display name (RFC 6532): Python's address parser keeps it as"
            " undecodable bytes",
            "expect": {"from": [addr("Zoë Ångström", "zoe@example.se")]},
        },
    )
    data = b"Fr\xe4sche\r\n"
    add(
        "8bit-latin1-filename.eml",
        mixed(
            "x",
            [],
            [
                text_part("Attached.\n"),
                part(
                    [
                        ("Content-Type", b'text/plain; name="Fr\xe4sche.txt"'),
                        ("Content-Disposition", b'attachment; filename="Fr\xe4sche.txt"'),
                    ],
                    data,
                ),
            ],
        ),
        {
            "reason": "undeclared 8-bit file name (ISO-8859-1): Python substitutes U+FFFD; read"
            " as windows-1252",
            "expect": {"attachments": [att("Fräsche.txt", "text/plain", data)]},
        },
    )
    add(
        "8bit-utf8-filename.eml",
        mixed(
            "x",
            [],
            [text_part("Attached.\n"), attachment('filename="Übersicht für Jörg.pdf"'.encode(), blob("utf8name", 400), "application/pdf")],
        ),
    )
    add(
        "8bit-cp1252-smart-quotes.eml",
        message("x", [("Subject", b"\x93Quoted\x94 \x96 costs \x8010")], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared windows-1252 bytes: Python substitutes U+FFFD",
            "expect": {
                "subject": "“Quoted” – costs €10",
                "header_values": [["Subject", "“Quoted” – costs €10"]],
            },
        },
    )
    add(
        "8bit-mixed-with-encoded-words.eml",
        message("x", [("Subject", b"M\xfcller: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= zur\xfcck")], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared 8-bit text beside encoded words: Python substitutes U+FFFD",
            "expect": {
                "subject": "Müller: Grüße zurück",
                "header_values": [["Subject", "Müller: Grüße zurück"]],
            },
        },
    )
    add(
        "8bit-latin1-x-header.eml",
        message("x", [("X-Mailer", b"M\xfcller Mail 1.0")], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared 8-bit header (ISO-8859-1): Python substitutes U+FFFD",
            "expect": {"header_values": [["Subject", "x"], ["X-Mailer", "Müller Mail 1.0"]]},
        },
    )


# --- charsets of bodies and headers ----------------------------------------------------


CHARSET_TEXTS = [
    ("iso-2022-jp", "iso-2022-jp", "会議の資料", "明日の会議の資料を送ります。\nよろしくお願いします。\n", "7bit"),
    ("gb18030", "gb18030", "你好，世界", "这是一封测试邮件。\n谢谢！\n", "base64"),
    ("gb2312", "gb2312", "中文邮件", "这是简体中文的邮件正文。\n", "8bit"),
    ("koi8-r", "koi8-r", "Привет из Москвы", "Как дела в Москве?\nВсего доброго.\n", "8bit"),
    ("koi8-u", "koi8-u", "Привіт з Києва", "Як справи у Києві?\n", "quoted-printable"),
    ("windows-1252", "windows-1252", "Grüße – „Anführung“", "Preis: 10 € – „Zitat“ – naïve café\n", "quoted-printable"),
    ("windows-1251", "windows-1251", "Привет, мир", "Текст письма в кодировке windows-1251.\n", "base64"),
    ("iso-8859-1", "iso-8859-1", "Grüße aus München", "Das Oktoberfest war großartig.\n", "quoted-printable"),
    ("iso-8859-2", "iso-8859-2", "Zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy.\n", "quoted-printable"),
    ("iso-8859-5", "iso-8859-5", "Здравствуйте", "Текст на кириллице.\n", "8bit"),
    ("iso-8859-7", "iso-8859-7", "Καλημέρα κόσμε", "Τα λέμε αύριο στην Αθήνα.\n", "quoted-printable"),
    ("iso-8859-15", "iso-8859-15", "Prix en €", "Le prix est de 10 € (œuvre).\n", "8bit"),
    ("shift-jis", "shift_jis", "こんにちは世界", "これはテストメールです。\n", "base64"),
    ("big5", "big5", "繁體中文", "這是一封繁體中文的測試郵件。\n", "base64"),
    ("euc-kr", "euc-kr", "안녕하세요", "한국어 테스트 메일입니다.\n", "8bit"),
    ("euc-jp", "euc-jp", "日本語の件名", "EUC-JPで書かれた本文です。\n", "8bit"),
    ("utf-8-base64", "utf-8", "UTF-8 ✓ ☃ 🎉", "Emoji 🎉 and snowman ☃ in base64.\n", "base64"),
]


def charsets():
    for what, charset, subject, body, cte in CHARSET_TEXTS:
        encoded_subject = b"=?" + charset.upper().encode() + b"?B?" + base64.b64encode(subject.encode(charset)) + b"?="
        data = crlf(body.encode(charset))
        encoded = {"base64": b64, "quoted-printable": qp}.get(cte.lower(), lambda d: d)(data)
        add(
            f"charset-{what}.eml",
            message(
                what,
                [
                    ("Subject", encoded_subject),
                    ("From", b"=?" + charset.upper().encode() + b"?B?" + base64.b64encode(subject[:3].encode(charset)) + b"?= <sender@example.com>"),
                    ("Content-Type", f"text/plain; charset={charset}"),
                    ("Content-Transfer-Encoding", cte),
                ],
                encoded,
            ),
        )
    add(
        "charset-utf-8-bom.eml",
        plain("utf-8 bom", body="\ufeffText after a byte order mark.\n"),
        {
            "reason": "a byte order mark is no text: mail clients drop it; Python keeps U+FEFF",
            "expect": {"text": "Text after a byte order mark.\n"},
        },
    )
    add(
        "charset-quoted-label.eml",
        message("x", [("Content-Type", 'text/plain; charset="ISO-8859-1"'), ("Content-Transfer-Encoding", "8bit")], crlf("Caf\xe9 cr\xe8me\n".encode("latin-1"))),
    )
    add(
        "charset-alias-latin1.eml",
        message("x", [("Content-Type", "text/plain; charset=latin1"), ("Content-Transfer-Encoding", "8bit")], crlf("na\xefve fa\xe7ade\n".encode("latin-1"))),
    )
    add(
        "charset-unknown-label.eml",
        message("x", [("Content-Type", "text/plain; charset=x-no-such-charset"), ("Content-Transfer-Encoding", "8bit")], crlf("Unknown label, UTF-8 bytes: café ✓\n")),
        {
            "reason": "unknown charset label: Python's get_content() raises LookupError; mail"
            " clients read the bytes as UTF-8",
            "expect": {"text": "Unknown label, UTF-8 bytes: café ✓\n"},
        },
    )
    add(
        "charset-html-windows-1252.eml",
        message(
            "x",
            [("Content-Type", "text/html; charset=windows-1252"), ("Content-Transfer-Encoding", "quoted-printable")],
            qp(crlf("<html><body><p>\u201cHello\u201d \u2013 caf\u00e9 \u20ac5</p></body></html>\n".encode("cp1252"))),
        ),
    )


# --- MIME structures -------------------------------------------------------------------


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

INVITE = """BEGIN:VCALENDAR
PRODID:-//Corpus//EN
VERSION:2.0
METHOD:REQUEST
BEGIN:VEVENT
UID:corpus-1@example.com
DTSTART:20240305T100000Z
DTEND:20240305T110000Z
SUMMARY:Planning meeting
ORGANIZER;CN=Organiser:mailto:org@example.com
ATTENDEE;CN=Robin;RSVP=TRUE:mailto:robin@example.test
END:VEVENT
END:VCALENDAR
"""


def structures():
    inner = message(
        "inner",
        [("Subject", b"=?UTF-8?Q?Re=3A_Caf=C3=A9_meeting?="), ("From", b"Bob <bob@example.org>")],
        crlf("Inner message body.\n"),
    )
    add(
        "structure-attached-message.eml",
        mixed("x", [], [text_part("Forwarding the message below.\n"), part([("Content-Type", "message/rfc822")], inner)]),
    )
    inner2 = mixed(
        "inner-with-attachment",
        [("Subject", b"Inner with attachment")],
        [text_part("Inner text.\n"), attachment(b'filename="inner.bin"', blob("inner", 500))],
        boundary="inner-boundary",
    )
    outer = mixed("middle", [("Subject", b"Middle")], [text_part("Middle text.\n"), part([("Content-Type", "message/rfc822")], inner2)], boundary="middle-boundary")
    add(
        "structure-attached-message-nested-twice.eml",
        mixed("x", [], [text_part("Outer text.\n"), part([("Content-Type", "message/rfc822"), ("Content-Disposition", 'attachment; filename="forwarded.eml"')], outer)]),
    )
    rel = b"\r\n".join(
        [
            b'Content-Type: multipart/related; boundary="rel"; type="text/html"',
            b"",
            multipart(
                "rel",
                [
                    html_part('<html><body><p>Logo: <img src="cid:logo@corpus.test"></p></body></html>\n'),
                    part(
                        [
                            ("Content-Type", "image/png"),
                            ("Content-ID", "<logo@corpus.test>"),
                            ("Content-Disposition", 'inline; filename="logo.png"'),
                            ("Content-Transfer-Encoding", "base64"),
                        ],
                        b64(PNG),
                    ),
                ],
            ),
        ]
    )
    alt = message(
        "x",
        [("Content-Type", 'multipart/alternative; boundary="alt"')],
        multipart("alt", [text_part("Logo: see the HTML version.\n"), rel]),
    )
    add("structure-related-inside-alternative.eml", alt)
    add(
        "structure-mixed-alternative-related-pdf.eml",
        mixed(
            "x",
            [],
            [
                b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                + multipart("alt", [text_part("Report attached.\n"), rel]),
                attachment(b'filename="report.pdf"', blob("report", 20000), "application/pdf"),
            ],
        ),
    )
    add(
        "structure-related-start-parameter.eml",
        message(
            "x",
            [("Content-Type", 'multipart/related; boundary="rel2"; start="<root@corpus.test>"; type="text/html"')],
            multipart(
                "rel2",
                [
                    part([("Content-Type", "image/png"), ("Content-ID", "<img1@corpus.test>"), ("Content-Transfer-Encoding", "base64")], b64(PNG)),
                    part([("Content-Type", "text/html; charset=utf-8"), ("Content-ID", "<root@corpus.test>")], b'<p>Root <img src="cid:img1@corpus.test"></p>\r\n'),
                ],
            ),
        ),
    )
    add(
        "structure-calendar-invitation.eml",
        message(
            "x",
            [("Content-Type", 'multipart/alternative; boundary="cal"')],
            multipart(
                "cal",
                [
                    text_part("You are invited to Planning meeting.\n"),
                    html_part("<p>You are invited to <b>Planning meeting</b>.</p>\n"),
                    part([("Content-Type", "text/calendar; charset=utf-8; method=REQUEST"), ("Content-Transfer-Encoding", "7bit")], crlf(INVITE)),
                ],
            ),
        ),
    )
    add(
        "structure-calendar-ics-attachment.eml",
        mixed("x", [], [text_part("Invitation attached.\n"), attachment(b'filename="invite.ics"', crlf(INVITE), "application/ics")]),
    )
    tnef = b"\x78\x9f\x3e\x22" + blob("tnef", 2000)
    add(
        "structure-tnef-winmail.eml",
        mixed(
            "x",
            [],
            [
                text_part("Sent from Outlook.\n"),
                part(
                    [("Content-Type", 'application/ms-tnef; name="winmail.dat"'), ("Content-Disposition", 'attachment; filename="winmail.dat"'), ("Content-Transfer-Encoding", "base64")],
                    b64(tnef),
                ),
            ],
        ),
    )
    add(
        "structure-tnef-without-name.eml",
        mixed(
            "x",
            [],
            [text_part("Sent from Outlook.\n"), part([("Content-Type", "application/ms-tnef"), ("Content-Transfer-Encoding", "base64")], b64(tnef))],
        ),
        {
            "reason": "a TNEF part without a file name: mail clients (and the bridge) call it"
            " winmail.dat, as Outlook does; Python's get_filename() is None",
            "expect": {"attachments": [att("winmail.dat", "application/ms-tnef", tnef)]},
        },
    )
    signature = crlf("-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
    add(
        "structure-multipart-signed.eml",
        message(
            "x",
            [("Content-Type", 'multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary="sig"')],
            multipart(
                "sig",
                [
                    text_part("Signed text.\n", cte="quoted-printable"),
                    part([("Content-Type", 'application/pgp-signature; name="signature.asc"'), ("Content-Disposition", 'attachment; filename="signature.asc"')], signature),
                ],
            ),
        ),
    )
    status = crlf("Reporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1\n")
    headers = crlf("From: sender@example.com\nTo: nobody@example.org\nSubject: lost\n")
    add(
        "structure-delivery-status-report.eml",
        message(
            "x",
            [("From", b"Mail Delivery System <MAILER-DAEMON@example.com>"), ("Content-Type", 'multipart/report; report-type=delivery-status; boundary="dsn"')],
            multipart(
                "dsn",
                [
                    text_part("Your message could not be delivered.\n"),
                    part([("Content-Type", "message/delivery-status")], status),
                    part([("Content-Type", "text/rfc822-headers")], headers),
                ],
            ),
        ),
        {
            "reason": "Python parses message/delivery-status into header blocks and gives no bytes"
            " for it; the part's content is its body as written",
            "expect": {
                "attachments": [
                    att(None, "message/delivery-status", status),
                    att(None, "text/rfc822-headers", headers),
                ]
            },
        },
    )
    add(
        "structure-digest.eml",
        message(
            "x",
            [("Content-Type", 'multipart/digest; boundary="dig"')],
            multipart(
                "dig",
                [
                    b"\r\n" + message("digest one", [("Subject", b"Digest one")], crlf("First digest entry.\n")),
                    b"\r\n" + message("digest two", [("Subject", b"Digest two")], crlf("Second digest entry.\n")),
                ],
                preamble=b"Digest preamble text.\r\n",
            ),
        ),
    )
    add(
        "structure-inline-image-without-cid.eml",
        mixed("x", [], [text_part("Photo below.\n"), part([("Content-Type", "image/png"), ("Content-Disposition", "inline"), ("Content-Transfer-Encoding", "base64")], b64(PNG))]),
    )
    add(
        "structure-text-attachment.eml",
        mixed("x", [], [text_part("Notes attached.\n"), attachment(b'filename="notes.txt"', crlf("line one\nline two\n"), "text/plain; charset=utf-8", cte="7bit")]),
    )
    add("structure-html-only.eml", message("x", [("Content-Type", "text/html; charset=utf-8")], crlf("<html><body><h1>Only HTML</h1><p>No plain text here.</p></body></html>\n")))
    nested = text_part("Deep inside.\n")
    for depth in range(10):
        nested = b'Content-Type: multipart/mixed; boundary="deep%d"\r\n\r\n' % depth + multipart(f"deep{depth}", [nested])
    add("structure-deep-nesting.eml", message("x", [], nested))
    add(
        "structure-many-attachments.eml",
        mixed("x", [], [text_part("Thirty files.\n")] + [attachment(f'filename="file-{i:02d}.bin"'.encode(), blob(f"many{i}", 100 + i * 37)) for i in range(30)]),
    )
    add(
        "structure-apple-mail-interleaved.eml",
        mixed(
            "x",
            [],
            [
                text_part("Text before the picture.\n"),
                part([("Content-Type", 'image/png; name="pic.png"'), ("Content-Disposition", 'inline; filename="pic.png"'), ("Content-Transfer-Encoding", "base64")], b64(PNG)),
                text_part("Text after the picture.\n"),
            ],
        ),
    )
    add(
        "structure-alternative-html-preferred.eml",
        message(
            "x",
            [("Content-Type", 'multipart/alternative; boundary="a3"')],
            multipart("a3", [text_part("Plain version.\n"), html_part("<p>HTML <i>version</i>.</p>\n")]),
        ),
    )
    add(
        "structure-rfc822-with-filename.eml",
        mixed(
            "x",
            [],
            [text_part("Original attached.\n"), part([("Content-Type", 'message/rfc822; name="original.eml"'), ("Content-Disposition", 'attachment; filename="original.eml"')], inner)],
        ),
    )
    add(
        "structure-single-part-pdf.eml",
        message("x", [("Content-Type", 'application/pdf; name="only.pdf"'), ("Content-Disposition", 'attachment; filename="only.pdf"'), ("Content-Transfer-Encoding", "base64")], b64(blob("only", 5000))),
    )


# --- uuencode -----------------------------------------------------------------------------


def uuencode(data, name, mode="644", zero_line=b"`"):
    out = f"begin {mode} {name}\r\n".encode()
    for i in range(0, len(data), 45):
        chunk = data[i : i + 45]
        out += binascii.b2a_uu(chunk, backtick=(zero_line == b"`")).replace(b"\n", b"\r\n")
    return out + zero_line + b"\r\nend\r\n"


def uuencoded():
    for cte in ["x-uuencode", "uuencode", "x-uue"]:
        data = blob(cte, 2500)
        add(
            f"uuencode-transfer-encoding-{cte}.eml",
            mixed(
                "x",
                [],
                [
                    text_part("Attached with uuencode.\n"),
                    part(
                        [("Content-Type", 'application/octet-stream; name="data.bin"'), ("Content-Disposition", 'attachment; filename="data.bin"'), ("Content-Transfer-Encoding", cte)],
                        uuencode(data, "data.bin"),
                    ),
                ],
            ),
        )
    data = blob("uu-noname", 1000)
    add(
        "uuencode-transfer-encoding-name-from-begin-line.eml",
        mixed(
            "x",
            [],
            [text_part("Attached.\n"), part([("Content-Type", "application/octet-stream"), ("Content-Transfer-Encoding", "x-uuencode")], uuencode(data, "fromline.bin"))],
        ),
        {
            "reason": "x-uuencode part without a MIME file name: the name is on its `begin` line,"
            " which the bridge reads; Python's get_filename() is None",
            "expect": {"attachments": [att("fromline.bin", "application/octet-stream", data)]},
        },
    )
    photo = blob("photo", 3000)
    text = "Here is the photo:\n\n"
    add(
        "uuencode-embedded-in-text.eml",
        message("x", [("Content-Type", "text/plain; charset=us-ascii")], crlf(text) + uuencode(photo, "photo.jpg") + crlf("\nCheers\n")),
        {
            "reason": "uuencoded file inside a text/plain body: mail clients show it as an"
            " attachment and leave it out of the text; Python's email sees one text part",
            "expect": {"text": text + "\nCheers\n", "attachments": [att("photo.jpg", "image/jpeg", photo)]},
        },
    )
    one, two = blob("uu1", 700), blob("uu2", 90)
    add(
        "uuencode-embedded-two-files.eml",
        message(
            "x",
            [("Content-Type", "text/plain")],
            crlf("Two files:\n") + uuencode(one, "one.pdf", "600") + crlf("and\n") + uuencode(two, "two file.txt", zero_line=b" "),
        ),
        {
            "reason": "uuencoded files inside a text/plain body, one ending with a space line"
            " rather than a backquote: shown as attachments; Python's email sees one text part",
            "expect": {
                "text": "Two files:\nand\n",
                "attachments": [att("one.pdf", "application/pdf", one), att("two file.txt", "text/plain", two)],
            },
        },
    )
    doc = blob("uudoc", 1200)
    pdf = blob("uupdf", 3000)
    add(
        "uuencode-embedded-in-multipart.eml",
        mixed(
            "x",
            [],
            [
                part([("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "7bit")], crlf("Old-style attachment:\n") + uuencode(doc, "old.doc")),
                attachment(b'filename="new.pdf"', pdf, "application/pdf"),
            ],
        ),
        {
            "reason": "uuencoded file inside the text/plain body: shown as an attachment after the"
            " text part's position; Python's email sees one text part",
            "expect": {
                "text": "Old-style attachment:\n",
                "attachments": [att("old.doc", "application/msword", doc), att("new.pdf", "application/pdf", pdf)],
            },
        },
    )
    add(
        "uuencode-begin-line-in-prose.eml",
        plain("x", body="To start, type:\nbegin 644 is not a file without an end line\nThanks\n"),
    )


# --- boundaries -----------------------------------------------------------------------


def boundaries():
    add(
        "boundary-missing-parameter.eml",
        message("x", [("Content-Type", "multipart/mixed")], crlf("This multipart has no boundary.\nMail clients show it as text.\n")),
        {
            "reason": "multipart without a boundary parameter: mail clients show the body as"
            " text/plain; Python finds no body in it",
            "expect": {"text": "This multipart has no boundary.\nMail clients show it as text.\n", "attachments": []},
        },
    )
    add(
        "boundary-empty-subtype.eml",
        message("x", [("Content-Type", "multipart/")], crlf("Type without a subtype.\n")),
        {
            "reason": "`multipart/` is no valid type: RFC 2045 §5.2 and mail clients read it as"
            " text/plain; Python keeps it as an opaque multipart without body",
            "expect": {"text": "Type without a subtype.\n", "attachments": []},
        },
    )
    add(
        "boundary-never-appears.eml",
        message("x", [("Content-Type", 'multipart/mixed; boundary="zzz"')], crlf("The boundary zzz never appears.\n")),
        {
            "reason": "a multipart whose boundary never appears has no parts (all of it is"
            " preamble), so nothing is shown; Python lists the raw body as an opaque multipart",
            "expect": {"attachments": []},
        },
    )
    add(
        "boundary-no-closing-delimiter.eml",
        message(
            "x",
            [("Content-Type", 'multipart/mixed; boundary="open"')],
            b"--open\r\n" + text_part("First part.\n") + b"\r\n--open\r\n" + attachment(b'filename="tail.bin"', blob("tail", 300)),
        ),
    )
    add(
        "boundary-quoted-with-spaces.eml",
        mixed("x", [], [text_part("Spaces in the boundary.\n"), attachment(b'filename="s.bin"', blob("sp", 200))], boundary="a b=c'(d)"),
    )
    add(
        "boundary-preamble-and-epilogue.eml",
        mixed("x", [], [text_part("The real body.\n")], preamble=b"This is a multi-part message in MIME format.\r\n", epilogue=b"Epilogue text nobody reads.\r\n"),
    )
    add(
        "boundary-trailing-whitespace.eml",
        message(
            "x",
            [("Content-Type", 'multipart/mixed; boundary="ws"')],
            b"--ws  \r\n" + text_part("Whitespace after delimiters.\n") + b"\r\n--ws\t\r\n" + attachment(b'filename="w.bin"', blob("ws", 100)) + b"\r\n--ws--  \r\n",
        ),
    )
    add(
        "boundary-nested-missing.eml",
        mixed(
            "x",
            [],
            [text_part("Outer text.\n"), part([("Content-Type", "multipart/alternative")], crlf("Inner multipart without a boundary.\n"))],
        ),
        {
            "reason": "nested multipart without a boundary: mail clients show its body as text;"
            " Python lists it as an opaque part",
            "expect": {"text": "Outer text.\n\nInner multipart without a boundary.\n", "attachments": []},
        },
    )
    add(
        "boundary-part-with-slash-type.eml",
        mixed("x", [], [text_part("First.\n"), part([("Content-Type", "/")], crlf("Part typed '/'.\n"))]),
        {
            "reason": "`/` is no valid type: RFC 2045 §5.2 and mail clients read it as text/plain;"
            " Python lists a part of type `/`",
            "expect": {"text": "First.\n\nPart typed '/'.\n", "attachments": []},
        },
    )
    add(
        "boundary-prefix-of-inner.eml",
        mixed(
            "x",
            [],
            [
                b'Content-Type: multipart/alternative; boundary="b-inner"\r\n\r\n'
                + multipart("b-inner", [text_part("Plain.\n"), html_part("<p>HTML.</p>\n")]),
                attachment(b'filename="p.bin"', blob("prefix", 150)),
            ],
            boundary="b",
        ),
    )
    add(
        "boundary-long.eml",
        mixed("x", [], [text_part("Long boundary.\n")], boundary="=_" + "x" * 68),
    )


# --- obsolete RFC 822 syntax ----------------------------------------------------------


def obsolete():
    dates = [
        ("date-comment", b"Fri, 1 Mar 2024 11:15:00 +0100 (CET)"),
        ("date-two-digit-year-99", b"Mon, 1 Mar 99 10:15:00 +0000"),
        ("date-two-digit-year-24", b"Fri, 1 Mar 24 10:15:00 +0000"),
        ("zone-est", b"Fri, 1 Mar 2024 05:15:00 EST"),
        ("zone-pdt", b"Fri, 1 Mar 2024 03:15:00 PDT"),
        ("zone-gmt", b"Fri, 1 Mar 2024 10:15:00 GMT"),
        ("zone-ut", b"Fri, 1 Mar 2024 10:15:00 UT"),
        ("zone-military", b"Fri, 1 Mar 2024 10:15:00 Z"),
        ("zone-missing", b"Fri, 1 Mar 2024 10:15:00"),
        ("zone-minus-zero", b"Fri, 1 Mar 2024 10:15:00 -0000"),
        ("date-no-seconds", b"Fri, 1 Mar 2024 10:15 +0000"),
        ("date-no-weekday", b"1 Mar 2024 10:15:00 +0000"),
        ("date-folded", b"Fri, 01 Mar 2024\r\n 11:15:00 +0100"),
        ("date-lowercase-month", b"Fri, 1 mar 2024 10:15:00 +0000"),
    ]
    for what, date in dates:
        add(f"obs-{what}.eml", message(what, [("Date", date)], crlf(SIMPLE_BODY)))
    add(
        "obs-date-two-digit-year-55.eml",
        message("x", [("Date", b"Tue, 1 Mar 55 10:15:00 +0000")], crlf(SIMPLE_BODY)),
        {
            "reason": "two-digit year 55: RFC 5322 §4.3 makes 50-99 19xx; Python pivots at 69",
            "expect": {"date": "1955-03-01T10:15:00Z"},
        },
    )
    add(
        "obs-date-three-digit-year.eml",
        message("x", [("Date", b"Fri, 1 Mar 124 10:15:00 +0000")], crlf(SIMPLE_BODY)),
        {
            "reason": "three-digit year: RFC 5322 §4.3 adds 1900; Python takes year 124",
            "expect": {"date": "2024-03-01T10:15:00Z"},
        },
    )
    add(
        "obs-date-comments-inside.eml",
        message("x", [("Date", b"Fri, 1 (day) Mar 2024 10:15 (time) +0000")], crlf(SIMPLE_BODY)),
        {
            "reason": "comments may stand between the tokens of a date (RFC 5322 §3.3 CFWS);"
            " Python's parsedate does not remove them and gives up",
            "expect": {"date": "2024-03-01T10:15:00Z"},
        },
    )
    add("obs-date-asctime.eml", message("x", [("Date", b"Fri Mar  1 10:15:00 2024")], crlf(SIMPLE_BODY)))
    add("obs-date-full-month-name.eml", message("x", [("Date", b"Friday, 1 March 2024 10:15:00 +0000")], crlf(SIMPLE_BODY)))
    add("obs-date-unparsable.eml", message("x", [("Date", b"sometime last week")], crlf(SIMPLE_BODY)))
    add(
        "obs-route-addresses.eml",
        message(
            "x",
            [("To", b"<@route.a,@route.b:joe@example.com>, Mary Smith <@machine.tld:mary@example.net>")],
            crlf(SIMPLE_BODY),
        ),
    )
    add(
        "obs-comments-in-addresses.eml",
        message("x", [("From", b"(Sender) sender@example.com (The Sender)"), ("Cc", b"a@example.com (Comment (nested))")], crlf(SIMPLE_BODY)),
        {
            "reason": "the RFC 822 form `address (Full Name)`: the comment after the address names"
            " the person, as IMAP servers' ENVELOPE and mail clients show it; Python drops comments",
            "expect": {
                "from": [addr("The Sender", "sender@example.com")],
                "cc": [addr("Comment (nested)", "a@example.com")],
            },
        },
    )
    add("obs-phrase-with-dots.eml", message("x", [("From", b"John Q. Public <jqp@example.com>")], crlf(SIMPLE_BODY)))
    add("obs-quoted-local-part.eml", message("x", [("To", b'"john..doe"@example.com')], crlf(SIMPLE_BODY)))
    add(
        "obs-whitespace-before-colon.eml",
        message("x", [b"Subject : Spaced colon", b"X-Spaced   :  value"], crlf(SIMPLE_BODY)),
        {
            "reason": "RFC 5322 §4.5 (obs-optional) allows whitespace between a field name and its"
            " colon; Python ends the header block at such a field and reads the rest as body",
            "expect": {
                "subject": "Spaced colon",
                "text": SIMPLE_BODY,
                "header_names": ["From", "To", "Date", "Message-ID", "MIME-Version", "Subject", "X-Spaced"],
                "header_values": [["Subject", "Spaced colon"], ["X-Spaced", "value"]],
            },
        },
    )
    add(
        "obs-address-without-domain.eml",
        message("x", [("From", b"root"), ("To", b"Local User <localuser>")], crlf(SIMPLE_BODY)),
    )


# --- mbox artefacts --------------------------------------------------------------------


def mbox():
    add("mbox-from-line.eml", b"From sender@example.com Mon Mar  4 10:00:00 2024\r\n" + message("mbox-from-line", [], crlf(SIMPLE_BODY)))
    add(
        "mbox-from-line-and-escaped-body.eml",
        b"From sender@example.com Mon Mar  4 10:00:00 2024\r\n" + message("x", [], crlf(">From the desk of the sender:\nFrom here on, plain text.\n")),
    )
    add("mbox-from-line-mailer-daemon.eml", b"From MAILER-DAEMON Mon Mar  4 10:00:00 2024\r\n" + message("x", [("From", b"MAILER-DAEMON@example.com")], crlf(SIMPLE_BODY)))


# --- control characters ----------------------------------------------------------------


def control():
    add(
        "control-nul-in-body.eml",
        plain("x", body=b"before\x00after\nsecond line\n"),
        {
            "reason": "IMAP cannot carry NUL (RFC 3501 §4.3): Dovecot sends 0x80 in its place,"
            " which is no UTF-8 (U+FFFD); Python reads the file itself",
            "expect": {"text": "before\ufffdafter\nsecond line\n"},
        },
    )
    add(
        "control-nul-in-header.eml",
        message("x", [("X-Nul", b"a\x00b")], crlf(SIMPLE_BODY)),
        {
            "reason": "IMAP cannot carry NUL (RFC 3501 §4.3): Dovecot sends 0x80 in its place,"
            " which as an undeclared 8-bit header byte reads as windows-1252 (€); Python reads the"
            " file itself",
            "expect": {"header_values": [["Subject", "x"], ["X-Nul", "a€b"]]},
        },
    )
    add("control-bare-cr-in-body.eml", plain("x", body=b"line one\rstill line one\nline two\n"))
    add(
        "control-bare-cr-in-header.eml",
        message("x", [("Subject", b"bare\rcr subject")], crlf(SIMPLE_BODY)),
        {
            "reason": "a bare CR is no line end in a header field (RFC 5322 §2.2): IMAP servers and"
            " the bridge keep it inside the field; Python ends the header block there",
            "expect": {
                "subject": "bare cr subject",
                "text": SIMPLE_BODY,
                "header_values": [["Subject", "bare cr subject"]],
            },
        },
    )
    add(
        "control-lf-line-endings.eml",
        message("x", [("Content-Type", "text/plain; charset=utf-8")], b"").replace(b"\r\n", b"\n") + b"Only LF line endings.\nSecond line.\n",
    )
    add("control-escape-and-tab-in-subject.eml", message("x", [("Subject", b"tab\there and escape \x1b[1m bold")], crlf(SIMPLE_BODY)))


# --- huge headers ---------------------------------------------------------------------


def huge():
    refs = b"\r\n ".join(b"<ref-%06d.%s@mail.example.com>" % (i, b"x" * 10) for i in range(5800))
    assert len(refs) > 200_000
    add("huge-references-200k.eml", message("x", [("References", refs)], crlf(SIMPLE_BODY)))
    received = [("Received", b"from relay%d.example.net by relay%d.example.net; Mon, 4 Mar 2024 09:%02d:00 +0000" % (i, i + 1, i % 60)) for i in range(1000)]
    add("huge-received-1000.eml", message("x", received, crlf(SIMPLE_BODY)))
    subject = b"\r\n ".join(b"segment-%03d of a very long subject" % i for i in range(80))
    add("huge-subject-folded-80-times.eml", message("x", [("Subject", subject)], crlf(SIMPLE_BODY)))
    add("huge-unfolded-header-line.eml", message("x", [("X-Long", b"y" * 20000)], crlf(SIMPLE_BODY)))
    to = b",\r\n ".join(b"Person %d <person%d@example.org>" % (i, i) for i in range(300))
    add("huge-300-recipients.eml", message("x", [("To", to)], crlf(SIMPLE_BODY)))
    add(
        "huge-attachment-600k.eml",
        mixed("x", [], [text_part("A big file.\n"), attachment(b'filename="big.bin"', blob("big", 600_001))]),
    )


# --- addresses and envelope placeholders ----------------------------------------------


def envelope():
    add(
        "envelope-empty-list-element.eml",
        message("x", [("To", b", a@aol.com")], crlf(SIMPLE_BODY)),
    )
    add(
        "envelope-name-without-angle-brackets.eml",
        message("x", [("From", b"Big Bug bb@bug.com")], crlf(SIMPLE_BODY)),
        {
            "reason": "an address written without angle brackets after a name: mail clients take"
            " the last word with @ as the address; Python makes it one quoted local part",
            "expect": {"from": [addr("Big Bug", "bb@bug.com")]},
        },
    )
    add(
        "envelope-at-sign-in-display-name.eml",
        message("x", [("To", b"a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com")], crlf(SIMPLE_BODY)),
        {
            "reason": "`@` in an unquoted display name: mail clients read the name before the"
            " angle brackets; Python drops the angle address",
            "expect": {"to": [addr(None, "a@x.com"), addr("Mikel@Lindsaar", "r@x.com"), addr(None, "t@x.com")]},
        },
    )
    add(
        "envelope-unterminated-quote.eml",
        message("x", [("To", b'"unterminated <ut@example.com>')], crlf(SIMPLE_BODY)),
        {
            "reason": "an unterminated quote: mail clients take it as a stray character and find the"
            " name and the address; Python makes the rest of the field one quoted local part",
            "expect": {"to": [addr("unterminated", "ut@example.com")]},
        },
    )
    add(
        "envelope-unterminated-angle.eml",
        message("x", [("To", b"Joe <joe@example.com")], crlf(SIMPLE_BODY)),
    )
    add(
        "envelope-semicolon-separated.eml",
        message("x", [("To", b"a@example.com; b@example.com")], crlf(SIMPLE_BODY)),
        {
            "reason": "addresses separated by `;` as Outlook users type them: mail clients read"
            " both; Python (like Dovecot's ENVELOPE) stops at the `;`",
            "expect": {"to": [addr(None, "a@example.com"), addr(None, "b@example.com")]},
        },
    )
    add("envelope-trailing-comma.eml", message("x", [("To", b"a@example.com, b@example.com,")], crlf(SIMPLE_BODY)))
    add(
        "envelope-null-address.eml",
        message("x", [("From", b"<>"), ("To", b"robin@example.test")], crlf(SIMPLE_BODY)),
        {"reason": "the null address `<>` (of bounces) names no mailbox; Python reports `<>` as an address", "expect": {"from": []}},
    )
    add(
        "envelope-name-only.eml",
        message("x", [("To", b"undisclosed recipients")], crlf(SIMPLE_BODY)),
        {
            "reason": "words without any address (a group name missing its colon) name no mailbox;"
            " Python makes them a quoted local part",
            "expect": {"to": []},
        },
    )
    add("envelope-group.eml", message("x", [("To", b"Team: a@example.com, Bee <b@example.com>;, c@example.com")], crlf(SIMPLE_BODY)))
    add("envelope-empty-group.eml", message("x", [("To", b"undisclosed-recipients:;")], crlf(SIMPLE_BODY)))
    add("envelope-empty-to.eml", message("x", [b"To:"], crlf(SIMPLE_BODY)))
    add("envelope-no-to.eml", message("x", [], crlf(SIMPLE_BODY)).replace(b"To: Robin <robin@example.test>\r\n", b""))
    add(
        "envelope-broken-from-no-reply-to.eml",
        message("x", [("From", b"Help Desk helpdesk@example.com"), ("Cc", b", cc@example.com")], crlf(SIMPLE_BODY)),
        {
            "reason": "an address written without angle brackets after a name: mail clients take"
            " the last word with @ as the address; Python makes it one quoted local part",
            "expect": {"from": [addr("Help Desk", "helpdesk@example.com")]},
        },
    )
    add(
        "envelope-8bit-name-without-angle.eml",
        message("x", [("From", b"J\xf6rg M\xfcller joerg@example.de")], crlf(SIMPLE_BODY)),
        {
            "reason": "undeclared 8-bit name without angle brackets: the bridge reads it as"
            " windows-1252 and takes the last word with @ as the address; Python makes one"
            " quoted local part of it",
            "expect": {"from": [addr("Jörg Müller", "joerg@example.de")]},
        },
    )
    add(
        "envelope-idn-utf8-address.eml",
        message("x", [("To", "Jörg <jörg@bücher.example>".encode())], crlf(SIMPLE_BODY)),
        {
            "reason": "a raw UTF-8 address (RFC 6532): Python's address parser keeps it as"
            " undecodable bytes",
            "expect": {"to": [addr("Jörg", "jörg@bücher.example")]},
        },
    )


# --- empty and degenerate messages ----------------------------------------------------


def empty():
    add("empty-no-body.eml", message("empty-no-body", []))
    add("empty-headers-only-no-separator.eml", b"From: sender@example.com\r\nTo: robin@example.test\r\nSubject: headers only\r\nDate: Mon, 04 Mar 2024 10:00:00 +0000\r\n")
    add("empty-subject.eml", message("x", [b"Subject:"], crlf(SIMPLE_BODY)))
    add("empty-no-subject-header.eml", message("x", [], crlf(SIMPLE_BODY)).replace(b"Subject: x\r\n", b""))
    add("empty-only-from.eml", b"From: only@example.com\r\n\r\nJust a From header.\r\n")
    add("empty-whitespace-body.eml", message("x", [], b"   \r\n\t\r\n\r\n"))
    add(
        "empty-multipart-without-parts.eml",
        message("x", [("Content-Type", 'multipart/mixed; boundary="none"')], b"--none--\r\n"),
        {
            "reason": "a multipart with nothing but its closing delimiter has no parts; Python lists"
            " the raw body as an opaque multipart",
            "expect": {"attachments": []},
        },
    )
    add(
        "empty-zero-byte-attachment.eml",
        mixed("x", [], [text_part("Empty file attached.\n"), attachment(b'filename="empty.txt"', b"", "text/plain")]),
    )


# --- transfer encodings and sizes -----------------------------------------------------


def transfer():
    add(
        "cte-8bit-utf8-labelled-us-ascii.eml",
        message("x", [("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "8bit")], crlf("Labelled ASCII, really UTF-8: café ✓\n")),
        {
            "reason": "8-bit body labelled us-ascii: Python substitutes U+FFFD; mail clients read"
            " it as UTF-8",
            "expect": {"text": "Labelled ASCII, really UTF-8: café ✓\n"},
        },
    )
    add(
        "cte-8bit-latin1-labelled-us-ascii.eml",
        message("x", [("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")], crlf("Labelled ASCII, really Latin-1: caf\xe9\n".encode("latin-1"))),
        {
            "reason": "8-bit body labelled us-ascii: Python substitutes U+FFFD; mail clients read"
            " bytes that are not UTF-8 as windows-1252",
            "expect": {"text": "Labelled ASCII, really Latin-1: café\n"},
        },
    )
    add(
        "cte-8bit-without-content-type.eml",
        message("x", [], crlf("No Content-Type, Latin-1: gr\xfc\xdfe\n".encode("latin-1"))),
        {
            "reason": "8-bit body without any Content-Type: Python substitutes U+FFFD; mail"
            " clients read bytes that are not UTF-8 as windows-1252",
            "expect": {"text": "No Content-Type, Latin-1: grüße\n"},
        },
    )
    data = blob("ws", 2000)
    encoded = base64.b64encode(data)
    messy = b"".join(encoded[i : i + 60] + (b" \t\r\n" if i % 120 else b"\r\n\r\n") for i in range(0, len(encoded), 60))
    add("cte-base64-whitespace-in-lines.eml", mixed("x", [], [text_part("Messy base64.\n"), encoded_attachment(b'filename="ws.bin"', messy)]))
    for what, size in [("bad-padding", 1000), ("extra-padding", 1001)]:
        data = blob(what, size)
        encoded = base64.b64encode(data).rstrip(b"=") if what == "bad-padding" else base64.b64encode(data) + b"="
        body = b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
        add(f"cte-base64-{what}.eml", mixed("x", [], [text_part(f"Base64 with {what}.\n"), part([("Content-Type", "application/octet-stream"), ("Content-Disposition", f'attachment; filename="{what}.bin"'), ("Content-Transfer-Encoding", "base64")], body)]))
    data = blob("junk", 601)
    add(
        "cte-base64-list-footer-after-padding.eml",
        mixed(
            "x",
            [],
            [text_part("Footer glued on.\n"), part([("Content-Type", "application/octet-stream"), ("Content-Disposition", 'attachment; filename="junk.bin"'), ("Content-Transfer-Encoding", "base64")], b64(data) + b"\r\n-- \r\nmailing list footer\r\n")],
        ),
    )
    data = blob("pem", 5000)
    add("cte-base64-64-char-lines.eml", mixed("x", [], [text_part("PEM-style lines.\n"), encoded_attachment(b'filename="pem.bin"', b64(data, width=64))]))
    for size in [0, 1, 2, 3, 57, 58, 10239, 10240, 10241]:
        add(f"cte-base64-size-{size}.eml", mixed("x", [], [text_part(f"A file of {size} bytes.\n"), attachment(f'filename="size-{size}.bin"'.encode(), blob(f"size{size}", size))]))
    data = blob("lf", 4000)
    add(
        "cte-base64-lf-line-endings.eml",
        mixed("x", [], [text_part("LF base64 lines.\n"), encoded_attachment(b'filename="lf.bin"', b64(data, eol=b"\n"))]),
    )
    add(
        "cte-qp-soft-line-breaks.eml",
        message("x", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")], b"This line is broken =\r\nby a soft break and caf=C3=A9 =\r\ncontinues.\r\nNext line.\r\n"),
    )
    add(
        "cte-qp-bad-escapes.eml",
        message("x", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")], b"Bad =ZZ escape, half =4 escape, lower caf=c3=a9, 100% =\r\nend\r\n"),
    )
    add(
        "cte-qp-trailing-equals.eml",
        message("x", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")], b"Ends with a soft break="),
    )
    add(
        "cte-qp-trailing-whitespace.eml",
        message("x", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")], b"Trailing spaces   \r\nand tabs\t\t\r\nend\r\n"),
    )
    data = ("Quoted-printable attachment: caf\u00e9 = cr\u00e8me\n" * 40).encode()
    add(
        "cte-qp-attachment.eml",
        mixed("x", [], [text_part("QP file attached.\n"), attachment(b'filename="qp.txt"', crlf(data), "text/plain; charset=utf-8", cte="quoted-printable")]),
    )
    data = blob("upper", 900)
    add(
        "cte-uppercase-token.eml",
        mixed("x", [], [text_part("Upper-case token.\n", cte="QUOTED-PRINTABLE"), attachment(b'filename="upper.bin"', data, cte="BASE64")]),
    )
    add(
        "cte-unknown-token.eml",
        mixed("x", [], [text_part("Unknown encoding attached.\n"), attachment(b'filename="x.gz64"', b"H4sIAAAAAAAA\r\n", cte="x-gzip64")]),
    )
    add(
        "cte-binary.eml",
        mixed("x", [], [text_part("Binary attached.\n"), attachment(b'filename="bin.dat"', b"binary bytes \x01\x02\x03 not encoded\r\n", cte="binary")]),
    )
    add(
        "cte-base64-text-body.eml",
        plain("x", body="Base64 text body: Grüße, 你好\n", cte="base64"),
    )
    add(
        "cte-qp-html-body.eml",
        message("x", [("Content-Type", "text/html; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")], qp(crlf("<html><body><p>Caf\u00e9 &amp; cr\u00e8me, <b>bold</b> &lt;tag&gt;</p><p>second</p></body></html>\n".encode()))),
    )


def main():
    for generate in [rfc2047, rfc2231, quoting, eight_bit_headers, charsets, structures, uuencoded, boundaries, obsolete, mbox, control, huge, envelope, empty, transfer]:
        generate()
    for old in HERE.glob("*.eml"):
        old.unlink()
    for name, raw in MESSAGES.items():
        (HERE / name).write_bytes(raw)
    (HERE / "overrides.json").write_text(json.dumps(OVERRIDES, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(MESSAGES)} messages, {len(OVERRIDES)} overrides")


if __name__ == "__main__":
    main()
