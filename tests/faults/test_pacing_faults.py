"""Faults in pacing, with real parts: a Celery worker process, RabbitMQ, PostgreSQL, Redis and
the SMTP sink playing a mailbox provider.

- A provider that defers everything for a while empties its bucket (its rate falls to the
  floor) and never fails a row: each deferred row goes back to the queue without counting an
  attempt and goes out once the provider accepts again.
- A warm-up quota reached mid-send leaves the rest queued, the watchdog neither flags the send
  as stalled nor dispatches it before the next day, and the send resumes then (the test moves
  the plan back a day and makes the retry due): every recipient exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Delivery,
    Recipient,
    Send,
    Service,
    Subscription,
    Warmup,
    WarmupPlan,
)
from campaigns.publishers import publish_batch
from campaigns.services.delivery import sends_flag_stalled, sends_redispatch_orphans
from campaigns.services.pacing import Provider
from campaigns.services.pacing.aimd import rates_read
from opsdash.smtp_sink import SmtpSink
from tests.factories import AudienceFactory, CampaignFactory
from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import received, start_send, statuses, wait_done, wait_for
from tests.processes import CeleryProcess
from tests.throttle import THROTTLE_REPLY

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.django_db(transaction=True)]

PACING_ENV = {
    **FAULT_ENV,
    "OPSDASH_PACING_GOOGLE": "1:20:40",
    "OPSDASH_PACING_DECREASE": "0.5",
    "OPSDASH_PACING_CUT_SECONDS": "0.5",
}


def campaign_to(emails: list[str], **fields: object) -> Campaign:
    audience = AudienceFactory.create()
    recipients = Recipient.objects.bulk_create(Recipient(email=e) for e in emails)
    Subscription.objects.bulk_create(
        Subscription(recipient=r, audience=audience) for r in recipients
    )
    return CampaignFactory.create(audiences=[audience], **fields)


def addresses(count: int, domain: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{tag}-{i}@{domain}" for i in range(count)]


def worker(sink: SmtpSink, workers: list[CeleryProcess], **env: str) -> None:
    workers.append(
        CeleryProcess.worker(smtp_port=sink.port, concurrency=2, extra_env={**PACING_ENV, **env})
    )
    workers[-1].start()


class Outage:
    """The provider defers every message of its domain until ``open()``."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.closed = True
        self.deferred = 0

    def __call__(self, address: str) -> str | None:
        if self.closed and address.endswith("@" + self.domain):
            self.deferred += 1
            return THROTTLE_REPLY
        return None


def test_a_bucket_emptied_by_deferrals_never_fails_a_row(
    smtp_sink: SmtpSink, worker_factory: list[CeleryProcess], report: list[str]
) -> None:
    outage = Outage("gmail.com")
    smtp_sink.rule = outage
    emails = addresses(40, "gmail.com") + addresses(60, "example.net")
    worker(smtp_sink, worker_factory)
    send = start_send(campaign_to(emails))

    wait_for(lambda: outage.deferred >= 30, timeout=60, what="30 deferrals from the provider")
    time.sleep(3)  # a few more rounds of deferrals and retries
    send.refresh_from_db()
    floor_rate = rates_read(send.channel, [Provider.GOOGLE])[Provider.GOOGLE]
    during = statuses(send)
    outage.closed = False
    send = wait_done(send, worker_factory, timeout=180)

    counts = received(smtp_sink)
    report.append(
        f"deferred {outage.deferred}, Google's rate fell to {floor_rate:.1f}/s, "
        f"rows during the outage {dict(during)}, at the sink {len(counts)}"
    )
    assert during[Delivery.Status.FAILED] == 0
    assert floor_rate <= 2.0  # the deferrals drove it to (near) the floor
    assert send.status == Send.Status.COMPLETED and send.failed_count == 0
    assert set(counts) == set(emails) and set(counts.values()) == {1}
    assert not Delivery.objects.filter(send=send, attempts__gt=1).exists()


def test_a_warm_up_quota_reached_mid_send_resumes_the_next_day(
    smtp_sink: SmtpSink, worker_factory: list[CeleryProcess], report: list[str]
) -> None:
    plan = WarmupPlan.objects.create(name=f"fault {uuid.uuid4().hex[:6]}", daily_limits=[20, 500])
    warmup = Warmup.objects.create(
        target="fresh.example.com", plan=plan, started_on=timezone.localdate()
    )
    emails = addresses(50, "gmail.com")
    worker(smtp_sink, worker_factory)
    send = start_send(campaign_to(emails, from_email="News <news@fresh.example.com>"))

    def waiting() -> bool:
        send.refresh_from_db()
        return send.waiting_for == Service.WARMUP

    wait_for(waiting, timeout=60, what="the send to wait for the warm-up quota")
    time.sleep(2)  # any batch still running meets the same quota
    day_one = statuses(send)
    assert len(received(smtp_sink)) == 20
    assert day_one[Delivery.Status.QUEUED] == 30 and day_one[Delivery.Status.FAILED] == 0
    assert send.status == Send.Status.RUNNING and send.retry_due_at is not None
    assert send.retry_due_at > timezone.now() + timedelta(minutes=1)

    # Quiet for longer than a stall, but waiting for the quota: neither flagged nor dispatched.
    Send.objects.filter(pk=send.pk).update(last_progress_at=timezone.now() - timedelta(hours=2))
    assert sends_flag_stalled(publish=publish_batch) == 0
    assert sends_redispatch_orphans(publish=publish_batch) == 0
    send.refresh_from_db()
    assert send.stalled_reason == ""

    # The next day: the plan is on day 2 and the retry is due; the watchdog dispatches the rest.
    Warmup.objects.filter(pk=warmup.pk).update(started_on=warmup.started_on - timedelta(days=1))
    Send.objects.filter(pk=send.pk).update(retry_due_at=timezone.now() - timedelta(seconds=1))
    assert sends_redispatch_orphans(publish=publish_batch) == 1
    send = wait_done(send, worker_factory, timeout=90)

    counts = received(smtp_sink)
    report.append(f"day one {dict(day_one)}; after the next day: {len(counts)} at the sink")
    assert send.status == Send.Status.COMPLETED and send.sent_count == 50
    assert set(counts) == set(emails) and set(counts.values()) == {1}
    assert send.waiting_for == ""
    assert Counter(statuses(send)) == {Delivery.Status.SENT: 50}
