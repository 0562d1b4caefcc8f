from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import Campaign
from campaigns.services import campaigns as services
from campaigns.services.scheduling import FIRE_TASK, occurrence_key_for, schedule_describe
from tests.factories import AudienceFactory, CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db


def scheduled(**fields: object) -> Campaign:
    campaign = CampaignFactory.create(audiences=[AudienceFactory.create()], **fields)
    return services.campaign_schedule(campaign=campaign, by=UserFactory.create())


def test_a_one_off_schedule_becomes_one_clocked_periodic_task() -> None:
    at = timezone.now() + timedelta(hours=2)
    campaign = scheduled(schedule_kind="once", scheduled_at=at)
    task = PeriodicTask.objects.get()
    assert campaign.periodic_task == task
    assert task.task == FIRE_TASK and task.one_off and task.enabled
    assert task.clocked.clocked_time == at
    assert json.loads(task.kwargs) == {"campaign_id": campaign.pk}


def test_a_weekly_schedule_uses_cron_numbering_and_an_edit_removes_it() -> None:
    campaign = scheduled(
        schedule_kind="weekly",
        schedule_time=time(9, 30),
        schedule_weekday=0,
        schedule_timezone="Europe/Oslo",
    )
    task = PeriodicTask.objects.get()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "9", "1")
    assert str(task.crontab.timezone) == "Europe/Oslo"

    campaign.schedule_kind = Campaign.ScheduleKind.DAILY
    campaign.schedule_time = time(7, 0)
    services.campaign_save(campaign=campaign, by=UserFactory.create(), changed=["schedule_kind"])
    # An edited schedule is not what was approved: back to draft, no PeriodicTask until the
    # campaign is scheduled again, then exactly one with the new time.
    assert campaign.status == Campaign.Status.DRAFT and not PeriodicTask.objects.exists()
    services.campaign_schedule(campaign=campaign, by=UserFactory.create())
    task = PeriodicTask.objects.get()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "7", "*")


def test_unscheduling_and_deleting_remove_the_periodic_task() -> None:
    campaign = scheduled(schedule_kind="daily", schedule_time=time(8, 0))
    services.campaign_unschedule(campaign=campaign, by=UserFactory.create())
    assert not PeriodicTask.objects.exists()
    services.campaign_schedule(campaign=campaign, by=UserFactory.create())
    assert PeriodicTask.objects.count() == 1
    services.campaign_delete(campaign=campaign, by=UserFactory.create())
    assert not PeriodicTask.objects.exists()


def test_two_fires_of_one_slot_share_an_occurrence_key() -> None:
    campaign = CampaignFactory.create(schedule_kind="daily", schedule_time=time(9, 0))
    on_time = datetime(2026, 3, 2, 9, 0, 2, tzinfo=UTC)
    late = datetime(2026, 3, 2, 9, 3, 40, tzinfo=UTC)
    assert occurrence_key_for(campaign, now=on_time) == occurrence_key_for(campaign, now=late)
    next_day = datetime(2026, 3, 3, 9, 0, 1, tzinfo=UTC)
    assert occurrence_key_for(campaign, now=next_day) != occurrence_key_for(campaign, now=on_time)


def test_a_scheduled_fire_launches_once_and_is_audited_without_an_actor() -> None:
    from campaigns.models import AuditEntry, Send
    from campaigns.services.campaigns import campaign_fire_scheduled

    campaign = scheduled(schedule_kind="daily", schedule_time=time(9, 0))
    first = campaign_fire_scheduled(campaign_id=campaign.pk, publish=lambda *a: None)
    again = campaign_fire_scheduled(campaign_id=campaign.pk, publish=lambda *a: None)
    assert first is not None and again is None
    assert Send.objects.get().trigger == Send.Trigger.SCHEDULE
    entry = AuditEntry.objects.get(action="sent")
    assert entry.actor is None and entry.send == first
    assert entry.changes["trigger"] == "schedule"


def test_schedules_are_described_in_plain_words() -> None:
    campaign = CampaignFactory.create(
        schedule_kind="monthly", schedule_time=time(6, 15), schedule_day=3
    )
    assert schedule_describe(campaign) == "Every month on day 3 at 06:15 (UTC)"
