"""Keeps exactly one django-celery-beat PeriodicTask per scheduled campaign, in step with it."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from campaigns.models import Campaign

FIRE_TASK = "campaigns.tasks.fire_scheduled_send"
# Campaign.schedule_weekday's numbering (0 = Monday, as Python's date.weekday()), not cron's.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ScheduleProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def crontab_fields(campaign: Campaign) -> tuple[str, str, str, str, str]:
    """(minute, hour, day_of_month, month_of_year, day_of_week) in cron's own numbering."""
    kind = campaign.schedule_kind
    if kind == Campaign.ScheduleKind.CRONTAB:
        parts = campaign.schedule_crontab.split()
        if len(parts) != 5:
            raise ScheduleProblem(
                "schedule_crontab", "A crontab has five fields: minute hour day month weekday."
            )
        return parts[0], parts[1], parts[2], parts[3], parts[4]
    if campaign.schedule_time is None:
        raise ScheduleProblem("schedule_time", "Choose the time of day for a recurring send.")
    minute, hour = str(campaign.schedule_time.minute), str(campaign.schedule_time.hour)
    if kind == Campaign.ScheduleKind.DAILY:
        return minute, hour, "*", "*", "*"
    if kind == Campaign.ScheduleKind.WEEKLY:
        if campaign.schedule_weekday is None or not 0 <= campaign.schedule_weekday <= 6:
            raise ScheduleProblem("schedule_weekday", "Choose the day of the week.")
        return minute, hour, "*", "*", str((campaign.schedule_weekday + 1) % 7)  # cron: 0=Sunday
    if campaign.schedule_day is None or not 1 <= campaign.schedule_day <= 28:
        raise ScheduleProblem("schedule_day", "Choose a day of the month from 1 to 28.")
    return minute, hour, str(campaign.schedule_day), "*", "*"


def crontab_for(campaign: Campaign) -> crontab:
    minute, hour, day_of_month, month_of_year, day_of_week = crontab_fields(campaign)
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        raise ScheduleProblem("schedule_crontab", f"This crontab is not valid: {exc}") from exc


PAST_TIME = "This time is in the past: choose a later one."


def schedule_validate(
    campaign: Campaign, *, now: datetime | None = None, past_ok: bool = False
) -> None:
    """Raises ScheduleProblem naming the field when the schedule cannot be used.

    ``past_ok`` skips the one-off time's "in the past" rule, which only scheduling (and a save
    that sets that time) applies: Send now and Approve ignore the one-off time, so a campaign
    unscheduled after its time passed can still be sent or approved.
    """
    now = now or timezone.now()
    try:
        zoneinfo.ZoneInfo(campaign.schedule_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleProblem("schedule_timezone", "Unknown time zone.") from exc
    if campaign.schedule_kind == Campaign.ScheduleKind.ONCE:
        if campaign.scheduled_at is None:
            raise ScheduleProblem("scheduled_at", "Choose the date and time to send.")
        if not past_ok and once_time_passed(campaign, now=now):
            raise ScheduleProblem("scheduled_at", PAST_TIME)
    elif campaign.is_recurring:
        crontab_for(campaign)


def once_time_passed(campaign: Campaign, *, now: datetime | None = None) -> bool:
    """Whether a one-off campaign's chosen time has come and gone (Schedule could not use it)."""
    when = campaign.scheduled_at
    once = campaign.schedule_kind == Campaign.ScheduleKind.ONCE
    return once and when is not None and when <= (now or timezone.now())


def occurrence_key_for(campaign: Campaign, *, now: datetime | None = None) -> str:
    """The slot a scheduled fire belongs to, so two fires of one slot map to one Send."""
    if not campaign.is_recurring:
        return "once"
    schedule = crontab_for(campaign)
    tz = zoneinfo.ZoneInfo(campaign.schedule_timezone)
    moment = (now or timezone.now()).astimezone(tz).replace(second=0, microsecond=0)
    # Beat fires within seconds of the slot: walk back to the most recent matching minute.
    for _ in range(24 * 60):
        if _matches(schedule, moment):
            return f"cron:{moment.isoformat()}"
        moment -= timedelta(minutes=1)
    return f"cron:{(now or timezone.now()).replace(second=0, microsecond=0).isoformat()}"


def _matches(schedule: crontab, moment: datetime) -> bool:
    parsed: Any = schedule  # celery parses each field into a set of ints; its stubs omit them
    return (
        moment.minute in parsed.minute
        and moment.hour in parsed.hour
        and moment.day in parsed.day_of_month
        and moment.month in parsed.month_of_year
        and moment.isoweekday() % 7 in parsed.day_of_week
    )


@transaction.atomic
def campaign_schedule_sync(*, campaign: Campaign) -> PeriodicTask | None:
    """Creates, updates or removes the campaign's PeriodicTask to match its status and schedule."""
    wanted = campaign.status == Campaign.Status.SCHEDULED and campaign.schedule_kind in (
        Campaign.ScheduleKind.ONCE,
        *_RECURRING,
    )
    task = campaign.periodic_task
    if not wanted:
        if task is not None:
            campaign.periodic_task = None
            campaign.save(update_fields=["periodic_task", "updated_at"])
            task.delete()
        return None
    task = task or PeriodicTask(name=f"campaign-{campaign.pk}")
    _apply_schedule(task, campaign)
    task.task = FIRE_TASK
    task.kwargs = json.dumps({"campaign_id": campaign.pk})
    task.description = f"Sends campaign “{campaign.name}” (managed by opsdash; edit the campaign)."
    task.enabled = True
    task.save()
    if campaign.periodic_task_id != task.pk:
        campaign.periodic_task = task
        campaign.save(update_fields=["periodic_task", "updated_at"])
    return task


_RECURRING = (
    Campaign.ScheduleKind.DAILY,
    Campaign.ScheduleKind.WEEKLY,
    Campaign.ScheduleKind.MONTHLY,
    Campaign.ScheduleKind.CRONTAB,
)


def _apply_schedule(task: PeriodicTask, campaign: Campaign) -> None:
    if campaign.schedule_kind == Campaign.ScheduleKind.ONCE:
        assert campaign.scheduled_at is not None
        task.clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=campaign.scheduled_at)
        task.crontab = None
        task.one_off = True
        task.last_run_at = None
        return
    minute, hour, day_of_month, month_of_year, day_of_week = crontab_fields(campaign)
    task.crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=campaign.schedule_timezone,
    )
    task.clocked = None
    task.one_off = False


def schedule_describe(campaign: Campaign) -> str:
    """The schedule in plain words, for the admin."""
    kind = campaign.schedule_kind
    if kind == Campaign.ScheduleKind.MANUAL:
        return "Sent only when someone presses Send"
    if kind == Campaign.ScheduleKind.ONCE:
        when = campaign.scheduled_at
        return f"Once, at {when:%Y-%m-%d %H:%M %Z}" if when else "Once (no time chosen)"
    at = f"{campaign.schedule_time:%H:%M}" if campaign.schedule_time else "?"
    tz = campaign.schedule_timezone
    if kind == Campaign.ScheduleKind.DAILY:
        return f"Every day at {at} ({tz})"
    if kind == Campaign.ScheduleKind.WEEKLY:
        weekday = campaign.schedule_weekday
        day = WEEKDAYS[weekday] if weekday is not None else "?"
        return f"Every {day} at {at} ({tz})"
    if kind == Campaign.ScheduleKind.MONTHLY:
        return f"Every month on day {campaign.schedule_day} at {at} ({tz})"
    return f"Crontab “{campaign.schedule_crontab}” ({tz})"
