"""The dashboard's "Workers and queues" panel: workers from their heartbeats, depths from the
broker where it can tell.

It warns only when something is wrong: a queue the product needs (settings.QUEUES) that no live
worker consumes, a silent worker whose queues nobody else covers, a broker that should answer
and does not, or schedules waiting with no scheduler alive. A transport that keeps no queue
statistics (the embedded one) is said plainly, in neutral colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign, ChannelHealth, WorkerHeartbeat
from campaigns.selectors.cache import cache_get_or_compute
from campaigns.services.broker import BrokerAnswer, BrokerReport, broker_report

# Only the broker's answer is cached: heartbeats are one small indexed read.
SYSTEM_CACHE_SECONDS = 10
SYSTEM_CACHE_KEY = "dashboard:system:v2"
Kind = WorkerHeartbeat.Kind


def ago(seconds: float) -> str:
    """ "3 s", "2 min", "5 h", "2 days": how long ago, in the largest whole unit."""
    whole = max(0, int(seconds))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if whole >= size:
            count = whole // size
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
    return f"{whole} s"


@dataclass(frozen=True)
class WorkerLine:
    """One worker or beat process as the panel shows it."""

    hostname: str
    queues: list[str]
    pid: int
    concurrency: int
    active_tasks: int
    started_at: datetime
    last_seen_at: datetime
    seen_ago: str  # "3 s"
    alive: bool
    warn: bool  # silent, and something it covered is now covered by nobody

    @property
    def status(self) -> str:
        return "OK" if self.alive else f"Silent for {self.seen_ago}"


@dataclass(frozen=True)
class QueueLine:
    name: str
    messages: int | None
    consumers: int | None
    workers: int  # live workers whose heartbeat says they consume it

    @property
    def warn(self) -> bool:
        return self.workers == 0


def system_status(*, now: datetime | None = None) -> dict[str, Any]:
    """The panel's context: workers, the scheduler, queues, and the warnings among them."""
    now = now or timezone.now()
    silent_after = timedelta(seconds=settings.OPSDASH_WORKER_SILENT_SECONDS)
    rows = list(WorkerHeartbeat.objects.all())
    workers, live = _worker_lines(rows, now, silent_after)
    covered = {queue for row in live for queue in row.queues}
    report: BrokerReport = cache_get_or_compute(
        SYSTEM_CACHE_KEY, SYSTEM_CACHE_SECONDS, lambda: broker_report(queues=settings.QUEUES)
    )
    beat, beat_warn = _beat_line(rows, now, silent_after)
    uncovered = [name for name in settings.QUEUES if name not in covered]
    broker_down = report.answer == BrokerAnswer.DOWN
    channels = channel_health(now=now)
    refused = any(line.recent_auth_failure for line in channels)
    return {
        "workers": workers,
        "beat": beat,
        "beat_warn": beat_warn,
        "queues": [
            QueueLine(depth.name, depth.messages, depth.consumers, _consumers(live, depth.name))
            for depth in report.queues
        ],
        "uncovered": uncovered,
        "warning": bool(
            uncovered or beat_warn or broker_down or refused or any(w.warn for w in workers)
        ),
        "broker": report.answer.value,
        "broker_down": broker_down,
        "depths_reported": report.answer == BrokerAnswer.ANSWERED,
        "silent_after": ago(silent_after.total_seconds()),
        "channels": configured_channels(),
        "channel_health": channels,
        "auth_failure_hours": AUTH_FAILURE_HOURS,
        "checked_at": now,
    }


def _worker_lines(
    rows: Sequence[WorkerHeartbeat], now: datetime, silent_after: timedelta
) -> tuple[list[WorkerLine], list[WorkerHeartbeat]]:
    """Every worker's line, and the rows of the live ones. A silent worker warns only when a
    needed queue it consumed is now consumed by no live worker (not, say, an old container
    name whose replacement covers the same queues)."""
    workers = [row for row in rows if row.kind == Kind.WORKER]
    live = [row for row in workers if now - row.last_seen_at <= silent_after]
    covered = {queue for row in live for queue in row.queues}
    needed = set(settings.QUEUES)
    lines = [
        _line(row, now, silent_after, orphaned=(needed & set(row.queues)) - covered)
        for row in workers
    ]
    return lines, live


def _beat_line(
    rows: Sequence[WorkerHeartbeat], now: datetime, silent_after: timedelta
) -> tuple[WorkerLine | None, bool]:
    """The most recent beat, and whether its silence matters: only while something is
    scheduled (with nothing to fire, a missing beat harms nobody)."""
    beats = [_line(r, now, silent_after, orphaned=set()) for r in rows if r.kind == Kind.BEAT]
    beat = max(beats, key=lambda line: line.last_seen_at, default=None)
    if beat is not None and beat.alive:
        return beat, False
    return beat, Campaign.objects.filter(status=Campaign.Status.SCHEDULED).exists()


def _consumers(live: Sequence[WorkerHeartbeat], queue: str) -> int:
    return sum(1 for row in live if queue in row.queues)


def _line(
    row: WorkerHeartbeat, now: datetime, silent_after: timedelta, *, orphaned: set[str]
) -> WorkerLine:
    age = now - row.last_seen_at
    alive = age <= silent_after
    return WorkerLine(
        hostname=row.hostname,
        queues=list(row.queues),
        pid=row.pid,
        concurrency=row.concurrency,
        active_tasks=row.active_tasks,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        seen_ago=ago(age.total_seconds()),
        alive=alive,
        warn=not alive and bool(orphaned),
    )


# --- Sending channels and what their webhooks did --------------------------------------------

# A webhook refused for bad credentials this recently is news: either someone probes the
# endpoint, or the ESP's secret changed and its events (bounces, complaints) are being lost.
AUTH_FAILURE_HOURS = 24


@dataclass(frozen=True)
class ChannelLine:
    """A configured sending channel: "postmark" sends through the postmark backend."""

    name: str
    backend: str
    stream: str
    default: bool


def configured_channels() -> list[ChannelLine]:
    """settings.OPSDASH_CHANNELS ("name=backend" or "name=backend:stream"), default marked."""
    lines = []
    for entry in settings.OPSDASH_CHANNELS:
        name, _, rest = entry.partition("=")
        backend, _, stream = rest.partition(":")
        name = name.strip()
        default = name == settings.OPSDASH_DEFAULT_CHANNEL
        lines.append(ChannelLine(name, backend.strip() or name, stream.strip(), default))
    return lines


@dataclass(frozen=True)
class HealthLine:
    """What one source's webhooks (or the bounce receiver) did, as the panel shows it."""

    source: str
    events_received: int
    last_event_at: datetime | None
    last_event_ago: str  # "3 min", or "" when nothing came yet
    auth_failures: int
    last_auth_failure_at: datetime | None
    last_auth_failure: str
    rejected_payloads: int
    last_rejected_at: datetime | None
    last_rejected: str
    recent_auth_failure: bool  # within AUTH_FAILURE_HOURS: the line warns


def channel_health(*, now: datetime) -> list[HealthLine]:
    """One line per ChannelHealth row (a handful: one per provider that ever called)."""
    recent = now - timedelta(hours=AUTH_FAILURE_HOURS)
    return [
        HealthLine(
            source=row.source,
            events_received=row.events_received,
            last_event_at=row.last_event_at,
            last_event_ago=ago((now - row.last_event_at).total_seconds())
            if row.last_event_at
            else "",
            auth_failures=row.auth_failures,
            last_auth_failure_at=row.last_auth_failure_at,
            last_auth_failure=row.last_auth_failure,
            rejected_payloads=row.rejected_payloads,
            last_rejected_at=row.last_rejected_at,
            last_rejected=row.last_rejected,
            recent_auth_failure=row.last_auth_failure_at is not None
            and row.last_auth_failure_at >= recent,
        )
        for row in ChannelHealth.objects.order_by("source")
    ]
