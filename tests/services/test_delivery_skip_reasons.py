"""Every skipped delivery says why, and a finished or cancelled send's counters match its rows."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import Delivery, Recipient, Send
from campaigns.services import delivery
from campaigns.services.audiences import SUPPRESSED_STATUSES, recipient_unsubscribe
from campaigns.services.delivery import batch as batch_module
from campaigns.services.delivery import batch_deliver, send_launch
from campaigns.services.delivery.outcomes import outcomes_write
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, audience_with
from tests.processes import on_own_thread

pytestmark = pytest.mark.django_db(transaction=True)

Batch = tuple[int, int, int, str]
Reason = Delivery.SkipReason


def launched(recipients: int, **campaign: object) -> tuple[Send, list[Batch]]:
    published: list[Batch] = []
    send = send_launch(
        campaign_id=CampaignFactory.create(audiences=[audience_with(recipients)], **campaign).pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    return send, published


def run(published: list[Batch]) -> list[delivery.BatchResult]:
    return [
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)
        for s, first, last, task_id in published
    ]


def reasons(send: Send) -> Counter[tuple[str, str]]:
    rows = Delivery.objects.filter(send=send).values_list("status", "skip_reason")
    return Counter(rows)


def counters_match_rows(send: Send) -> None:
    send.refresh_from_db()
    rows = Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))
    counters = (send.sent_count, send.failed_count, send.skipped_count)
    assert counters == (rows["sent"], rows["failed"], rows["skipped"])
    assert sum(counters) == send.total


def test_cancel_skips_the_queued_rows_as_cancelled_and_the_counters_add_up() -> None:
    send, _ = launched(4)
    Delivery.objects.filter(pk=Delivery.objects.filter(send=send).order_by("id")[0].pk).update(
        status=Delivery.Status.SENT
    )
    Send.objects.filter(pk=send.pk).update(sent_count=1)

    delivery.send_cancel(send_id=send.pk, by=None)

    assert reasons(send) == {("sent", ""): 1, ("skipped", "cancelled"): 3}
    counters_match_rows(send)


def test_cancel_mid_batch_skips_the_claimed_rows_as_cancelled(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    send, published = launched(5)
    seen: list[str] = []

    def cancel_at_second(address: str) -> None:
        seen.append(address)
        if len(seen) == 2:
            on_own_thread(lambda: delivery.send_cancel(send_id=send.pk, by=None))

    smtp_sink.rule = cancel_at_second
    run(published)

    assert reasons(send) == {("sent", ""): 2, ("skipped", "cancelled"): 3}
    counters_match_rows(send)


def test_a_batch_of_a_cancelled_send_skips_its_range_as_cancelled() -> None:
    send, published = launched(3)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.CANCELLED)

    run(published)

    assert reasons(send) == {("skipped", "cancelled"): 3}


def test_the_reaper_skips_a_cancelled_sends_dead_rows_as_cancelled() -> None:
    send, _ = launched(2)
    Delivery.objects.filter(send=send).update(
        status=Delivery.Status.SENDING,
        task_id="dead-task",
        claimed_at=timezone.now() - timedelta(hours=1),
    )
    Send.objects.filter(pk=send.pk).update(status=Send.Status.CANCELLED)

    delivery.deliveries_reap(publish=lambda *batch: None)

    assert reasons(send) == {("skipped", "cancelled"): 2}


def test_a_recipient_deleted_during_the_send_is_skipped_as_deleted(smtp_sink: SmtpSink) -> None:
    send, published = launched(3)
    gone = Delivery.objects.filter(send=send).order_by("id")[0].recipient_id
    # Raw SQL, as a careless script would: the delivery row stays behind.
    Recipient.objects.filter(pk=gone)._raw_delete(using="default")

    run(published)

    assert reasons(send) == {("sent", ""): 2, ("skipped", "recipient_deleted"): 1}
    assert len(smtp_sink.messages) == 2
    counters_match_rows(send)


def test_recipients_unsubscribed_or_suppressed_after_launch_are_skipped_not_mailed(
    smtp_sink: SmtpSink,
) -> None:
    send, published = launched(5)
    first, second, third, *_ = (
        Delivery.objects.filter(send=send).order_by("id").values_list("recipient_id", flat=True)
    )
    recipient_unsubscribe(
        recipient_id=first, send_id=send.pk, reason="Unsubscribe page: from everything"
    )
    Recipient.objects.filter(pk=second).update(status=Recipient.Status.BOUNCED)
    Recipient.objects.filter(pk=third).update(status=Recipient.Status.COMPLAINED)

    run(published)

    assert reasons(send) == {
        ("sent", ""): 2,
        ("skipped", "unsubscribed"): 1,
        ("skipped", "bounced"): 1,
        ("skipped", "complained"): 1,
    }
    assert len(smtp_sink.messages) == 2
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED
    counters_match_rows(send)


def test_every_suppressed_status_has_a_skip_reason() -> None:
    assert set(batch_module.SUPPRESSED_SKIP) == set(SUPPRESSED_STATUSES)


def test_a_slow_send_writes_its_outcomes_every_few_seconds_not_only_every_50(
    smtp_sink: SmtpSink, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate-limited send used to keep up to 50 outcomes in memory: minutes at 30 a minute."""
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 50
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    monkeypatch.setattr(batch_module, "FLUSH_SECONDS", 0.0)  # every message is "a while" later
    written: list[int] = []
    real_write = outcomes_write

    def spy(**kwargs: object) -> None:
        written.append(len(kwargs["pending"].rows))  # type: ignore[attr-defined]
        real_write(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_module, "outcomes_write", spy)
    send, published = launched(3)

    run(published)

    assert written == [1, 1, 1]
    counters_match_rows(send)


def test_closing_a_send_sets_counters_that_drifted_from_the_rows(smtp_sink: SmtpSink) -> None:
    send, published = launched(3)
    Send.objects.filter(pk=send.pk).update(skipped_count=7)  # drift, however it came about

    run(published)

    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED
    counters_match_rows(send)
