"""The delivery engine through its services, with the real database and a real SMTP sink."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import Campaign, Delivery, Recipient, Send, Subscription, TaskLink
from campaigns.services import delivery
from campaigns.services.delivery import NextStep, batch_deliver, send_launch
from campaigns.services.delivery.batch import claimable
from opsdash.smtp_sink import DROP, SmtpSink
from tests.factories import CampaignFactory, RecipientFactory, SubscriptionFactory, audience_with
from tests.processes import on_own_thread
from tests.services.leases import lease_held_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)

Published = list[tuple[int, int, int, str]]


def launch(campaign_id: int, key: str = "once") -> tuple[Send | None, Published]:
    published: Published = []
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key=key,
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    return send, published


def run(published: Published) -> list[delivery.BatchResult]:
    return [
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)
        for s, first, last, task_id in published
    ]


def received(sink: SmtpSink) -> Counter[str]:
    return Counter(message["To"].addresses[0].addr_spec for message in sink.messages)


def statuses(send: Send) -> Counter[str]:
    return Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))


# --- Launch and dispatch --------------------------------------------------------------------


def test_launch_queues_only_subscribed_active_recipients() -> None:
    audience = audience_with(4)
    bounced = RecipientFactory.create(status=Recipient.Status.BOUNCED)
    SubscriptionFactory.create(recipient=bounced, audience=audience)
    left = SubscriptionFactory.create(audience=audience, status=Subscription.Status.UNSUBSCRIBED)
    campaign = CampaignFactory.create(audiences=[audience])

    send, _ = launch(campaign.pk)

    assert send is not None and send.total == 4
    queued = set(Delivery.objects.filter(send=send).values_list("recipient_id", flat=True))
    assert bounced.pk not in queued and left.recipient_id not in queued


def test_a_second_launch_of_one_occurrence_creates_nothing() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)])

    first, _ = launch(campaign.pk)
    second, published_second = launch(campaign.pk)

    assert first is not None and second is None
    assert published_second == []
    assert Send.objects.count() == 1 and Delivery.objects.count() == 3


@pytest.mark.parametrize(
    ("rows", "size", "most", "batches"), [(10, 4, 100, 3), (41, 2, 100, 21), (41, 2, 5, 5)]
)
def test_dispatch_covers_every_queued_row_exactly_once_in_id_ranges(
    settings: Settings, rows: int, size: int, most: int, batches: int
) -> None:
    settings.OPSDASH_DELIVERY_BATCH_SIZE = size
    settings.OPSDASH_DELIVERY_MAX_BATCHES = most  # a large send gets larger batches instead
    campaign = CampaignFactory.create(audiences=[audience_with(rows)])

    send, published = launch(campaign.pk)

    assert send is not None and len(published) == batches
    published.sort(key=lambda batch: batch[1])  # many batches are published from threads
    ids = list(Delivery.objects.filter(send=send).order_by("id").values_list("id", flat=True))
    covered = [i for _, first, last, _ in published for i in ids if first <= i <= last]
    assert covered == ids
    task_ids = {task_id for *_, task_id in published}
    assert set(TaskLink.objects.filter(send=send).values_list("task_id", flat=True)) == task_ids


# --- One batch ------------------------------------------------------------------------------


def test_a_batch_sends_each_row_once_over_one_connection(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    audience = audience_with(12)
    campaign = CampaignFactory.create(audiences=[audience])
    send, published = launch(campaign.pk)
    assert send is not None

    (result,) = run(published)

    assert result.sent == 12
    assert set(received(smtp_sink).values()) == {1}
    assert smtp_sink.handler.sessions == 1
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.sent_count == 12
    assert statuses(send) == {Delivery.Status.SENT: 12}


def test_running_a_batch_again_sends_nothing(smtp_sink: SmtpSink) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(5)])
    _, published = launch(campaign.pk)

    run(published)
    (again,) = run(published)

    assert again.sent == 0
    assert len(smtp_sink.messages) == 5


def test_a_batch_waits_while_another_run_of_it_holds_the_lease(smtp_sink: SmtpSink) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)])
    _, published = launch(campaign.pk)
    (send_id, first, last, task_id) = published[0]
    with lease_held_elsewhere(task_id):
        result = batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    assert result.next_step is NextStep.BUSY
    assert smtp_sink.messages == []
    assert batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id).sent == 3


def test_messages_carry_a_deterministic_message_id_and_one_click_unsubscribe(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_PUBLIC_URL = "https://ops.example.com"
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    send, published = launch(campaign.pk)
    assert send is not None
    run(published)

    (message,) = smtp_sink.messages
    row = Delivery.objects.get(send=send)
    assert message["Message-ID"] == f"<send-{send.pk}.rcpt-{row.recipient_id}@opsdash.localhost>"
    assert message["List-Unsubscribe"].startswith("<https://ops.example.com/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- SMTP outcomes --------------------------------------------------------------------------


def test_a_temporary_refusal_requeues_the_row_with_its_error_and_a_retry_sends_it(
    smtp_sink: SmtpSink,
) -> None:
    audience = audience_with(3)
    subscription = audience.subscriptions.first()
    assert subscription is not None
    unlucky = subscription.recipient.email
    refusal = "451 4.3.0 Local error in processing"  # temporary, and not about the rate
    smtp_sink.rule = lambda address: refusal if address == unlucky else None
    campaign = CampaignFactory.create(audiences=[audience])
    send, published = launch(campaign.pk)

    (first,) = run(published)

    assert (first.sent, first.requeued) == (2, 1)
    row = Delivery.objects.get(send=send, recipient__email=unlucky)
    assert row.status == Delivery.Status.QUEUED and row.attempts == 1
    assert refusal in row.last_error

    smtp_sink.rule = None
    (retry,) = run(published)  # the task retries with the same id and range

    assert retry.sent == 1
    row.refresh_from_db()
    assert row.status == Delivery.Status.SENT and row.attempts == 2
    assert "attempt 1" in row.last_error  # the earlier attempt's error is kept
    assert set(received(smtp_sink).values()) == {1}


def test_a_row_that_keeps_failing_temporarily_fails_after_the_last_attempt(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_DELIVERY_MAX_ATTEMPTS = 2
    smtp_sink.rule = lambda address: "450 4.2.1 Mailbox busy"
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    send, published = launch(campaign.pk)

    run(published)
    run(published)

    row = Delivery.objects.get(send=send)
    assert row.status == Delivery.Status.FAILED and row.attempts == 2
    assert row.last_error.count("450 4.2.1 Mailbox busy") == 2


def test_a_permanent_refusal_fails_the_row_and_an_unknown_mailbox_is_suppressed(
    smtp_sink: SmtpSink,
) -> None:
    audience = audience_with(3)
    emails = sorted(audience.subscriptions.values_list("recipient__email", flat=True))
    replies = {emails[0]: "550 5.1.1 No such user here", emails[1]: "554 5.7.1 Message rejected"}
    smtp_sink.rule = replies.get
    campaign = CampaignFactory.create(audiences=[audience])
    send, published = launch(campaign.pk)
    assert send is not None

    run(published)

    rows = {row.recipient.email: row for row in Delivery.objects.filter(send=send)}
    assert rows[emails[0]].status == rows[emails[1]].status == Delivery.Status.FAILED
    assert rows[emails[2]].status == Delivery.Status.SENT
    assert Recipient.objects.get(email=emails[0]).status == Recipient.Status.BOUNCED
    assert Recipient.objects.get(email=emails[1]).status == Recipient.Status.ACTIVE
    send.refresh_from_db()
    assert (send.status, send.sent_count, send.failed_count) == (Send.Status.COMPLETED, 1, 2)


def test_a_send_whose_every_delivery_failed_closes_as_failed(smtp_sink: SmtpSink) -> None:
    smtp_sink.rule = lambda address: "554 5.7.1 Message rejected"
    campaign = CampaignFactory.create(audiences=[audience_with(3)])
    send, published = launch(campaign.pk)
    assert send is not None

    run(published)

    send.refresh_from_db()
    campaign.refresh_from_db()
    assert (send.status, send.sent_count, send.failed_count) == (Send.Status.FAILED, 0, 3)
    assert send.finished_at is not None
    assert campaign.status == Campaign.Status.FAILED  # a one-off campaign shows its send


def test_a_recurring_campaign_stays_scheduled_when_a_send_fails(smtp_sink: SmtpSink) -> None:
    smtp_sink.rule = lambda address: "554 5.7.1 Message rejected"
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)],
        schedule_kind=Campaign.ScheduleKind.DAILY,
        status=Campaign.Status.SCHEDULED,
    )
    send, published = launch(campaign.pk)
    assert send is not None

    run(published)

    send.refresh_from_db()
    campaign.refresh_from_db()
    assert (send.status, campaign.status) == (Send.Status.FAILED, Campaign.Status.SCHEDULED)


def test_a_dropped_connection_is_reopened_for_the_rest_of_the_batch(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    audience = audience_with(4)
    emails = sorted(audience.subscriptions.values_list("recipient__email", flat=True))
    smtp_sink.rule = lambda address: DROP if address == emails[1] else None
    campaign = CampaignFactory.create(audiences=[audience])
    send, published = launch(campaign.pk)

    (result,) = run(published)

    rows = list(Delivery.objects.filter(send=send).values_list("status", "last_error"))
    assert (result.sent, result.requeued) == (3, 1), (result, rows)
    assert smtp_sink.handler.sessions == 2, rows
    assert Delivery.objects.get(send=send, recipient__email=emails[1]).attempts == 1


def test_an_unreachable_server_defers_the_batch_without_spending_attempts(
    settings: Settings,
) -> None:
    settings.EMAIL_PORT = SmtpSink().port  # a free port nobody listens on
    campaign = CampaignFactory.create(audiences=[audience_with(3)])
    send, published = launch(campaign.pk)
    assert send is not None

    (result,) = run(published)

    assert result.requeued == 3 and "cannot connect" in result.deferred
    assert statuses(send) == {Delivery.Status.QUEUED: 3}
    assert set(Delivery.objects.filter(send=send).values_list("attempts", flat=True)) == {0}


def test_a_struggling_server_stops_the_batch_after_a_few_temporary_failures(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_DELIVERY_TRANSIENT_STREAK = 2
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    # A temporary error that is not about the rate (a throttling reply never counts).
    smtp_sink.rule = lambda address: "451 4.3.0 Local error in processing"
    campaign = CampaignFactory.create(audiences=[audience_with(6)])
    send, published = launch(campaign.pk)

    (result,) = run(published)

    assert "temporary" in result.deferred and result.requeued == 6
    attempts = Counter(Delivery.objects.filter(send=send).values_list("attempts", flat=True))
    # The two tried count an attempt each (an ordinary temporary error); the rest none.
    assert attempts == {1: 2, 0: 4}


# --- Pause, resume, cancel ------------------------------------------------------------------


def test_pause_stops_before_the_next_message_and_resume_sends_the_rest_once(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    campaign = CampaignFactory.create(audiences=[audience_with(8)])
    send, published = launch(campaign.pk)
    assert send is not None
    seen: list[str] = []

    def pause_at_third(address: str) -> None:
        seen.append(address)
        if len(seen) == 3:  # while message 3 is being handed over
            on_own_thread(lambda: delivery.send_pause(send_id=send.pk, by=None))

    smtp_sink.rule = pause_at_third
    (result,) = run(published)

    assert result.stopped == Send.Status.PAUSED
    assert len(smtp_sink.messages) == 3
    assert statuses(send) == {Delivery.Status.SENT: 3, Delivery.Status.QUEUED: 5}
    assert run(published)[0].stopped == Send.Status.PAUSED  # a late batch sends nothing either

    resumed: Published = []
    smtp_sink.rule = None
    delivery.send_resume(send_id=send.pk, by=None, publish=lambda *batch: resumed.append(batch))
    run(resumed)

    assert set(received(smtp_sink).values()) == {1} and len(smtp_sink.messages) == 8
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.sent_count == 8


def test_cancel_mid_batch_skips_everything_not_yet_sent(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    # One session at a time: the test follows the messages in order.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    campaign = CampaignFactory.create(audiences=[audience_with(6)])
    send, published = launch(campaign.pk)
    assert send is not None
    seen: list[str] = []

    def cancel_at_second(address: str) -> None:
        seen.append(address)
        if len(seen) == 2:
            on_own_thread(lambda: delivery.send_cancel(send_id=send.pk, by=None))

    smtp_sink.rule = cancel_at_second
    (result,) = run(published)

    assert result.stopped == Send.Status.CANCELLED
    assert len(smtp_sink.messages) == 2
    assert statuses(send) == {Delivery.Status.SENT: 2, Delivery.Status.SKIPPED: 4}
    send.refresh_from_db()
    assert (send.sent_count, send.skipped_count) == (2, 4)


# --- Recovery -------------------------------------------------------------------------------


def _stuck(send: Send, task_id: str, minutes: int) -> None:
    Delivery.objects.filter(send=send).update(
        status=Delivery.Status.SENDING,
        task_id=task_id,
        claimed_at=timezone.now() - timedelta(minutes=minutes),
    )


def test_the_reaper_returns_rows_of_dead_batches_and_leaves_live_ones_alone(
    smtp_sink: SmtpSink,
) -> None:
    live_send, _ = launch(CampaignFactory.create(audiences=[audience_with(2)]).pk)
    dead_send, _ = launch(CampaignFactory.create(audiences=[audience_with(3)]).pk)
    assert live_send is not None and dead_send is not None
    _stuck(live_send, "live-task", minutes=30)
    _stuck(dead_send, "dead-task", minutes=30)
    republished: Published = []

    with lease_held_elsewhere("live-task"):
        reaped = delivery.deliveries_reap(publish=lambda *batch: republished.append(batch))

    assert reaped == 3
    assert statuses(live_send) == {Delivery.Status.SENDING: 2}
    assert statuses(dead_send) == {Delivery.Status.QUEUED: 3}
    assert {batch[0] for batch in republished} == {dead_send.pk}
    run(republished)
    assert len(smtp_sink.messages) == 3


def test_the_reaper_hands_back_a_paused_sends_dead_rows_without_dispatching_them() -> None:
    paused, _ = launch(CampaignFactory.create(audiences=[audience_with(2)]).pk)
    assert paused is not None
    _stuck(paused, "dead-task", minutes=30)
    Send.objects.filter(pk=paused.pk).update(status=Send.Status.PAUSED)
    republished: Published = []

    reaped = delivery.deliveries_reap(publish=lambda *batch: republished.append(batch))

    assert reaped == 2
    assert statuses(paused) == {Delivery.Status.QUEUED: 2}
    assert republished == []  # a resume dispatches them


def test_a_claim_reads_its_id_range_from_the_index_whatever_the_send_holds() -> None:
    """Without statistics for a send just launched, the planner may pick the send's index:
    that index must bound the claim by the batch's ids, not walk every queued row."""
    send, _ = launch(CampaignFactory.create(audiences=[audience_with(30)]).pk)
    assert send is not None
    ids = sorted(Delivery.objects.filter(send=send).values_list("pk", flat=True))
    rows = claimable(send_id=send.pk, first_id=ids[10], last_id=ids[19], task_id="t-claim")

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small reads whole
        plan = rows.explain()

    assert rows.count() == 10
    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert conditions, plan
    for condition in conditions:  # the primary key's range, or the send's index with the ids
        assert "id >=" in condition and "id <=" in condition, plan


def test_a_send_without_progress_is_flagged_with_the_reason_and_dispatched_again(
    smtp_sink: SmtpSink,
) -> None:
    send, _ = launch(CampaignFactory.create(audiences=[audience_with(2)]).pk)
    assert send is not None
    Send.objects.filter(pk=send.pk).update(last_progress_at=timezone.now() - timedelta(hours=1))
    republished: Published = []

    flagged = delivery.sends_flag_stalled(publish=lambda *batch: republished.append(batch))

    assert flagged == 1
    send.refresh_from_db()
    assert "No progress since" in send.stalled_reason
    run(republished)
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.stalled_reason == ""
    assert len(smtp_sink.messages) == 2


def test_a_row_whose_recipient_vanished_after_launch_is_skipped(smtp_sink: SmtpSink) -> None:
    audience = audience_with(3)
    campaign = CampaignFactory.create(audiences=[audience])
    send, published = launch(campaign.pk)
    assert send is not None
    subscription = audience.subscriptions.first()
    assert subscription is not None
    gone = subscription.recipient
    with connection.cursor() as cursor:  # a deletion that raced the launch's insert
        cursor.execute("DELETE FROM campaigns_subscription WHERE recipient_id = %s", [gone.pk])
        cursor.execute("DELETE FROM campaigns_recipient WHERE id = %s", [gone.pk])

    (result,) = run(published)

    assert (result.sent, result.skipped) == (2, 1)
    assert len(smtp_sink.messages) == 2
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.skipped_count == 1
