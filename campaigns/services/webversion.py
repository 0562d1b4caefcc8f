"""A message in a browser: the recipient's own (through their message's link) and the public
archive's (personal fields blanked).

Both render a send's frozen content, the same compiled form the delivery loop renders, so the
page shows what the email said even after the campaign or its layout was edited. The link is
the unsubscribe link's signed token under another path: no second signature per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse

from campaigns.models import Campaign, Recipient, Send
from campaigns.services.audiences import InvalidToken, message_links, unsubscribe_link_read
from campaigns.services.delivery.compiled import compiled_for_send
from campaigns.services.rendering import (
    RenderedMessage,
    message_render,
    public_url,
    recipient_fields,
)

# The archive's stand-in reader: every personal field empty, so nobody's data is shown.
ANONYMOUS = {"email": "", "first_name": "", "last_name": "", "attributes": {}}


class WebVersionMissing(LookupError):
    """The link is genuine but there is nothing to show; the message says why."""


@dataclass(frozen=True)
class ArchiveEntry:
    campaign_id: int
    subject: str
    sent_at: datetime | None


def web_version_render(*, token: str) -> RenderedMessage:
    """The message as its recipient got it. Raises InvalidToken for a damaged or forged
    token, WebVersionMissing for a test message's link or a send or recipient gone since."""
    link = unsubscribe_link_read(token, purpose="web version")
    if link.send_id == 0:
        raise WebVersionMissing("This link came with a test message, which has no web version.")
    send = Send.objects.select_related("campaign").filter(pk=link.send_id).first()
    recipient = Recipient.objects.filter(pk=link.recipient_id).first()
    if send is None or recipient is None:
        raise WebVersionMissing("This message is no longer available.")
    compiled, _frame = compiled_for_send(send)
    links = message_links(recipient_id=recipient.pk, send_id=send.pk)
    return message_render(
        compiled,
        recipient=recipient_fields(recipient),
        unsubscribe_url=links.unsubscribe_url,
        web_version_url=links.web_version_url,
    )


def _archived_sends() -> dict[int, Send]:
    """Each archived campaign's latest send that froze content, by campaign id."""
    sends = (
        Send.objects.filter(campaign__web_archive=True)
        .exclude(content={})
        .select_related("campaign")
        .order_by("campaign_id", "-id")
    )
    latest: dict[int, Send] = {}
    for send in sends.only("id", "campaign_id", "content", "started_at", "campaign__id"):
        latest.setdefault(send.campaign_id, send)
    return latest


def archive_entries() -> list[ArchiveEntry]:
    """The published campaigns, newest first, with their subjects as an anonymous reader
    would read them."""
    latest = sorted(_archived_sends().values(), key=lambda send: send.pk, reverse=True)
    return [
        ArchiveEntry(
            campaign_id=send.campaign_id,
            subject=archive_render(send=send).subject,
            sent_at=send.started_at,
        )
        for send in latest
    ]


def archive_send(*, campaign_id: int) -> Send:
    """The send the archive shows for a campaign; WebVersionMissing when it is not published
    (or never went out)."""
    published = Campaign.objects.filter(pk=campaign_id, web_archive=True).exists()
    send = Send.objects.filter(campaign_id=campaign_id).exclude(content={}).order_by("-id").first()
    if not published or send is None:
        raise WebVersionMissing("This campaign is not in the archive.")
    return send


def archive_render(*, send: Send) -> RenderedMessage:
    """The send's content with every personal field blank and no working unsubscribe link."""
    compiled, _frame = compiled_for_send(send)
    page = public_url(reverse("archive-message", args=[send.campaign_id]))
    return message_render(compiled, recipient=ANONYMOUS, unsubscribe_url=page, web_version_url=page)


__all__ = [
    "ArchiveEntry",
    "InvalidToken",
    "WebVersionMissing",
    "archive_entries",
    "archive_render",
    "archive_send",
    "web_version_render",
]
