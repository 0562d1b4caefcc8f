"""The dashboard's numbers.

Everything here must stay fast with millions of deliveries: no full COUNT over a big table.
Totals come from PostgreSQL's planner estimate (pg_class.reltuples), recent windows from
indexed range scans, per-send numbers from the counters the Send row keeps, and the results
are cached for a few seconds so a busy dashboard costs the database almost nothing. The cache
is a saving, not a dependency: with Redis down the numbers are computed directly.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from campaigns.models import Campaign, Delivery, ImportJob, Recipient, Send, TaskLink
from campaigns.selectors.cache import cache_get_or_compute
from campaigns.selectors.feedback import Feedback, sends_feedback
from campaigns.selectors.health import SendWait, send_wait

DASHBOARD_CACHE_SECONDS = 15
STATS_CACHE_KEY = "dashboard:stats:v3"
FEEDBACK_DAYS = 30
HOURS_CACHE_SECONDS = 600
CHART_HOURS = 24
CHART_OUTCOMES = (Delivery.Status.SENT, Delivery.Status.FAILED, Delivery.Status.SKIPPED)

HourlyCounts = dict[tuple[datetime, str], int]


@dataclass(frozen=True)
class OutcomeSeries:
    """Outcomes per hour: one count per hour in ``hours`` for each status of CHART_OUTCOMES."""

    hours: list[datetime]
    counts: dict[str, list[int]]


@dataclass(frozen=True)
class Upcoming:
    campaign_id: int
    name: str
    when: datetime | None
    schedule: str


def table_estimate(model: type[models.Model]) -> int:
    """The planner's row estimate for a table: instant, and close enough for a total."""
    if connection.vendor != "postgresql":
        return model._default_manager.count()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [model._meta.db_table]
        )
        row = cursor.fetchone()
    estimate = int(row[0]) if row else -1
    # -1 means "never analysed": fall back to an exact count, which is cheap on a new table.
    return estimate if estimate >= 0 else model._default_manager.count()


@dataclass(frozen=True)
class WaitingSend:
    """A running send whose batches wait for a service, as the dashboard lists it."""

    send_id: int
    name: str
    wait: SendWait


def dashboard_stats(*, now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's numbers; cached for DASHBOARD_CACHE_SECONDS across requests."""
    now = now or timezone.now()
    stats = cache_get_or_compute(
        STATS_CACHE_KEY, DASHBOARD_CACHE_SECONDS, lambda: _compute_stats(now)
    )
    return dict(stats)


def _compute_stats(now: datetime) -> dict[str, Any]:
    week = _recent_send_totals(now - timedelta(days=7))
    attempted = week["sent"] + week["failed"]
    hourly = hourly_outcomes(now=now)
    stats: dict[str, Any] = {
        "sent_today": _sent_today(now, hourly),
        # The week from the sends' own counters: exact for sends that started in the window,
        # and a few rows to read instead of an index range over a million deliveries.
        "sent_week": week["sent"],
        "failure_rate": (100.0 * week["failed"] / attempted) if attempted else None,
        "failed_week": week["failed"],
        "active_campaigns": Campaign.objects.filter(
            status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED]
        ).count(),
        "scheduled_campaigns": Campaign.objects.filter(status=Campaign.Status.SCHEDULED).count(),
        "waiting_deliveries": _waiting_deliveries(),
        "running_sends": Send.objects.filter(status=Send.Status.RUNNING).count(),
        "running_imports": running_imports().count(),
        "recipients_estimate": table_estimate(Recipient),
        "deliveries_estimate": table_estimate(Delivery),
        "outcomes": outcome_series(now=now, counts=hourly),
        "feedback": recent_feedback(now=now),
        "feedback_days": FEEDBACK_DAYS,
        "upcoming": upcoming_sends(now=now),
        "stalled_sends": stalled_sends(now=now),
        "waiting_sends": waiting_sends(now=now),
        "computed_at": now,
    }
    return stats


def running_imports() -> models.QuerySet[ImportJob]:
    """Imports running or queued to run. An upload left at the mapping page is pending with no
    task: nobody started it, so it is not running (the retention job abandons it after a day)."""
    return ImportJob.objects.filter(
        Q(status=ImportJob.Status.RUNNING) | Q(status=ImportJob.Status.PENDING, task_id__gt="")
    )


@dataclass(frozen=True)
class OnboardingStep:
    number: int
    title: str
    hint: str
    url_name: str  # an admin URL name; the template reverses it
    done: bool


def onboarding_steps() -> list[OnboardingStep]:
    """What a new installation does first, each step ticked once done; empty (the panel hides)
    once a first real send exists. Not cached: a step done a moment ago shows ticked at once."""
    if Send.objects.exists():
        return []
    return [
        OnboardingStep(
            1,
            "Import recipients",
            "Upload a CSV or Excel file of addresses into a list.",
            "admin:campaigns_importjob_add",
            Recipient.objects.exists(),
        ),
        OnboardingStep(
            2,
            "Compose a campaign",
            "Write the subject and the message and choose the lists it goes to.",
            "admin:campaigns_campaign_add",
            Campaign.objects.exists(),
        ),
        OnboardingStep(
            3,
            "Send a test",
            "Open a campaign and send yourself a test, to read it in an inbox before anyone else.",
            "admin:campaigns_campaign_changelist",
            TaskLink.objects.filter(kind=TaskLink.Kind.TEST).exists(),
        ),
    ]


def _start_of_today(now: datetime) -> datetime:
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def _recent_send_totals(since: datetime) -> dict[str, int]:
    """Sums of the counters that sends keep, over sends that ran in the window (a small table)."""
    sends = Send.objects.filter(Q(started_at__gte=since) | Q(finished_at__isnull=True))
    totals = sends.aggregate(sent=Sum("sent_count"), failed=Sum("failed_count"))
    return {key: int(value or 0) for key, value in totals.items()}


def recent_feedback(*, now: datetime, days: int = FEEDBACK_DAYS) -> Feedback:
    """Delivered, bounced, complained, ... summed over the sends that started or finished in
    the last ``days`` (and those still open), from their counters: never the event table."""
    since = now - timedelta(days=days)
    sends = Send.objects.filter(
        Q(started_at__gte=since) | Q(finished_at__gte=since) | Q(finished_at__isnull=True)
    )
    return sends_feedback(sends)


def _waiting_deliveries() -> int:
    """Queued or in-flight rows of live sends, from the send counters instead of a COUNT."""
    live = Send.objects.filter(status__in=[Send.Status.RUNNING, Send.Status.PAUSED])
    waiting = live.aggregate(
        n=Sum(F("total") - F("sent_count") - F("failed_count") - F("skipped_count"))
    )["n"]
    return max(int(waiting or 0), 0)


def _outcomes_by_hour(start: datetime, end: datetime | None) -> HourlyCounts:
    """Outcome counts per hour from ``start`` (to ``end``): a range scan of the updated_at index."""
    rows = Delivery.objects.filter(updated_at__gte=start, status__in=CHART_OUTCOMES)
    if end is not None:
        rows = rows.filter(updated_at__lt=end)
    grouped = (
        rows.annotate(hour=TruncHour("updated_at")).values("hour", "status").annotate(n=Count("id"))
    )
    return {(row["hour"], row["status"]): row["n"] for row in grouped}


def hours_cache_key(now: datetime, hours: int = CHART_HOURS) -> str:
    current = now.replace(minute=0, second=0, microsecond=0)
    return f"dashboard:hours:{hours}:{current.isoformat()}"


def hourly_outcomes(*, now: datetime, hours: int = CHART_HOURS) -> HourlyCounts:
    """Outcomes per hour over the last ``hours``, the current hour included.

    The finished hours are counted once and cached for HOURS_CACHE_SECONDS (late retries move
    few rows); only the current hour, a small range, is counted on every refresh.
    """
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    finished = cache_get_or_compute(
        hours_cache_key(now, hours), HOURS_CACHE_SECONDS, lambda: _outcomes_by_hour(start, current)
    )
    return {**finished, **_outcomes_by_hour(current, None)}


def outcome_series(
    *, now: datetime, counts: HourlyCounts, hours: int = CHART_HOURS
) -> OutcomeSeries:
    """The last ``hours`` hours, oldest first, with every outcome's count (0 for a quiet hour)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    slots = [current - timedelta(hours=hours - 1 - i) for i in range(hours)]
    return OutcomeSeries(
        hours=slots,
        counts={
            status.value: [counts.get((slot, status.value), 0) for slot in slots]
            for status in CHART_OUTCOMES
        },
    )


def _sent_today(now: datetime, counts: HourlyCounts) -> int:
    """Today's sent messages from the hourly counts (a sent row's outcome time is its sent_at)."""
    midnight = _start_of_today(now)
    return sum(
        n
        for (hour, status), n in counts.items()
        if status == Delivery.Status.SENT and hour >= midnight
    )


def upcoming_sends(*, now: datetime, limit: int = 8) -> list[Upcoming]:
    """Scheduled campaigns and when their PeriodicTask fires next, soonest first."""
    from campaigns.services.scheduling import schedule_describe

    campaigns = Campaign.objects.filter(status=Campaign.Status.SCHEDULED).select_related(
        "periodic_task__clocked", "periodic_task__crontab"
    )[:200]
    upcoming = [
        Upcoming(c.pk, c.name, _next_fire(c, now=now), schedule_describe(c)) for c in campaigns
    ]
    far = now + timedelta(days=3650)
    upcoming.sort(key=lambda item: item.when or far)
    return upcoming[:limit]


def _next_fire(campaign: Campaign, *, now: datetime) -> datetime | None:
    task = campaign.periodic_task
    if task is None or not task.enabled:
        return None
    when: datetime | None = None
    if task.clocked is not None:
        when = task.clocked.clocked_time
    elif task.crontab is not None:
        last = task.last_run_at or now
        when = now + task.crontab.schedule.remaining_estimate(last)
    return when


def stalled_sends(*, now: datetime, limit: int = 10) -> list[Send]:
    """Running sends flagged by the reaper, or with no progress for OPSDASH_STALL_MINUTES.

    A send waiting for a service is listed as waiting instead (see waiting_sends): it is quiet
    because Redis or the database is out, and its batches are due to try again.
    """
    quiet_since = now - timedelta(minutes=settings.OPSDASH_STALL_MINUTES)
    stalled = Send.objects.filter(status=Send.Status.RUNNING, waiting_for="").filter(
        ~Q(stalled_reason="") | Q(last_progress_at__lt=quiet_since)
    )
    return list(stalled.select_related("campaign").order_by("last_progress_at")[:limit])


def waiting_sends(*, now: datetime, limit: int = 10) -> list[WaitingSend]:
    """Running sends whose batches wait for a service, the longest waiting first."""
    waiting = (
        Send.objects.filter(status=Send.Status.RUNNING)
        .exclude(waiting_for="")
        .select_related("campaign")
        .order_by("waiting_since", "id")[:limit]
    )
    listed = [(send, send_wait(send, now=now)) for send in waiting]
    return [WaitingSend(send.pk, str(send), wait) for send, wait in listed if wait is not None]
