"""The batch loop: claim a range of rows, then pace, render and hand them to the send's channel.

The Delivery row is the truth. A batch claims its rows with a conditional UPDATE, asks for the
Send's status before every hand-over to the channel (a round of at most one message per free
SMTP session, or one API call on an ESP), journals each message the channel accepted in Redis,
and writes outcomes every few messages (``outcomes``), waiting out a database that went away.
The send loop itself, with many messages in flight at once, is ``sending``. Only the channel
(``campaigns.services.channels``) knows SMTP or HTTP.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.db.models.base import ModelState
from django.utils import timezone

from campaigns.models import Delivery, Recipient, Send, Service
from campaigns.services.channels import Channel, channel_for
from campaigns.services.delivery.compiled import compiled_for_send
from campaigns.services.delivery.control import send_close_if_done
from campaigns.services.delivery.health import send_wait_begin, send_wait_end, send_wait_sync
from campaigns.services.delivery.lease import BatchLease
from campaigns.services.delivery.outcomes import (
    BatchResult,
    NextStep,
    Pending,
    journal_apply,
    outcomes_write,
    rows_release,
    rows_skip,
)
from campaigns.services.delivery.sending import Loop, loop_land, loop_step
from campaigns.services.delivery.state import ControlProbe, journal_drop
from campaigns.services.guardrails import send_guard
from campaigns.services.pacing import Pacer

logger = logging.getLogger(__name__)

# Outcomes are written every OPSDASH_DELIVERY_FLUSH_EVERY messages, or after this many seconds
# when a message is waiting: a rate-limited send (30 a minute) would otherwise leave its rows,
# and so the send page, minutes behind. At full speed the count wins and this costs nothing.
FLUSH_SECONDS = 2.0
# The guardrail check (a query) and the pacer's sync (a Redis call) follow an outcome write when
# it holds a failure or a deferral (what trips a guardrail or cuts a rate), and otherwise at most
# this often and at the end of the batch: against a fast relay a batch writes outcomes many
# times a second, nearly all of them clean.
CHECK_SECONDS = 0.5
# With a failure or a deferral among them, outcomes are written within this many messages, not
# OPSDASH_DELIVERY_FLUSH_EVERY: the guardrails and the shared rates act on what is written, so
# a send going bad is caught as early with large writes as with small ones.
TROUBLE_FLUSH_EVERY = 50

# A recipient whose status changed to one of these after the launch is skipped, not mailed.
SUPPRESSED_SKIP: dict[str, Delivery.SkipReason] = {
    Recipient.Status.UNSUBSCRIBED: Delivery.SkipReason.UNSUBSCRIBED,
    Recipient.Status.BOUNCED: Delivery.SkipReason.BOUNCED,
    Recipient.Status.COMPLAINED: Delivery.SkipReason.COMPLAINED,
}


def batch_deliver(*, send_id: int, first_id: int, last_id: int, task_id: str) -> BatchResult:
    """Sends one range of a Send's rows; the result's ``next_step`` tells the task what next.

    1. Stop at once unless the Send is running (a cancelled one skips what is left in range).
    2. Take the batch lease; if another run of this task holds it, report BUSY.
    3. Record what an earlier run of this task sent but could not write (its journal).
    4. Claim the range's queued rows (conditional UPDATE: a second run finds nothing to claim);
       skip those whose recipient was deleted, unsubscribed or suppressed since the launch.
    5. Send (``sending``): provider by provider, take rate tokens, check the Send is still
       running, render, hand groups to the channel (one row on SMTP, one API call's worth on
       an ESP with a batch endpoint), many at once on a channel with several connections;
       record each result as it comes back and journal what the channel accepted.
    6. Write outcomes every few messages (waiting out a lost database connection); transient
       failures go back to ``queued``.
    7. When stopped, wait for the messages in flight and record them, hand back the claimed
       rows never handed over, drop the journal, close the Send when nothing is left.
    """
    send = Send.objects.select_related("campaign").get(pk=send_id)
    result = BatchResult()
    if send.status != Send.Status.RUNNING:
        _stop(result, send.status)
        if send.status == Send.Status.CANCELLED:
            _skip_range(send_id=send_id, first_id=first_id, last_id=last_id, result=result)
        return result
    lease = BatchLease(task_id, send_id)
    if not lease.acquire():
        result.next_step = NextStep.BUSY
        return result
    try:
        journal_apply(task_id=task_id, send_id=send_id)
        if claimed := _claim(send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id):
            rows = _claimed_rows(
                send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id
            )
            if len(rows) < claimed:
                _skip_orphans(send_id=send_id, task_id=task_id, rows=rows, result=result)
            rows = _skip_suppressed(send_id=send_id, task_id=task_id, rows=rows, result=result)
            watch = _Watch(
                send_id, waiting=bool(send.waiting_for) or send_wait_sync(send_id=send_id)
            )
            _send_rows(
                send=send, rows=rows, task_id=task_id, lease=lease, watch=watch, result=result
            )
        journal_drop(task_id=task_id)  # every outcome is written
    finally:
        lease.release()
    send_close_if_done(send_id=send_id)
    result.settle()
    return result


def _stop(result: BatchResult, status: str) -> None:
    result.next_step, result.stopped = NextStep.STOPPED, status


def _claim(*, send_id: int, first_id: int, last_id: int, task_id: str) -> int:
    """Marks the range's queued rows as ours, and takes back our own rows a dead run left.

    Only called under the batch lease, so rows in ``sending`` with our task id belong to a run
    that is gone (killed, or cut off from the broker): they go out again, and those are the
    only messages that can ever be duplicated.
    """
    rows = claimable(send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id)
    return rows.update(status=Delivery.Status.SENDING, claimed_at=timezone.now(), task_id=task_id)


def claimable(*, send_id: int, first_id: int, last_id: int, task_id: str) -> QuerySet[Delivery]:
    """The rows a batch claims: the range's queued rows and its own rows left ``sending``.

    Each half is one range of the (send, status, id) index, so a claim reads its own rows
    only, however many the send has.
    """
    return Delivery.objects.filter(
        Q(status=Delivery.Status.QUEUED) | Q(status=Delivery.Status.SENDING, task_id=task_id),
        send_id=send_id,
        id__gte=first_id,
        id__lte=last_id,
    )


# What a batch reads of its claimed rows and their recipients (the rest stays deferred).
_ROW_FIELDS = ("id", "send_id", "recipient_id", "attempts", "last_error")
_RECIPIENT_FIELDS = ("email", "first_name", "last_name", "attributes", "status")
_RECIPIENT_CACHE = Delivery._meta.get_field("recipient")


def _claimed_rows(*, send_id: int, first_id: int, last_id: int, task_id: str) -> list[Delivery]:
    """The claimed rows with their recipients, in id order (the join leaves out a row whose
    recipient was deleted meanwhile)."""
    query = (
        Delivery.objects.filter(send_id=send_id, task_id=task_id, status=Delivery.Status.SENDING)
        .filter(id__gte=first_id, id__lte=last_id)
        .order_by("id")
        .values_list(*_ROW_FIELDS, *(f"recipient__{name}" for name in _RECIPIENT_FIELDS))
    )
    return [_row_of(values, db=query.db) for values in query]


def _row_of(values: tuple[Any, ...], *, db: str) -> Delivery:
    """A Delivery and its Recipient as ``select_related(...).only(...)`` would load them.

    Built from a values_list tuple: Django's ``from_db`` with deferred fields costs about four
    times as much per row, and every message of a send goes through here once. Fields not
    read are deferred as usual (loaded on first access).
    """
    split = len(_ROW_FIELDS)
    row = _loaded(Delivery, dict(zip(_ROW_FIELDS, values[:split], strict=True)), db=db)
    recipient_values = dict(zip(_RECIPIENT_FIELDS, values[split:], strict=True))
    recipient = _loaded(Recipient, {"id": row.recipient_id, **recipient_values}, db=db)
    _RECIPIENT_CACHE.set_cached_value(row, recipient)
    return row


def _loaded[M: Model](model: type[M], attrs: dict[str, Any], *, db: str) -> M:
    instance = model.__new__(model)
    instance.__dict__.update(attrs)
    instance._state = ModelState()
    instance._state.adding, instance._state.db = False, db
    return instance


def _skip_orphans(*, send_id: int, task_id: str, rows: list[Delivery], result: BatchResult) -> None:
    """Claimed rows the recipient join did not return: the recipient was deleted meanwhile."""
    orphans = Delivery.objects.filter(
        send_id=send_id, task_id=task_id, status=Delivery.Status.SENDING
    ).exclude(pk__in=[row.pk for row in rows])
    reason = Delivery.SkipReason.RECIPIENT_DELETED
    rows_skip(send_id=send_id, rows=orphans, result=result, reason=reason)


def _skip_suppressed(
    *, send_id: int, task_id: str, rows: list[Delivery], result: BatchResult
) -> list[Delivery]:
    """Skips the rows whose recipient unsubscribed or was suppressed after the launch; returns
    the rest. The status came with the claimed rows' join: no query unless a row is skipped."""
    keep: list[Delivery] = []
    by_reason: dict[Delivery.SkipReason, list[int]] = {}
    for row in rows:
        reason = SUPPRESSED_SKIP.get(row.recipient.status)
        if reason is None:
            keep.append(row)
        else:
            by_reason.setdefault(reason, []).append(row.pk)
    for reason, ids in by_reason.items():
        ours = Delivery.objects.filter(pk__in=ids, task_id=task_id, status=Delivery.Status.SENDING)
        rows_skip(send_id=send_id, rows=ours, result=result, reason=reason)
    return keep


def _skip_range(*, send_id: int, first_id: int, last_id: int, result: BatchResult) -> None:
    """Rows a batch requeued just as the send was cancelled end up skipped too."""
    queued = Delivery.objects.filter(
        send_id=send_id, status=Delivery.Status.QUEUED, id__gte=first_id, id__lte=last_id
    )
    rows_skip(send_id=send_id, rows=queued, result=result, reason=Delivery.SkipReason.CANCELLED)


@dataclass
class _Watch:
    """A batch's view of the services it needs, reported to the Send at most once per flush."""

    send_id: int
    waiting: bool  # the Send shows a wait, or Redis keeps a database outage for it
    redis_ok: bool = True  # whether the last message's status came from Redis
    redis_told: bool = False
    database_told: bool = False
    checked_at: float = 0.0  # time.monotonic() of the last guardrail check and pacer sync
    unchecked: bool = False  # outcomes written since the last guardrail check

    def database_lost(self, since: datetime) -> None:
        if not self.database_told:
            send_wait_begin(send_id=self.send_id, service=Service.DATABASE, since=since)
            self.database_told = self.waiting = True

    def after_flush(self) -> None:
        if not self.redis_ok and not self.redis_told:
            send_wait_begin(send_id=self.send_id, service=Service.REDIS)
            self.redis_told = self.waiting = True
        elif self.waiting and self.redis_ok:
            send_wait_end(send_id=self.send_id)
            self.waiting = self.redis_told = self.database_told = False


def _group_size(channel: Channel, pacer: Pacer) -> int:
    """Messages per hand-over to the channel.

    Never more than an API call should carry (a crash re-sends at most the groups in flight)
    or a flush, nor than any rate bucket holds, even this process's share of it while Redis is
    out: a group takes all its tokens at once, and a bucket never holds more than its capacity.
    """
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    capacities = [int(max(1.0, capacity / share)) for capacity in pacer.capacities]
    limits = (settings.OPSDASH_ESP_MESSAGES_PER_CALL, settings.OPSDASH_DELIVERY_FLUSH_EVERY)
    return max(1, min(channel.max_batch, *limits, *capacities))


def _send_rows(
    *,
    send: Send,
    rows: list[Delivery],
    task_id: str,
    lease: BatchLease,
    watch: _Watch,
    result: BatchResult,
) -> None:
    compiled, frame = compiled_for_send(send)
    channel = channel_for(send.channel)
    pacer = Pacer(send=send, channel=channel)
    control = ControlProbe(send.pk, task_id)
    loop = Loop(
        lease, channel, control, compiled, frame, pacer, Pending(), _group_size(channel, pacer)
    )
    loop.lanes_fill(rows)
    flushed_at = time.monotonic()
    try:
        with channel, control:
            try:
                while loop_step(loop, result):
                    if _flush_due(loop, flushed_at):
                        control.push()  # the journal holds every accepted message first
                        watch.redis_ok = control.connected or not settings.REDIS_URL
                        _flush(send_id=send.pk, loop=loop, watch=watch, result=result)
                        flushed_at = time.monotonic()
            finally:
                loop_land(loop, result)  # also when interrupted: what was sent is recorded
                control.push()
            watch.redis_ok = control.connected or not settings.REDIS_URL
    finally:
        # Also when the loop is interrupted (time limit, lost database): what was sent is
        # recorded first, retrying on a fresh connection while the database is away, and only
        # then are the rows the loop did not hand over given back. If the database stays away,
        # DeliveryInterrupted leaves the rows ``sending`` under this task id, and the journal
        # tells the task's next run which of them the channel accepted.
        _flush(send_id=send.pk, loop=loop, watch=watch, result=result, final=True)
        if lease.held:  # a run that lost its batch to another leaves the rows to that run
            rows_release(send_id=send.pk, task_id=task_id, rows=loop.unsent(), result=result)


def _flush_due(loop: Loop, flushed_at: float) -> bool:
    """Every FLUSH_EVERY results (TROUBLE_FLUSH_EVERY with a failure or deferral among
    them), every FLUSH_SECONDS, and at once without the journal (Redis out): then each
    accepted message is written before anything more goes."""
    return (
        loop.recorded >= settings.OPSDASH_DELIVERY_FLUSH_EVERY
        or (loop.troubled and loop.recorded >= TROUBLE_FLUSH_EVERY)
        or time.monotonic() - flushed_at >= FLUSH_SECONDS
        or (loop.recorded > 0 and not (loop.control.connected or not settings.REDIS_URL))
    )


def _flush(
    *, send_id: int, loop: Loop, watch: _Watch, result: BatchResult, final: bool = False
) -> None:
    # A failure or deferral among these outcomes (what trips a guardrail or cuts a rate).
    alarm = loop.pacer.deferred or loop.troubled
    loop.recorded, loop.troubled = 0, False
    if loop.pending.rows:
        outcomes_write(
            send_id=send_id,
            pending=loop.pending,
            result=result,
            reconnected=loop.lease.retake,
            interrupted=watch.database_lost,
        )
        watch.after_flush()
        watch.unchecked = True
    now = time.monotonic()
    if final or alarm or now - watch.checked_at >= CHECK_SECONDS:
        if watch.unchecked:
            send_guard(send_id=send_id)
            watch.unchecked = False
        loop.pacer.sync()
        watch.checked_at = now
