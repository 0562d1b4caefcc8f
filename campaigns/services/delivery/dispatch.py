"""Dispatch: a Send's queued rows become batch tasks, each an id range, not a list of addresses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection, connections

from campaigns.models import Delivery, Send, TaskLink

# Publishes one batch: (send_id, first_id, last_id, task_id). Services take
# campaigns.publishers.publish_batch as the default, so they never import Celery tasks.
BatchPublisher = Callable[[int, int, int, str], None]
# Publishes a launch: (campaign_id, occurrence_key, trigger, triggered_by_id).
LaunchPublisher = Callable[[int, str, str, int | None], None]

_PUBLISH_THREADS = 8


def send_dispatch(
    *,
    send_id: int,
    publish: BatchPublisher,
    only_ids: Iterable[int] | None = None,
    span: tuple[int, int] | None = None,
) -> int:
    """Publishes a batch task per range of queued rows; returns how many.

    The ranges cover the send's queued rows, or ``only_ids``, or at launch the id ``span`` the
    insert used (ids from one INSERT are nearly always consecutive; a range holding fewer of
    this send's rows, because a concurrent insert took some ids, is just a smaller batch).
    Publishing a range twice is harmless: each row is claimed by one batch only.
    """
    campaign_id, total = Send.objects.values_list("campaign_id", "total").get(pk=send_id)
    # Batches grow past the configured size for very large sends, so that no launch publishes
    # more than OPSDASH_DELIVERY_MAX_BATCHES messages (each waits for a broker confirm).
    size = max(
        settings.OPSDASH_DELIVERY_BATCH_SIZE, -(-total // settings.OPSDASH_DELIVERY_MAX_BATCHES)
    )
    if span is not None:
        ranges = [(low, min(low + size - 1, span[1])) for low in range(span[0], span[1] + 1, size)]
    elif only_ids is None:
        ranges = _id_ranges(send_id=send_id, size=size)
    else:
        ranges = _ranges_of(only_ids, size=size)
    task_ids = [str(uuid.uuid4()) for _ in ranges]
    TaskLink.objects.bulk_create(
        TaskLink(
            task_id=task_id, kind=TaskLink.Kind.BATCH, campaign_id=campaign_id, send_id=send_id
        )
        for task_id in task_ids
    )
    batches = [
        (send_id, first, last, task_id)
        for (first, last), task_id in zip(ranges, task_ids, strict=True)
    ]
    _publish_all(publish, batches)
    return len(batches)


def _publish_all(publish: BatchPublisher, batches: list[tuple[int, int, int, str]]) -> None:
    if len(batches) <= _PUBLISH_THREADS:
        for batch in batches:
            publish(*batch)
        return
    # Each publish waits for RabbitMQ's confirm: a large send publishes from a few threads at
    # once, so its launch does not wait thousands of round trips one after another.
    with ThreadPoolExecutor(_PUBLISH_THREADS) as pool:
        list(pool.map(lambda batch: _publish_on_thread(publish, batch), batches))


def _publish_on_thread(publish: BatchPublisher, batch: tuple[int, int, int, str]) -> None:
    try:
        publish(*batch)
    finally:
        # A publisher that runs the task in-process (eager mode) opened this thread's connection.
        connections.close_all()


def _id_ranges(*, send_id: int, size: int) -> list[tuple[int, int]]:
    """Consecutive id ranges that each hold at most ``size`` queued rows, in one query."""
    table = Delivery._meta.db_table
    sql = f"""
        SELECT MIN(id), MAX(id) FROM (
            SELECT id, (ROW_NUMBER() OVER (ORDER BY id) - 1) / %s AS chunk
            FROM {table} WHERE send_id = %s AND status = %s
        ) numbered
        GROUP BY chunk ORDER BY chunk
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [size, send_id, Delivery.Status.QUEUED])
        return [(int(first), int(last)) for first, last in cursor.fetchall()]


def _ranges_of(ids: Iterable[int], *, size: int) -> list[tuple[int, int]]:
    ordered = sorted(ids)
    return [
        (ordered[i], ordered[min(i + size, len(ordered)) - 1]) for i in range(0, len(ordered), size)
    ]
