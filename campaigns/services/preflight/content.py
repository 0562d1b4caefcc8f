"""The message checks: the unsubscribe headers as the send writes them, the size Gmail clips
at, a text part, and links a mail client can follow.

The campaign is rendered for the sample recipient and composed by its own channel, exactly as
a send composes each message (``Channel.compose``), so the headers checked are the headers sent.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage

from campaigns.models import Campaign
from campaigns.selectors.campaigns import preview_recipient
from campaigns.services.audiences import message_links
from campaigns.services.authoring.checks import (
    html_size,
    links_problem,
    links_report,
    size_problem,
)
from campaigns.services.channels import Outgoing, channel_for
from campaigns.services.mime import wire_frame
from campaigns.services.preflight.report import Finding, Group, Severity
from campaigns.services.rendering import (
    CompiledCampaign,
    RenderedMessage,
    TemplateProblem,
    campaign_compile_for,
    message_render,
)

BLOCK, WARN, OK = Severity.BLOCK, Severity.WARN, Severity.OK
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Sample:
    """The campaign as its channel would send it to the sample recipient."""

    rendered: RenderedMessage
    headers: dict[str, str]  # lower-case names; empty when the channel could not compose it
    compose_problem: str


def content_findings(campaign: Campaign) -> list[Finding]:
    try:
        sample = sample_compose(campaign)
    except TemplateProblem as exc:
        return [
            _finding(
                "content_unrenderable", BLOCK, "Content", f"The campaign does not render: {exc}"
            )
        ]
    return [
        *unsubscribe_check(sample),
        size_check(sample.rendered.html),
        text_part_check(sample.rendered, generated=not campaign.text_body.strip()),
        links_check(sample.rendered.html),
    ]


def _finding(code: str, severity: Severity, title: str, message: str) -> Finding:
    return Finding(code, severity, title, message, group=Group.MESSAGE)


def sample_render(campaign: Campaign) -> RenderedMessage:
    """The campaign rendered for the sample recipient, its links as a test message has them."""
    return _sample(campaign)[1]


def _sample(campaign: Campaign) -> tuple[CompiledCampaign, RenderedMessage, str, str]:
    compiled = campaign_compile_for(campaign)
    recipient = preview_recipient(email="") or {}
    links = message_links(recipient_id=0, send_id=0)
    rendered = message_render(
        compiled,
        recipient=recipient,
        unsubscribe_url=links.unsubscribe_url,
        web_version_url=links.web_version_url,
    )
    return compiled, rendered, links.unsubscribe_url, str(recipient.get("email", ""))


def sample_compose(campaign: Campaign) -> Sample:
    """Renders for the sample recipient and composes through the campaign's channel."""
    compiled, rendered, url, to_email = _sample(campaign)
    outgoing = Outgoing(
        delivery_id=0,
        frame=wire_frame(compiled),
        rendered=rendered,
        to_email=to_email or "sample@example.com",
        to_name="Sample Recipient",
        message_id=f"<preflight@{settings.OPSDASH_MESSAGE_ID_DOMAIN}>",
        unsubscribe_url=url,
    )
    try:
        # No connection is opened: compose only builds the message in the channel's form.
        payload = channel_for(campaign.channel).compose(outgoing).payload
    except Exception as exc:  # a channel that cannot be built fails the send too; say why
        return Sample(rendered, {}, f"{type(exc).__name__}: {exc}")
    return Sample(rendered, composed_headers(payload), "")


def composed_headers(payload: object) -> dict[str, str]:
    """The headers of a composed message, whichever channel composed it: SMTP bytes, an
    anymail message, or Postmark's (token, JSON fields)."""
    if isinstance(payload, bytes):
        parsed = email.message_from_bytes(payload, policy=email.policy.default)
        return {name.lower(): str(value) for name, value in parsed.items()}
    if isinstance(payload, EmailMessage):
        return {str(k).lower(): str(v) for k, v in payload.extra_headers.items()}
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        fields: dict[str, Any] = payload[1]
        return {str(h["Name"]).lower(): str(h["Value"]) for h in fields.get("Headers", [])}
    return {}


def unsubscribe_check(sample: Sample) -> list[Finding]:
    title = "One-click unsubscribe"
    if sample.compose_problem:
        return [
            _finding(
                "unsubscribe_unchecked",
                WARN,
                title,
                f"The campaign's channel could not compose a message: {sample.compose_problem}",
            )
        ]
    link = sample.headers.get("list-unsubscribe", "").strip()
    post = sample.headers.get("list-unsubscribe-post", "").strip()
    if not link:
        return [
            _finding(
                "list_unsubscribe_missing",
                BLOCK,
                title,
                "Messages carry no List-Unsubscribe header.",
            )
        ]
    if post != ONE_CLICK:
        return [
            _finding(
                "list_unsubscribe_post_missing",
                BLOCK,
                title,
                f"Messages carry no “List-Unsubscribe-Post: {ONE_CLICK}” header (RFC 8058), "
                "which Gmail and Yahoo require of bulk mail.",
            )
        ]
    found = [
        _finding(
            "list_unsubscribe_ok",
            OK,
            title,
            f"List-Unsubscribe {link} with one-click unsubscribe (List-Unsubscribe-Post).",
        )
    ]
    if not link.strip("<>").lower().startswith("https://"):
        found.append(
            _finding(
                "list_unsubscribe_not_https",
                WARN,
                "Unsubscribe address",
                f"The unsubscribe link {link} is not HTTPS: one-click unsubscribe (RFC 8058) "
                "needs an https:// address that recipients' providers can reach. Set "
                "OPSDASH_PUBLIC_URL to the site's public https address.",
            )
        )
    return found


def size_check(html: str) -> Finding:
    title = "Message size"
    if problem := size_problem(html):
        return _finding("html_clipped", WARN, title, problem)
    shown = f"{html_size(html) / 1024:.1f} KB"
    return _finding("html_size_ok", OK, title, f"The HTML body is {shown}, under Gmail's 102 KB.")


def text_part_check(rendered: RenderedMessage, *, generated: bool = False) -> Finding:
    title = "Text part"
    if not rendered.text.strip():
        return _finding(
            "text_missing",
            WARN,
            title,
            "The message has no text part: some filters count that against it. Write a body "
            "or a text body.",
        )
    if generated:
        return _finding(
            "text_generated",
            OK,
            title,
            "The text part is written from the HTML body; fill in the text body to word it "
            "yourself.",
        )
    return _finding("text_ok", OK, title, "The message has a text part.")


def links_check(html: str) -> Finding:
    title = "Links"
    if not html.strip():
        return _finding("links_ok", OK, title, "No HTML body, so no links to check.")
    report = links_report(html)
    if problem := links_problem(report):
        return _finding("links_not_absolute", WARN, title, problem)
    return _finding("links_ok", OK, title, f"All {len(report.links)} links are absolute.")
