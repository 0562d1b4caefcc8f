"""Broker I/O for the status panel: which workers answer and how deep each queue is.

One short-lived connection and one attempt per call, so a broker that is down costs about a
second; every failure becomes "unavailable" instead of an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PING_TIMEOUT_SECONDS = 1.0
# Transports that can broadcast a ping and report queue statistics (the embedded one cannot).
_AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int | None  # None: the broker did not answer
    consumers: int | None


@dataclass(frozen=True)
class BrokerReport:
    workers: list[str] | None  # None: unknown, as opposed to an empty list (nobody answered)
    queues: list[QueueDepth]
    reason: str  # why the numbers are missing; empty when the broker answered


def broker_report(*, queues: Sequence[str]) -> BrokerReport:
    """Workers that answer a ping and the depth of ``queues``; fails soft to "unavailable"."""
    from opsdash.celery import app

    unavailable = BrokerReport(
        workers=None,
        queues=[QueueDepth(name, None, None) for name in queues],
        reason="the broker did not answer",
    )
    if str(app.conf.broker_url).split("://", 1)[0] not in _AMQP_SCHEMES:
        # The embedded profile's file-based broker has no broadcast and no queue statistics.
        return BrokerReport(None, unavailable.queues, "the embedded broker cannot report them")
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return BrokerReport(_workers_online(conn), _queue_depths(conn, queues), "")
    except Exception:
        return unavailable


def _workers_online(conn: Any) -> list[str]:
    """Names of the workers that answer a ping within PING_TIMEOUT_SECONDS."""
    from opsdash.celery import app

    replies = app.control.inspect(connection=conn, timeout=PING_TIMEOUT_SECONDS).ping() or {}
    return sorted(replies)


def _queue_depths(conn: Any, queues: Sequence[str]) -> list[QueueDepth]:
    """Messages ready and consumers per queue, by a passive declare (which creates nothing)."""
    depths = []
    for name in queues:
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


def queue_ready_messages(*, queue: str) -> int | None:
    """Messages ready in ``queue`` (passive declare); None when the broker cannot tell."""
    from opsdash.celery import app

    if str(app.conf.broker_url).split("://", 1)[0] not in _AMQP_SCHEMES:
        return None
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            (depth,) = _queue_depths(conn, [queue])
    except Exception:
        return None
    return depth.messages
