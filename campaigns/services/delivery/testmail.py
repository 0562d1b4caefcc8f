"""Test messages: a campaign rendered for a sample recipient and sent to a staff address."""

from __future__ import annotations

import uuid
from email import policy
from typing import Any

from django.conf import settings

from campaigns.models import Campaign, Recipient
from campaigns.services.audiences import unsubscribe_url
from campaigns.services.delivery.compiled import compiled_for
from campaigns.services.rendering import (
    RenderedMessage,
    message_build,
    message_render,
    recipient_fields,
    sample_recipient_fields,
)
from campaigns.services.smtp import Outcome, SmtpSession


class TestMessageFailed(RuntimeError):
    __test__ = False  # not a pytest test class


def test_message_send(*, campaign_id: int, to_email: str, recipient_id: int | None = None) -> str:
    """Renders the saved campaign for a sample recipient, or as the recipient ``recipient_id``
    reads it when one is chosen, and sends it to ``to_email``.

    Returns the SMTP server's reply; raises TestMessageFailed when it refuses the message.
    """
    compiled = compiled_for(Campaign.objects.get(pk=campaign_id))
    url = unsubscribe_url(recipient_id=0, send_id=0)
    rendered = message_render(
        compiled, recipient=_personalisation(to_email, recipient_id), unsubscribe_url=url
    )
    message = message_build(
        compiled,
        RenderedMessage(f"[TEST] {rendered.subject}", rendered.text, rendered.html),
        to_email=to_email,
        to_name="",
        message_id=f"<test-{uuid.uuid4().hex}@{settings.OPSDASH_MESSAGE_ID_DOMAIN}>",
        unsubscribe_url=url,
    )
    envelope_from = message["From"].addresses[0].addr_spec
    with SmtpSession() as smtp:
        outcome = smtp.send(
            from_addr=envelope_from, to_addr=to_email, data=message.as_bytes(policy=policy.SMTP)
        )
    if outcome.outcome is not Outcome.SENT:
        raise TestMessageFailed(f"The SMTP server answered {outcome.summary}")
    return outcome.summary


def _personalisation(to_email: str, recipient_id: int | None) -> dict[str, Any]:
    """The chosen recipient's fields (their address stays theirs: only the test goes to
    ``to_email``); the sample when none was chosen or they have been deleted since."""
    recipient = Recipient.objects.filter(pk=recipient_id).first() if recipient_id else None
    if recipient is None:
        return sample_recipient_fields(email=to_email)
    return recipient_fields(recipient)
