"""The heartbeat every worker and beat process writes about itself (campaigns/services/heartbeat).

A daemon thread in the worker's main process (or in beat) writes one row every
OPSDASH_HEARTBEAT_SECONDS: its name, the queues it consumes, pid, concurrency, when it started,
now, and how many tasks it is running. Nothing is written at shutdown on purpose: a process that
stops, however it stops, simply goes silent, and the dashboard tells silent from alive by age.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.signals import beat_init, worker_ready, worker_shutdown
from django.utils import timezone

logger = logging.getLogger(__name__)

# Old rows of processes that are gone are purged at start and then about hourly.
PURGE_EVERY_SECONDS = 3600
_stop = threading.Event()


def _active_tasks() -> int:
    from celery.worker.state import active_requests

    return len(active_requests)


def _write_once(make_beat: Callable[[], Any], *, purge: bool) -> None:
    """One heartbeat; a database that is down costs this beat only, never the worker."""
    from django.conf import settings
    from django.db import close_old_connections, connection

    from campaigns.services.heartbeat import heartbeat_write, heartbeats_purge

    try:
        close_old_connections()
        heartbeat_write(beat=make_beat())
        if purge:
            retention = timedelta(hours=settings.OPSDASH_HEARTBEAT_RETENTION_HOURS)
            heartbeats_purge(older_than=retention)
    except Exception as exc:  # any failure here must not reach the worker
        logger.warning("Heartbeat not written: %s", exc)
        connection.close()


def _loop(make_beat: Callable[[], Any], interval: float) -> None:
    from django.db import connection

    ticks_per_purge = max(1, int(PURGE_EVERY_SECONDS // interval))
    tick = 0
    while not _stop.wait(interval):
        tick += 1
        _write_once(make_beat, purge=tick % ticks_per_purge == 0)
    connection.close()  # this thread's own connection, at a warm shutdown


def heartbeat_start(make_beat: Callable[[], Any]) -> threading.Thread:
    """Writes a first heartbeat now (the process is visible as soon as it is ready), then
    starts the thread that keeps writing them."""
    from django.conf import settings
    from django.db import connection

    _stop.clear()
    _write_once(make_beat, purge=True)
    # The main process of a prefork worker forks new pool children later: leave them no
    # connection to inherit. The thread below opens its own.
    connection.close()
    thread = threading.Thread(
        target=_loop,
        args=(make_beat, float(settings.OPSDASH_HEARTBEAT_SECONDS)),
        name="opsdash-heartbeat",
        daemon=True,
    )
    thread.start()
    return thread


@worker_ready.connect
def _worker_ready(sender: Any, **_: object) -> None:
    from campaigns.models import WorkerHeartbeat
    from campaigns.services.heartbeat import Beat

    started = timezone.now()
    hostname = str(sender.hostname)
    queues = sorted(sender.app.amqp.queues.consume_from or {})
    concurrency = int(getattr(sender.controller, "concurrency", 0) or 0)

    def make_beat() -> Beat:
        return Beat(
            hostname=hostname,
            kind=WorkerHeartbeat.Kind.WORKER,
            queues=queues,
            pid=os.getpid(),
            concurrency=concurrency,
            started_at=started,
            active_tasks=_active_tasks(),
        )

    heartbeat_start(make_beat)


@worker_shutdown.connect
def _worker_shutdown(**_: object) -> None:
    _stop.set()


@beat_init.connect
def _beat_init(sender: Any, **_: object) -> None:
    from campaigns.models import WorkerHeartbeat
    from campaigns.services.heartbeat import Beat

    started = timezone.now()
    hostname = f"beat@{socket.gethostname()}"

    def make_beat() -> Beat:
        return Beat(hostname, WorkerHeartbeat.Kind.BEAT, [], os.getpid(), 0, started)

    heartbeat_start(make_beat)
