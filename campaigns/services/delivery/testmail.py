"""Test messages: a campaign rendered for a sample recipient and sent to a staff address."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Campaign, Recipient
from campaigns.services.audiences import message_links
from campaigns.services.channels import Outcome, Outgoing, channel_for
from campaigns.services.delivery.compiled import compiled_for
from campaigns.services.mime import wire_frame
from campaigns.services.rendering import (
    RenderedMessage,
    message_render,
    recipient_fields,
    sample_recipient_fields,
)


class TestMessageFailed(RuntimeError):
    __test__ = False  # not a pytest test class


def test_message_send(*, campaign_id: int, to_email: str, recipient_id: int | None = None) -> str:
    """Renders the saved campaign for a sample recipient, or as the recipient ``recipient_id``
    reads it when one is chosen, and sends it to ``to_email`` through the campaign's channel,
    so a test shows what recipients will get from the same relay or ESP.

    Returns the server's reply; raises TestMessageFailed when it refuses the message.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    compiled = compiled_for(campaign)
    links = message_links(recipient_id=0, send_id=0)
    url = links.unsubscribe_url
    rendered = message_render(
        compiled,
        recipient=_personalisation(to_email, recipient_id),
        unsubscribe_url=url,
        web_version_url=links.web_version_url,
    )
    outgoing = Outgoing(
        delivery_id=0,  # no delivery row: a bounce of a test message names none
        frame=wire_frame(compiled),
        rendered=RenderedMessage(f"[TEST] {rendered.subject}", rendered.text, rendered.html),
        to_email=to_email,
        to_name="",
        message_id=f"<test-{uuid.uuid4().hex}@{settings.OPSDASH_MESSAGE_ID_DOMAIN}>",
        unsubscribe_url=url,
    )
    try:
        with channel_for(campaign.channel) as channel:
            [result] = channel.send([channel.compose(outgoing)])
    except ImproperlyConfigured as exc:
        raise TestMessageFailed(f"The campaign's sending channel cannot be used: {exc}") from exc
    if result.outcome is not Outcome.SENT:
        server = "The SMTP server" if channel.bucket_prefix is None else f"The {channel.name} ESP"
        raise TestMessageFailed(f"{server} answered {result.summary}")
    if result.esp_message_id:  # what the ESP's own activity log finds the message by
        return f"{result.summary} (message id {result.esp_message_id})"
    return result.summary


def _personalisation(to_email: str, recipient_id: int | None) -> dict[str, Any]:
    """The chosen recipient's fields (their address stays theirs: only the test goes to
    ``to_email``); the sample when none was chosen or they have been deleted since."""
    recipient = Recipient.objects.filter(pk=recipient_id).first() if recipient_id else None
    if recipient is None:
        return sample_recipient_fields(email=to_email)
    return recipient_fields(recipient)
