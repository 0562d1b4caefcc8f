"""The whole product path with real parts: beat -> RabbitMQ -> worker -> PostgreSQL -> SMTP sink."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from campaigns.models import Campaign, Delivery, Send, TaskLink
from campaigns.services.campaigns import campaign_schedule
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, UserFactory, audience_with
from tests.processes import CeleryProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_a_scheduled_campaign_reaches_every_recipient_exactly_once(
    smtp_sink: SmtpSink, worker: CeleryProcess, beat: CeleryProcess
) -> None:
    audience = audience_with(25)
    campaign = CampaignFactory.create(
        audiences=[audience],
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() + timedelta(seconds=4),
    )
    campaign_schedule(campaign=campaign, by=UserFactory.create())
    assert campaign.periodic_task is not None and campaign.periodic_task.clocked is not None

    wait_for(lambda: len(smtp_sink.messages) >= 25, timeout=90, what="25 messages at the sink")
    wait_for(
        lambda: Send.objects.filter(status=Send.Status.COMPLETED).exists(),
        timeout=30,
        what="the send to complete",
    )
    time.sleep(1)  # anything duplicated would arrive now

    messages = smtp_sink.messages
    by_recipient = Counter(message["To"].addresses[0].addr_spec for message in messages)
    expected = set(audience.subscriptions.values_list("recipient__email", flat=True))
    assert set(by_recipient) == expected
    assert set(by_recipient.values()) == {1}
    for message in messages:
        recipient = audience.subscriptions.get(
            recipient__email=message["To"].addresses[0].addr_spec
        ).recipient
        assert message["Subject"] == f"Hello {recipient.first_name}"
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
        assert f"Hi {recipient.first_name} from Oslo." in text
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    send = Send.objects.get(campaign=campaign)
    assert send.trigger == Send.Trigger.SCHEDULE
    assert send.sent_count == 25
    assert Delivery.objects.filter(send=send, status=Delivery.Status.SENT).count() == 25
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT

    # Every task of the send left a result row, reachable from the send through TaskLink.
    task_ids = set(TaskLink.objects.filter(send=send).values_list("task_id", flat=True))
    assert task_ids
    wait_for(
        lambda: TaskResult.objects.filter(task_id__in=task_ids).count() == len(task_ids),
        timeout=20,
        what="TaskResult rows for every batch",
    )
    results = TaskResult.objects.filter(task_id__in=task_ids)
    assert {r.status for r in results} == {"SUCCESS"}
    # The schedule's fire (which launched the send) is linked to it too, beside its batches.
    assert {r.task_name for r in results} == {
        "campaigns.tasks.deliver_batch",
        "campaigns.tasks.fire_scheduled_send",
    }
    assert all(results.values_list("worker", flat=True))  # the stubs lack TaskResult.worker
