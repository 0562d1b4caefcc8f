"""A send on a channel of its own (so no test shares another's Redis state), and a clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from campaigns.models import Send
from campaigns.services.channels.smtp import SmtpChannel
from campaigns.services.pacing import Pacer
from tests.factories import CampaignFactory


def pacer_for(*, from_email: str = "Team <team@example.com>", clock: Clock | None = None) -> Pacer:
    campaign = CampaignFactory.create(from_email=from_email)
    channel = f"test-{uuid.uuid4().hex[:8]}"
    send = Send.objects.create(campaign=campaign, occurrence_key="once", channel=channel)
    send = Send.objects.select_related("campaign").get(pk=send.pk)
    if clock is None:
        return Pacer(send=send, channel=SmtpChannel(channel))
    return Pacer(send=send, channel=SmtpChannel(channel), clock=clock)


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now
