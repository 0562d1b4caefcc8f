"""Worker and beat heartbeats: each process writes its own sign of life to the database.

The database is the one store every profile shares across processes (the embedded profile's
cache is per process, and its broker cannot broadcast a ping), so the dashboard reports workers
the same way everywhere. opsdash/heartbeat.py calls these from inside the worker and beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from campaigns.models import WorkerHeartbeat

_UPDATED = ["kind", "queues", "pid", "concurrency", "active_tasks", "started_at", "last_seen_at"]


@dataclass(frozen=True)
class Beat:
    """What one process says about itself on each heartbeat."""

    hostname: str
    kind: str  # a WorkerHeartbeat.Kind value
    queues: Sequence[str]
    pid: int
    concurrency: int
    started_at: datetime
    active_tasks: int = 0


def heartbeat_write(*, beat: Beat, now: datetime | None = None) -> None:
    """Upserts the process's row in one statement (a restarted process takes its row over)."""
    row = WorkerHeartbeat(
        hostname=beat.hostname,
        kind=beat.kind,
        queues=list(beat.queues),
        pid=beat.pid,
        concurrency=beat.concurrency,
        active_tasks=beat.active_tasks,
        started_at=beat.started_at,
        last_seen_at=now or timezone.now(),
    )
    WorkerHeartbeat.objects.bulk_create(
        [row], update_conflicts=True, unique_fields=["hostname"], update_fields=_UPDATED
    )


def heartbeats_purge(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Deletes the rows of processes silent for longer than ``older_than``; returns how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = WorkerHeartbeat.objects.filter(last_seen_at__lt=cutoff).delete()
    return deleted
