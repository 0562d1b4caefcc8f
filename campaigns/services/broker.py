"""Broker I/O for the status panel and the watchdog: how deep each queue is.

Which workers are alive is not asked here: every worker writes its own heartbeat to the
database (campaigns/services/heartbeat.py), which works the same on every profile. One
short-lived connection and one attempt per call, so a broker that is down costs about a second;
every failure becomes a reason instead of an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Transports that report queue statistics by a passive declare (the embedded one cannot).
_AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int | None  # None: not known (see the report's answer)
    consumers: int | None


class BrokerAnswer(StrEnum):
    """Whether the queue numbers are there, and if not whether that is a problem."""

    ANSWERED = "answered"
    NOT_REPORTED = "not_reported"  # the transport has no queue statistics: nothing is wrong
    DOWN = "down"  # the broker should have answered and did not


@dataclass(frozen=True)
class BrokerReport:
    queues: list[QueueDepth]
    answer: BrokerAnswer


def broker_report(*, queues: Sequence[str]) -> BrokerReport:
    """The depth of ``queues`` where the transport can tell; never raises."""
    from opsdash.celery import app

    unknown = [QueueDepth(name, None, None) for name in queues]
    if str(app.conf.broker_url).split("://", 1)[0] not in _AMQP_SCHEMES:
        # The embedded profile's file-based broker keeps no queue statistics.
        return BrokerReport(unknown, BrokerAnswer.NOT_REPORTED)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return BrokerReport(_queue_depths(conn, queues), BrokerAnswer.ANSWERED)
    except Exception:
        return BrokerReport(unknown, BrokerAnswer.DOWN)


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
