"""Schemathesis hooks for tests/contract.rs: bodies for the media types it cannot generate.

`POST /v1/mailboxes/{mailbox}/messages` takes `message/rfc822`; Schemathesis has no generator
for it, so this one builds small RFC 5322 messages with generated subjects and bodies.
"""

import schemathesis
from hypothesis import strategies as st

_printable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
)


def _message(subject: str, body: str, seen: int) -> bytes:
    return (
        "From: Contract Test <contract@example.com>\r\n"
        "To: alice@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <contract-{seen}@example.com>\r\n"
        "Date: Mon, 4 Mar 2024 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


schemathesis.openapi.media_type(
    "message/rfc822",
    st.builds(_message, _printable, _printable, st.integers(0, 10**9)),
)


@schemathesis.deserializer("message/rfc822")
def _raw_message(ctx, response):
    """A raw message validates as the `Binary` string schema: its bytes as text."""
    return response.content.decode("utf-8", "replace")
