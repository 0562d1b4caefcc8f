"""The batch loop: claim a range of rows, then pace, render and hand them to the send's channel.

The Delivery row is the truth. A batch claims its rows with a conditional UPDATE, asks for the
Send's status before every hand-over to the channel (each message on SMTP, each API call on an
ESP), journals each message the channel accepted in Redis, and writes outcomes every few
messages (``outcomes``), waiting out a database that went away. Only the channel
(``campaigns.services.channels``) knows SMTP or HTTP.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Delivery, Recipient, Send, Service
from campaigns.services.audiences import unsubscribe_url
from campaigns.services.channels import Channel, ChannelResult, Composed, Outgoing, channel_for
from campaigns.services.delivery.compiled import compiled_for_send
from campaigns.services.delivery.control import send_close_if_done
from campaigns.services.delivery.health import send_wait_begin, send_wait_end, send_wait_sync
from campaigns.services.delivery.lease import BatchLease
from campaigns.services.delivery.outcomes import (
    BatchResult,
    NextStep,
    Pending,
    journal_apply,
    journal_entry,
    outcome_record,
    outcomes_write,
    rows_release,
    rows_skip,
)
from campaigns.services.delivery.state import ControlProbe, journal_drop
from campaigns.services.guardrails import send_guard
from campaigns.services.mime import WireFrame
from campaigns.services.pacing import Grant, Pacer, Provider, WaitReason, provider_of
from campaigns.services.rendering import (
    CompiledCampaign,
    message_render,
    recipient_fields,
)
from campaigns.services.smtp import Outcome

logger = logging.getLogger(__name__)

# Outcomes are written every OPSDASH_DELIVERY_FLUSH_EVERY messages, or after this many seconds
# when a message is waiting: a rate-limited send (30 a minute) would otherwise leave its rows,
# and so the send page, minutes behind. At full speed the count wins and this costs nothing.
FLUSH_SECONDS = 2.0

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
    5. For each group of rows (one row on SMTP, one API call's worth on an ESP with a batch
       endpoint): render, check the Send is still running, take a rate token per message,
       hand the group to the channel, journal what it accepted.
    6. Write outcomes every few messages (waiting out a lost database connection); transient
       failures go back to ``queued``.
    7. Hand back unsent claimed rows when stopped, drop the journal, close the Send when
       nothing is left.
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
        journal_apply(task_id=task_id)
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
    return Delivery.objects.filter(
        Q(status=Delivery.Status.QUEUED) | Q(status=Delivery.Status.SENDING, task_id=task_id),
        send_id=send_id,
        id__gte=first_id,
        id__lte=last_id,
    ).update(status=Delivery.Status.SENDING, claimed_at=timezone.now(), task_id=task_id)


def _claimed_rows(*, send_id: int, first_id: int, last_id: int, task_id: str) -> list[Delivery]:
    rows = (
        Delivery.objects.filter(send_id=send_id, task_id=task_id, status=Delivery.Status.SENDING)
        .filter(id__gte=first_id, id__lte=last_id)
        .select_related("recipient")
        .only(
            "id",
            "send_id",
            "recipient_id",
            "attempts",
            "last_error",
            "recipient__email",
            "recipient__first_name",
            "recipient__last_name",
            "recipient__attributes",
            "recipient__status",
        )
        .order_by("id")
    )
    return list(rows)


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


@dataclass
class _Loop:
    """What the send loop needs for every group of one batch."""

    lease: BatchLease
    channel: Channel
    control: ControlProbe
    compiled: CompiledCampaign
    frame: WireFrame
    pacer: Pacer
    pending: Pending
    transient_streak: int = 0
    # Claimed rows to hand back: the channel never got them (refused before sending).
    back: list[Delivery] = field(default_factory=list)


def _group_size(channel: Channel, pacer: Pacer) -> int:
    """Messages per hand-over to the channel.

    Never more than a flush (a crash re-sends at most the group in flight), nor than any rate
    bucket holds, even this process's share of it while Redis is out: a group takes all its
    tokens at once, and a bucket never holds more than its capacity.
    """
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    capacities = [int(max(1.0, capacity / share)) for capacity in pacer.capacities]
    return max(1, min(channel.max_batch, settings.OPSDASH_DELIVERY_FLUSH_EVERY, *capacities))


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
    flush_every = settings.OPSDASH_DELIVERY_FLUSH_EVERY
    pacer = Pacer(send=send, channel=channel)
    size = _group_size(channel, pacer)
    pending = Pending()
    loop = _Loop(lease, channel, ControlProbe(send.pk, task_id), compiled, frame, pacer, pending)
    reached = 0
    flushed_at = time.monotonic()
    try:
        with channel, loop.control as control:
            while reached < len(rows):
                group = rows[reached : reached + size]
                going_on = _send_group(loop=loop, rows=group, result=result)
                reached += len(group)
                if not going_on:
                    break
                # Without the journal (Redis out) every accepted message is written at once.
                if (
                    len(pending.rows) >= flush_every
                    or time.monotonic() - flushed_at >= FLUSH_SECONDS
                    or not (control.connected or not settings.REDIS_URL)
                ):
                    control.push()  # the journal holds every accepted message before the write
                    watch.redis_ok = control.connected or not settings.REDIS_URL
                    _flush(
                        send_id=send.pk, pending=pending, lease=lease, watch=watch, result=result
                    )
                    pacer.sync()
                    flushed_at = time.monotonic()
                if loop.transient_streak >= settings.OPSDASH_DELIVERY_TRANSIENT_STREAK:
                    result.deferred = "the server keeps answering with temporary errors"
                    break
            watch.redis_ok = control.connected or not settings.REDIS_URL
    finally:
        # Also when the loop is interrupted (time limit, lost database): what was sent is
        # recorded first, retrying on a fresh connection while the database is away, and only
        # then are the rows the loop did not reach handed back. If the database stays away,
        # DeliveryInterrupted leaves the rows ``sending`` under this task id, and the journal
        # tells the task's next run which of them the channel accepted.
        _flush(send_id=send.pk, pending=pending, lease=lease, watch=watch, result=result)
        pacer.sync()
        if lease.held:  # a run that lost its batch to another leaves the rows to that run
            back = loop.back + rows[reached:]
            rows_release(send_id=send.pk, task_id=task_id, rows=back, result=result)


def _flush(
    *, send_id: int, pending: Pending, lease: BatchLease, watch: _Watch, result: BatchResult
) -> None:
    if not pending.rows:
        return
    outcomes_write(
        send_id=send_id,
        pending=pending,
        result=result,
        reconnected=lease.retake,
        interrupted=watch.database_lost,
    )
    watch.after_flush()
    send_guard(send_id=send_id)


def _send_group(*, loop: _Loop, rows: list[Delivery], result: BatchResult) -> bool:
    """Sends a group of rows in one hand-over and records their outcomes; False when the
    batch must stop (rows of the group not handed over go to ``loop.back``).

    The Send's status is checked right before the group goes out; the question to Redis is
    asked first and the group rendered while the answer travels.
    """
    loop.lease.renew()
    loop.control.ask()
    composed: list[tuple[Delivery, Composed]] = []
    problems: list[tuple[Delivery, ChannelResult]] = []
    for row in rows:
        try:
            composed.append((row, _compose(loop=loop, row=row)))
        except Exception as exc:  # one recipient's data must not stop the batch
            logger.exception("Cannot compose delivery %s", row.pk)
            text = f"cannot compose the message: {exc}"
            problems.append((row, ChannelResult(Outcome.PERMANENT, 0, text)))
    if (state := loop.control.answer()) != Send.Status.RUNNING:
        _stop(result, state)
        loop.back += rows
        return False
    for row, problem in problems:
        outcome_record(row=row, outcome=problem, pending=loop.pending)
    if not composed:
        return True
    if (grant := _pace(loop.pacer, [row for row, _ in composed])).granted is False:
        result.next_step, result.retry_in = _NEXT_STEP[grant.reason], grant.wait
        result.deferred = "warm-up quota" if grant.reason is WaitReason.WARMUP else "rate limit"
        loop.back += [row for row, _ in composed]
        return False
    outcomes = loop.channel.send([message for _, message in composed])
    return _record_group(loop=loop, sent=composed, outcomes=outcomes, result=result)


_NEXT_STEP = {WaitReason.RATE: NextStep.RATE_LIMITED, WaitReason.WARMUP: NextStep.QUOTA_WAIT}


def _pace(pacer: Pacer, rows: list[Delivery]) -> Grant:
    """Takes the group's tokens, provider by provider, sleeping out short waits."""
    counts: dict[Provider, int] = {}
    for row in rows:
        provider = provider_of(row.recipient.email)
        counts[provider] = counts.get(provider, 0) + 1
    for provider, n in counts.items():
        while not (grant := pacer.take(provider, n)).granted:
            if (
                grant.reason is not WaitReason.RATE
                or grant.wait > settings.OPSDASH_RATE_MAX_WAIT_SECONDS
            ):
                return grant
            time.sleep(grant.wait)
    return Grant(True)


def _record_group(
    *,
    loop: _Loop,
    sent: list[tuple[Delivery, Composed]],
    outcomes: list[ChannelResult],
    result: BatchResult,
) -> bool:
    """Records each message's outcome and journals the accepted ones; a message the channel
    never got (no connection, throttled) goes back, and the batch stops after this group."""
    going_on = True
    for (row, _), outcome in zip(sent, outcomes, strict=True):
        loop.pacer.observe(provider_of(row.recipient.email), outcome)
        if not outcome.attempted:
            result.deferred, going_on = outcome.summary, False
            loop.back.append(row)
            continue
        if outcome.outcome is Outcome.SENT:
            loop.control.note(row.pk, journal_entry(outcome))
        outcome_record(row=row, outcome=outcome, pending=loop.pending)
        transient = outcome.outcome is Outcome.TRANSIENT
        loop.transient_streak = loop.transient_streak + 1 if transient else 0
    return going_on


def _compose(*, loop: _Loop, row: Delivery) -> Composed:
    recipient = row.recipient
    url = unsubscribe_url(recipient_id=row.recipient_id, send_id=row.send_id)
    fields = recipient_fields(recipient)
    rendered = message_render(loop.compiled, recipient=fields, unsubscribe_url=url)
    outgoing = Outgoing(
        delivery_id=row.pk,
        frame=loop.frame,
        rendered=rendered,
        to_email=recipient.email,
        to_name=recipient.full_name,
        message_id=row.message_id,
        unsubscribe_url=url,
    )
    return loop.channel.compose(outgoing)
