"""The delivery loop's MIME path parses to the same message as rendering.message_build."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from campaigns.services.mime import wire_frame, wire_message
from campaigns.services.rendering import campaign_compile, message_build, message_render

HEADERS = (
    "Subject",
    "From",
    "To",
    "Reply-To",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "X-Opsdash-Campaign",
)


def both(
    *, subject: str, from_email: str, text: str, html: str, first: str, email: str
) -> tuple[EmailMessage, EmailMessage]:
    compiled = campaign_compile(
        campaign_id=7,
        name="News",
        subject=subject,
        from_email=from_email,
        reply_to="replies@example.com",
        text_body=text,
        html_body=html,
    )
    url = "https://ops.example.com/u/abc:def/"
    recipient = {"email": email, "first_name": first, "last_name": "Tester", "attributes": {}}
    rendered = message_render(compiled, recipient=recipient, unsubscribe_url=url)
    fields = {
        "to_email": email,
        "to_name": f"{first} Tester",
        "message_id": "<send-1.rcpt-2@opsdash.localhost>",
        "unsubscribe_url": url,
    }
    fast = wire_message(wire_frame(compiled), rendered, **fields)
    slow = message_build(compiled, rendered, **fields).as_bytes(policy=policy.SMTP)
    parsed = [message_from_bytes(raw, policy=policy.default) for raw in (fast, slow)]
    assert all(isinstance(message, EmailMessage) for message in parsed)
    return parsed[0], parsed[1]


def lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


@pytest.mark.parametrize(
    ("subject", "from_email", "first", "text", "html"),
    [
        ("Hello {{ recipient.first_name }}", "Team <team@example.com>", "Ada", "Hi", ""),
        ("Grüße, {{ recipient.first_name }}", "Équipe <team@example.com>", "Jörg", "", "<b>x</b>"),
        (
            "A very long subject line " * 8,
            "team@example.com",
            'O\'Brien, "Al"',
            "=== long line " * 30 + "\n.leading dot\n\ttab\r\nCRLF",
            "<p>é = 1</p>\n" * 40,
        ),
    ],
)
def test_the_fast_path_parses_to_the_same_headers_and_bodies(
    subject: str, from_email: str, first: str, text: str, html: str
) -> None:
    fast, slow = both(
        subject=subject, from_email=from_email, text=text, html=html, first=first, email="a@b.org"
    )

    for header in HEADERS:
        assert fast[header] == slow[header], header
    for kind in ("plain", "html"):
        fast_part, slow_part = (m.get_body(preferencelist=(kind,)) for m in (fast, slow))
        assert (fast_part is None) == (slow_part is None)
        if fast_part is not None and slow_part is not None:
            # Both are CRLF on the wire; decoders differ only in how they hand line ends back.
            assert lines(fast_part.get_content()) == lines(slow_part.get_content())


def test_a_line_break_in_a_recipient_name_cannot_add_a_header() -> None:
    fast, slow = both(
        subject="Hi {{ recipient.first_name }}",
        from_email="team@example.com",
        text="x",
        html="",
        first="Eve\r\nBcc: victim@example.com",
        email="eve@example.org",
    )

    assert fast["Bcc"] is None and slow["Bcc"] is None
    assert fast["To"] == slow["To"] and fast["Subject"] == slow["Subject"]
