"""A Send-now send carries its launch: the task that made it and who pressed the button."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import time
from typing import Any

import pytest

from campaigns.models import AuditEntry, Send, TaskLink
from campaigns.services import campaigns as services
from campaigns.services.audit import task_link_record
from campaigns.services.delivery import send_launch
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db

CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


def test_a_send_now_send_links_its_launch_task_and_who_sent_it(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)])
    dana = UserFactory.create(first_name="Dana")
    launches: list[tuple[int, str, str, int | None]] = []
    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_send_now(
            campaign=campaign, by=dana, launch=lambda *args: launches.append(args)
        )
    # What publish_launch does, then the launch task's body with its own task id.
    task_link_record(task_id="launch-1", kind=TaskLink.Kind.LAUNCH, campaign_id=campaign.pk)
    (campaign_id, key, trigger, user_id) = launches[0]
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key=key,
        trigger=trigger,
        triggered_by_id=user_id,
        publish=lambda *batch: None,
        task_id="launch-1",
    )
    assert send is not None
    link = TaskLink.objects.get(task_id="launch-1")
    assert (link.kind, link.send_id, link.campaign_id) == ("launch", send.pk, campaign.pk)
    (entry,) = AuditEntry.objects.filter(send=send, action=AuditEntry.Action.SENT)
    assert entry.actor == dana


def test_a_scheduled_fire_links_its_task_to_the_send_it_made() -> None:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)],
        schedule_kind="daily",
        schedule_time=time(9),
        status="scheduled",
    )
    task_link_record(task_id="fire-1", kind=TaskLink.Kind.LAUNCH, campaign_id=campaign.pk)
    send = services.campaign_fire_scheduled(
        campaign_id=campaign.pk, publish=lambda *batch: None, task_id="fire-1"
    )
    assert send is not None
    assert TaskLink.objects.get(task_id="fire-1").send_id == send.pk
    assert AuditEntry.objects.filter(send=send, action=AuditEntry.Action.SENT).count() == 1
    assert Send.objects.get(pk=send.pk).trigger == Send.Trigger.SCHEDULE
