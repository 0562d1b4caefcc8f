"""Pacing against a provider that defers above a rate, with a real worker and a real sink.

The sink answers "421 4.7.0 Try again later" to Gmail addresses above GMAIL_LIMIT a second.
The send starts Google's rate at three times that: the deferrals cut it, steady success raises
it, and it settles near the sink's limit; no row fails for it. The other providers' messages
have their own rates and finish long before Gmail's.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from django.conf import settings

from campaigns.models import Delivery, Recipient, Send, Subscription
from campaigns.publishers import publish_launch
from campaigns.services.pacing import Provider
from campaigns.services.pacing.aimd import rates_read
from opsdash.smtp_sink import SmtpSink
from tests.factories import AudienceFactory, CampaignFactory
from tests.processes import CeleryProcess, wait_for
from tests.throttle import ThrottleRule

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

GMAIL_LIMIT = 8.0
GMAIL = 240
OTHERS = 240
PACING_ENV = {
    "OPSDASH_DELIVERY_BATCH_SIZE": "40",
    "OPSDASH_DELIVERY_FLUSH_EVERY": "5",
    "OPSDASH_DELIVERY_RETRY_BASE_SECONDS": "1",
    "OPSDASH_SMTP_RATE_PER_SECOND": "0",
    "OPSDASH_PACING_GOOGLE": f"1:{GMAIL_LIMIT * 3}:{GMAIL_LIMIT * 6}",
    "OPSDASH_PACING_MICROSOFT": "10:200:400",
    "OPSDASH_PACING_DECREASE": "0.7",
    "OPSDASH_PACING_INCREASE": "2",
    "OPSDASH_PACING_CUT_SECONDS": "1",
    # The sink defers Gmail on purpose, far above what the deferral guardrail accepts (it
    # would pause the send, as it should for a real provider): that guardrail has its own tests.
    "OPSDASH_GUARDRAIL_DEFERRAL_PERCENT": "100",
}


def mixed_campaign() -> list[str]:
    """Others first (as a list is often sorted), then the Gmail addresses."""
    tag = uuid.uuid4().hex[:6]
    others = [f"o{tag}{i}@{'outlook.com' if i % 2 else 'example.org'}" for i in range(OTHERS)]
    gmail = [f"g{tag}{i}@gmail.com" for i in range(GMAIL)]
    return others + gmail


def test_a_deferring_provider_is_paced_to_its_limit_and_never_fails_a_row(
    smtp_sink: SmtpSink,
) -> None:
    rule = ThrottleRule(frozenset({"gmail.com"}), GMAIL_LIMIT)
    smtp_sink.rule = rule
    emails = mixed_campaign()
    audience = AudienceFactory.create()
    recipients = Recipient.objects.bulk_create(Recipient(email=e) for e in emails)
    Subscription.objects.bulk_create(
        Subscription(recipient=r, audience=audience) for r in recipients
    )
    campaign = CampaignFactory.create(audiences=[audience])
    arrived: dict[str, float] = {}

    with CeleryProcess.worker(
        smtp_port=smtp_sink.port, concurrency=4, extra_env=PACING_ENV
    ) as worker:
        publish_launch(campaign.pk, "once", Send.Trigger.MANUAL, None)

        def progress() -> bool:
            for message in smtp_sink.messages:
                arrived.setdefault(message["To"].addresses[0].addr_spec, time.monotonic())
            return len(arrived) >= len(emails)

        wait_for(progress, timeout=240, what="every message at the sink", logs=worker.log)
        send = Send.objects.get(campaign=campaign)
        wait_for(
            lambda: Send.objects.get(pk=send.pk).status == Send.Status.COMPLETED,
            timeout=30,
            what="the send to complete",
        )
    time.sleep(0.5)

    received = Counter(m["To"].addresses[0].addr_spec for m in smtp_sink.messages)
    statuses = Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))
    send.refresh_from_db()
    learned = rates_read(send.channel, [Provider.GOOGLE])[Provider.GOOGLE]
    # Timed from the first message at the sink (the worker's start-up is not the send's).
    started = min(arrived.values())
    others_done = max(arrived[e] for e in emails if not e.endswith("@gmail.com")) - started
    gmail_done = max(arrived[e] for e in emails if e.endswith("@gmail.com")) - started
    print(  # the figures, for the run's log
        f"deferred={rule.deferred} learned={learned:.1f}/s sink_limit={GMAIL_LIMIT}/s "
        f"accepted_rate={rule.accepted_rate(last_seconds=10):.1f}/s "
        f"others_done={others_done:.1f}s gmail_done={gmail_done:.1f}s"
    )
    assert set(received.values()) == {1} and len(received) == len(emails)
    assert statuses == {Delivery.Status.SENT: len(emails)}
    assert send.failed_count == 0
    assert rule.deferred > 0  # the provider did push back
    assert 0.4 * GMAIL_LIMIT <= learned <= 1.6 * GMAIL_LIMIT
    # Gmail's 240 need about 30 s at its limit; the others are not held to that pace.
    assert others_done < gmail_done / 2
    assert settings.REDIS_URL
