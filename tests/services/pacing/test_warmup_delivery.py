"""A send meets its warm-up quota: the rest waits queued for the next day, the watchdog leaves
it alone until then (no stall), and dispatches it again once the day has come."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import Campaign, Delivery, Send, Service, Warmup, WarmupPlan
from campaigns.selectors.health import send_wait
from campaigns.services import delivery
from campaigns.services.delivery import NextStep, batch_deliver, send_launch, send_quota_wait
from opsdash.smtp_sink import SmtpSink
from tests.factories import AudienceFactory, CampaignFactory, RecipientFactory, SubscriptionFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

Published = list[tuple[int, int, int, str]]


def campaign_to(emails: list[str]) -> Campaign:
    audience = AudienceFactory.create()
    for email in emails:
        SubscriptionFactory.create(
            recipient=RecipientFactory.create(email=email), audience=audience
        )
    return CampaignFactory.create(audiences=[audience], from_email="News <news@warm.example.net>")


def run(published: Published) -> list[delivery.BatchResult]:
    results = [
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)
        for s, first, last, task_id in published
    ]
    published.clear()
    return results


def test_the_quota_holds_the_rest_until_the_next_day_then_every_recipient_gets_one(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 0
    settings.OPSDASH_STALL_MINUTES = 1
    plan = WarmupPlan.objects.create(name="Tiny", daily_limits=[3, 100])
    warmup = Warmup.objects.create(
        target="warm.example.net", plan=plan, started_on=timezone.localdate()
    )
    emails = [f"p{i}@gmail.com" for i in range(5)] + ["q@yahoo.com"]
    published: Published = []
    send = send_launch(
        campaign_id=campaign_to(emails).pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None

    [result] = run(published)
    assert result.next_step is NextStep.QUOTA_WAIT and result.retry_in > 0
    send_quota_wait(send_id=send.pk, seconds=result.retry_in)  # what the task does with it
    # Google's quota held its last 2 for tomorrow; Yahoo, with room, went on.
    at_sink = Counter(m["To"].addresses[0].domain for m in smtp_sink.messages)
    assert at_sink == {"gmail.com": 3, "yahoo.com": 1}
    assert Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).count() == 2
    assert not Delivery.objects.filter(send=send, status=Delivery.Status.FAILED).exists()

    send.refresh_from_db()
    wait = send_wait(send)
    assert wait is not None and wait.service == Service.WARMUP
    assert wait.describe().startswith("Waiting for the warm-up quota since")
    Send.objects.filter(pk=send.pk).update(last_progress_at=timezone.now() - timedelta(hours=1))
    assert delivery.sends_flag_stalled(publish=lambda *b: published.append(b)) == 0
    assert delivery.sends_redispatch_orphans(publish=lambda *b: published.append(b)) == 0
    assert published == []

    # The next day: the plan moves to day 2 by itself, and the retry is due.
    Warmup.objects.filter(pk=warmup.pk).update(started_on=warmup.started_on - timedelta(days=1))
    Send.objects.filter(pk=send.pk).update(retry_due_at=timezone.now() - timedelta(seconds=1))
    assert delivery.sends_redispatch_orphans(publish=lambda *b: published.append(b)) == 1
    run(published)

    send.refresh_from_db()
    received = Counter(m["To"].addresses[0].addr_spec for m in smtp_sink.messages)
    assert set(received) == set(emails) and set(received.values()) == {1}
    assert send.status == Send.Status.COMPLETED and send.sent_count == 6
    assert send.waiting_for == ""
