"""Read-side queries for the admin and the dashboard.

Everything here must stay fast with millions of deliveries: no full COUNT over a big table.
Totals come from PostgreSQL's planner estimate (pg_class.reltuples), recent windows from
indexed range scans, per-send numbers from the counters the Send row keeps, and the results
are cached for a few seconds so a busy dashboard costs the database almost nothing.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_celery_results.models import TaskResult

from campaigns.models import Campaign, Delivery, ImportJob, Recipient, Send, TaskLink

DASHBOARD_CACHE_SECONDS = 15
CHART_HOURS = 24
CHART_OUTCOMES = (Delivery.Status.SENT, Delivery.Status.FAILED, Delivery.Status.SKIPPED)


def table_estimate(model: type[Any]) -> int:
    """The planner's row estimate for a table: instant, and close enough for a total."""
    table = model._meta.db_table
    if connection.vendor != "postgresql":
        return int(model.objects.count())
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
        row = cursor.fetchone()
    estimate = int(row[0]) if row else -1
    # -1 means "never analysed": fall back to an exact count, which is cheap on a new table.
    return estimate if estimate >= 0 else int(model.objects.count())


def _start_of_today(now: datetime) -> datetime:
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def _recent_send_totals(since: datetime) -> dict[str, int]:
    """Sums of the counters that sends keep, over sends that ran in the window (a small table)."""
    sends = Send.objects.filter(Q(started_at__gte=since) | Q(finished_at__isnull=True))
    totals = sends.aggregate(sent=Sum("sent_count"), failed=Sum("failed_count"))
    return {key: int(value or 0) for key, value in totals.items()}


def _waiting_deliveries() -> int:
    """Queued or in-flight rows of live sends, from the send counters instead of a COUNT."""
    live = Send.objects.filter(status__in=[Send.Status.RUNNING, Send.Status.PAUSED])
    waiting = live.aggregate(
        n=Sum(F("total") - F("sent_count") - F("failed_count") - F("skipped_count"))
    )["n"]
    return max(int(waiting or 0), 0)


HOURS_CACHE_SECONDS = 600


def _outcomes_by_hour(start: datetime, end: datetime | None) -> dict[tuple[datetime, str], int]:
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


def hourly_outcomes(*, now: datetime, hours: int = CHART_HOURS) -> dict[tuple[datetime, str], int]:
    """Outcomes per hour over the last ``hours``, the current hour included.

    The finished hours are counted once and cached for HOURS_CACHE_SECONDS (late retries move
    few rows); only the current hour, a small range, is counted on every refresh.
    """
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    key = hours_cache_key(now, hours)
    finished = cache.get(key)
    if finished is None:
        finished = _outcomes_by_hour(start, current)
        cache.set(key, finished, HOURS_CACHE_SECONDS)
    return {**finished, **_outcomes_by_hour(current, None)}


def deliveries_per_hour(
    *, now: datetime, counts: dict[tuple[datetime, str], int], hours: int = CHART_HOURS
) -> dict[str, Any]:
    """Outcomes per hour over the last ``hours``, as Chart.js data (stacked bars)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    slots = [current - timedelta(hours=hours - 1 - i) for i in range(hours)]
    colours = {
        Delivery.Status.SENT: "var(--color-primary-600)",
        Delivery.Status.FAILED: "#dc2626",
        Delivery.Status.SKIPPED: "var(--color-base-400)",
    }
    return {
        "labels": [f"{slot:%H:00}" for slot in slots],
        "datasets": [
            {
                "label": status.label,
                "data": [counts.get((slot, status.value), 0) for slot in slots],
                "backgroundColor": colours[status],
                "stack": "outcomes",
            }
            for status in CHART_OUTCOMES
        ],
    }


def _sent_today(now: datetime, counts: dict[tuple[datetime, str], int]) -> int:
    """Today's sent messages from the hourly counts (a sent row's outcome time is its sent_at)."""
    midnight = _start_of_today(now)
    return sum(
        n
        for (hour, status), n in counts.items()
        if status == Delivery.Status.SENT and hour >= midnight
    )


CHART_OPTIONS = {
    "animation": False,
    "responsive": True,
    "maintainAspectRatio": False,
    "scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}},
    "plugins": {"legend": {"align": "end"}},
}


@dataclass(frozen=True)
class Upcoming:
    campaign_id: int
    name: str
    when: datetime | None
    schedule: str


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
    if task.clocked is not None:
        return task.clocked.clocked_time
    if task.crontab is not None:
        schedule = task.crontab.schedule
        last = task.last_run_at or now
        return now + schedule.remaining_estimate(last)
    return None


def stalled_sends(*, now: datetime, limit: int = 10) -> list[Send]:
    """Running sends flagged by the reaper, or with no progress for OPSDASH_STALL_MINUTES."""
    quiet_since = now - timedelta(minutes=settings.OPSDASH_STALL_MINUTES)
    stalled = Send.objects.filter(status=Send.Status.RUNNING).filter(
        ~Q(stalled_reason="") | Q(last_progress_at__lt=quiet_since)
    )
    return list(stalled.select_related("campaign").order_by("last_progress_at")[:limit])


def dashboard_stats(*, now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's numbers; cached for DASHBOARD_CACHE_SECONDS across requests."""
    key = "dashboard:stats:v1"
    cached = cache.get(key)
    if cached is not None:
        return dict(cached)
    now = now or timezone.now()
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
        "running_imports": ImportJob.objects.filter(
            status__in=[ImportJob.Status.PENDING, ImportJob.Status.RUNNING]
        ).count(),
        "recipients_estimate": table_estimate(Recipient),
        "deliveries_estimate": table_estimate(Delivery),
        "chart": deliveries_per_hour(now=now, counts=hourly),
        "upcoming": upcoming_sends(now=now),
        "stalled_sends": stalled_sends(now=now),
        "computed_at": now,
    }
    cache.set(key, stats, DASHBOARD_CACHE_SECONDS)
    return stats


# --- Sends: their deliveries and task results -----------------------------------------------

SEND_PAGE_ROWS = 50


def send_deliveries(
    *, send_id: int, status: str = "", email: str = "", limit: int = SEND_PAGE_ROWS
) -> QuerySet[Delivery]:
    """A page of one send's deliveries, optionally one outcome or one exact address.

    Uses the (send, status) index; the email filter is an exact match on the unique index.
    """
    rows = Delivery.objects.filter(send_id=send_id).select_related("recipient")
    if status in Delivery.Status.values:
        rows = rows.filter(status=status)
    if email:
        rows = rows.filter(recipient__email=email.strip().lower())
    return rows.defer("recipient__attributes").order_by("-id")[:limit]


def send_task_ids(send_id: int) -> list[str]:
    """The ids of a send's tasks, fetched first: as a subquery the planner tends to walk the
    whole results table by date looking for them; as a list it looks each one up by id."""
    return list(TaskLink.objects.filter(send_id=send_id).values_list("task_id", flat=True))


def results_of_tasks(queryset: QuerySet[TaskResult], task_ids: list[str]) -> QuerySet[TaskResult]:
    """``task_id = ANY(%s)`` with the ids as one array parameter.

    The same plan as ``task_id__in=[...]``, without Django preparing a placeholder per id on
    every query of the page (a large send has thousands of batch tasks).
    """
    if connection.vendor != "postgresql":  # SQLite (the embedded profile) has no arrays
        return queryset.filter(task_id__in=task_ids)
    table = TaskResult._meta.db_table
    # The SQL is a constant (the model's own table name); the ids go in as a bound parameter.
    where = f'"{table}"."task_id" = ANY(%s)'
    return queryset.extra(where=[where], params=[task_ids])  # noqa: S610


def send_task_results(*, send_id: int, limit: int = SEND_PAGE_ROWS) -> list[TaskResult]:
    """The TaskResult rows of a send's tasks (launch and batches), newest first."""
    return list(
        results_of_tasks(TaskResult.objects.all(), send_task_ids(send_id))
        .defer("task_args", "task_kwargs")
        .order_by("-date_created")[:limit]
    )


# --- Campaign preview ------------------------------------------------------------------------

SAMPLE_RECIPIENT = {
    "email": "sample@example.com",
    "first_name": "Sample",
    "last_name": "Recipient",
    "attributes": {},
}


def preview_recipient(*, email: str) -> dict[str, Any] | None:
    """The fields of the recipient to preview as; the sample when no address is given.

    Returns None when an address is given but no recipient has it.
    """
    if not email.strip():
        return dict(SAMPLE_RECIPIENT)
    row = (
        Recipient.objects.filter(email=email.strip().lower())
        .values("id", "email", "first_name", "last_name", "attributes")
        .first()
    )
    return dict(row) if row is not None else None


def task_state(*, task_id: str) -> dict[str, Any] | None:
    """The state of a task we published (None for ids we never linked), for polling."""
    if not TaskLink.objects.filter(task_id=task_id).exists():
        return None
    result = TaskResult.objects.filter(task_id=task_id).values("status", "result").first()
    if result is None:
        return {"state": "PENDING", "done": False, "detail": "Waiting for a worker to pick it up."}
    state = result["status"]
    done = state in {"SUCCESS", "FAILURE", "REVOKED"}
    return {"state": state, "done": done, "detail": str(result["result"] or "")[:500]}


# --- Workers and queues ----------------------------------------------------------------------

SYSTEM_CACHE_SECONDS = 10
PING_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int | None  # None: the broker did not answer
    consumers: int | None


def _workers_online(conn: Any) -> list[str]:
    """Names of the workers that answer a ping within PING_TIMEOUT_SECONDS."""
    from opsdash.celery import app

    replies = app.control.inspect(connection=conn, timeout=PING_TIMEOUT_SECONDS).ping() or {}
    return sorted(replies)


def _queue_depths(conn: Any) -> list[QueueDepth]:
    """Messages ready and consumers per queue, by a passive declare (which creates nothing)."""
    depths = []
    for name in _queue_names():
        channel: Any = conn.channel()
        try:
            _, messages, consumers = channel.queue_declare(queue=name, passive=True)
            depths.append(QueueDepth(name, int(messages), int(consumers)))
        except Exception:
            depths.append(QueueDepth(name, 0, 0))  # not declared yet: nothing waiting
        finally:
            with contextlib.suppress(Exception):  # the broker closes a channel after a 404
                channel.close()
    return depths


def _queue_names() -> list[str]:
    return [
        settings.QUEUE_DELIVERY,
        settings.QUEUE_PRIORITY,
        settings.QUEUE_IMPORTS,
        settings.QUEUE_DEFAULT,
    ]


def _broker_status() -> dict[str, Any]:
    """One short-lived connection, one attempt: a broker that is down costs about a second."""
    from opsdash.celery import app

    unavailable: dict[str, Any] = {
        "workers": None,
        "queues": [QueueDepth(name, None, None) for name in _queue_names()],
        "reason": "the broker did not answer",
    }
    if str(app.conf.broker_url).split("://", 1)[0] not in {"amqp", "amqps", "pyamqp"}:
        # The embedded profile's file-based broker has no broadcast and no queue statistics.
        return {**unavailable, "reason": "the embedded broker cannot report them"}
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return {"workers": _workers_online(conn), "queues": _queue_depths(conn), "reason": ""}
    except Exception:
        return unavailable


def system_status() -> dict[str, Any]:
    """Workers online and queue depths, cached; every part fails soft to "unavailable"."""
    key = "dashboard:system:v1"
    cached = cache.get(key)
    if cached is not None:
        return dict(cached)
    status = {**_broker_status(), "checked_at": timezone.now()}
    cache.set(key, status, SYSTEM_CACHE_SECONDS)
    return status
