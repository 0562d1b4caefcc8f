"""The delivery path: launch a Send, dispatch its batches, send a batch, close, pause, reap.

The Delivery row is the truth. A batch claims its rows with a conditional UPDATE, sends over one
SMTP session, and writes outcomes every few messages, so a killed worker re-sends at most the
messages it had in flight; the reaper hands rows stuck in ``sending`` back to the queue.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery, Recipient, Send, Subscription, TaskLink
from campaigns.services import ratelimit
from campaigns.services.audiences import SUPPRESSED_STATUSES, recipient_suppress, unsubscribe_url
from campaigns.services.mime import WireFrame, wire_frame, wire_message
from campaigns.services.rendering import (
    CompiledCampaign,
    campaign_compile,
    message_build,
    message_render,
)
from campaigns.services.smtp import Outcome, SmtpResult, SmtpSession

logger = logging.getLogger(__name__)

# Publishes one batch: (send_id, first_id, last_id, task_id). Injected by the task layer so
# services never import Celery tasks.
BatchPublisher = Callable[[int, int, int, str], None]
# Publishes a launch: (campaign_id, occurrence_key, trigger, triggered_by_id).
LaunchPublisher = Callable[[int, str, str, int | None], None]


class IllegalTransition(ValueError):
    pass


# --- Launch ---------------------------------------------------------------------------------


def send_launch(
    *,
    campaign_id: int,
    occurrence_key: str,
    trigger: str,
    publish: BatchPublisher,
    triggered_by_id: int | None = None,
) -> Send | None:
    """Creates the Send for one occurrence and queues its deliveries; None if it exists already.

    1. Lock the campaign row so concurrent launches of one campaign run one after another.
    2. Create the Send; the (campaign, occurrence_key) constraint makes a repeat a no-op.
    3. Materialise every Delivery row in one INSERT ... SELECT, suppressed addresses left out.
    4. After commit, publish one batch task per id range.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if Send.objects.filter(campaign=campaign, occurrence_key=occurrence_key).exists():
            return None
        now = timezone.now()
        send = Send.objects.create(
            campaign=campaign,
            occurrence_key=occurrence_key,
            trigger=trigger,
            triggered_by_id=triggered_by_id,
            started_at=now,
            last_progress_at=now,
        )
        send.total = _materialise_deliveries(send_id=send.pk, campaign_id=campaign.pk)
        send.save(update_fields=["total"])
        if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED) and not (
            campaign.is_recurring
        ):
            campaign.status = Campaign.Status.SENDING
            campaign.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda: _send_started(send_id=send.pk, publish=publish))
    if send.total == 0:
        send_close_if_done(send_id=send.pk)
    return send


def _send_started(*, send_id: int, publish: BatchPublisher) -> None:
    # The delivery loop reads the status from the cache: a launch is a transition too.
    cache.set(_control_key(send_id), Send.Status.RUNNING, timeout=3600)
    send_dispatch(send_id=send_id, publish=publish)


def _materialise_deliveries(*, send_id: int, campaign_id: int) -> int:
    d, r, s = Delivery._meta.db_table, Recipient._meta.db_table, Subscription._meta.db_table
    through = Campaign.audiences.through._meta.db_table
    suppressed = ", ".join(["%s"] * len(SUPPRESSED_STATUSES))
    sql = f"""
        INSERT INTO {d}
            (send_id, recipient_id, status, attempts, last_error, smtp_response, task_id)
        SELECT %s, r.id, %s, 0, '', '', ''
        FROM {r} r
        WHERE r.status NOT IN ({suppressed})
          AND EXISTS (
            SELECT 1 FROM {s} s
            WHERE s.recipient_id = r.id AND s.status = %s
              AND s.audience_id IN (SELECT audience_id FROM {through} WHERE campaign_id = %s))
        ORDER BY r.id
    """
    params: list[Any] = [send_id, Delivery.Status.QUEUED, *SUPPRESSED_STATUSES]
    params += [Subscription.Status.SUBSCRIBED, campaign_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


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


def send_dispatch(
    *, send_id: int, publish: BatchPublisher, only_ids: Iterable[int] | None = None
) -> int:
    """Publishes a batch task per range of queued rows (or of ``only_ids``); returns how many.

    Publishing a range twice is harmless: each row is claimed by one batch only.
    """
    size = settings.OPSDASH_DELIVERY_BATCH_SIZE
    campaign_id = Send.objects.values_list("campaign_id", flat=True).get(pk=send_id)
    if only_ids is None:
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
    for (first_id, last_id), task_id in zip(ranges, task_ids, strict=True):
        publish(send_id, first_id, last_id, task_id)
    return len(ranges)


# --- One batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    requeued: int = 0
    # "paused" or "cancelled" when the send stopped; "busy" when another run of this same task
    # still holds the batch; "" otherwise.
    stopped: str = ""
    # Seconds the caller should wait before trying the requeued rows again, when known (the rate
    # limit or an unreachable server); 0 means "use the usual backoff".
    retry_after: float = 0.0
    deferred: str = ""

    def as_dict(self) -> dict[str, int | str]:
        """The small result kept in the batch's TaskResult row."""
        result: dict[str, int | str] = {
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "requeued": self.requeued,
        }
        if self.stopped:
            result["stopped"] = self.stopped
        if self.deferred:
            result["deferred"] = self.deferred
        return result


@dataclass
class _Pending:
    """Outcomes not yet written; flushed every few messages."""

    rows: list[Delivery] = field(default_factory=list)
    no_mailbox: list[int] = field(default_factory=list)


_compiled_cache: dict[tuple[int, str], tuple[CompiledCampaign, WireFrame]] = {}


def _compiled_for(campaign: Campaign) -> CompiledCampaign:
    return _compiled_with_frame(campaign)[0]


def _compiled_with_frame(campaign: Campaign) -> tuple[CompiledCampaign, WireFrame]:
    """Templates compiled (and fixed headers encoded) once per campaign version per process."""
    key = (campaign.pk, campaign.updated_at.isoformat())
    cached = _compiled_cache.get(key)
    if cached is None:
        if len(_compiled_cache) > 64:
            _compiled_cache.clear()
        compiled = campaign_compile(
            campaign_id=campaign.pk,
            name=campaign.name,
            subject=campaign.subject,
            from_email=campaign.from_email,
            reply_to=campaign.reply_to,
            text_body=campaign.text_body,
            html_body=campaign.html_body,
        )
        cached = _compiled_cache[key] = (compiled, wire_frame(compiled))
    return cached


class BatchLease:
    """At most one run of a batch task works on its rows at a time.

    RabbitMQ redelivers a batch whose worker died or lost its connection, possibly while the
    first run is still sending. The lease (a cache key with a short TTL, renewed while the run
    works) tells the second run to wait, and tells the reaper that rows in ``sending`` are
    still in someone's hands however old their claim is.
    """

    def __init__(self, task_id: str) -> None:
        self.key = _lease_key(task_id)
        self.ttl = settings.OPSDASH_DELIVERY_HEARTBEAT_SECONDS
        self.token = uuid.uuid4().hex
        self.renewed_at = 0.0

    def acquire(self) -> bool:
        if not cache.add(self.key, self.token, timeout=self.ttl):
            return False
        self.renewed_at = time.monotonic()
        return True

    def renew(self) -> None:
        if time.monotonic() - self.renewed_at >= self.ttl / 4:
            cache.set(self.key, self.token, timeout=self.ttl)
            self.renewed_at = time.monotonic()

    def release(self) -> None:
        if cache.get(self.key) == self.token:
            cache.delete(self.key)


def _lease_key(task_id: str) -> str:
    return f"batch:{task_id}:lease"


def batch_lease_held(*, task_id: str) -> bool:
    return cache.get(_lease_key(task_id)) is not None


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
        )
        .order_by("id")
    )
    return list(rows)


def batch_deliver(*, send_id: int, first_id: int, last_id: int, task_id: str) -> BatchResult:
    """Sends one range of a Send's rows.

    1. Stop at once unless the Send is running (a cancelled one skips what is left in range).
    2. Take the batch lease; if another run of this task holds it, report "busy".
    3. Claim the range's queued rows (conditional UPDATE: a second run finds nothing to claim).
    4. For each row: check the Send is still running, take rate tokens, render, send.
    5. Write outcomes every few messages; transient failures go back to ``queued``.
    6. Hand back unsent claimed rows when stopped; close the Send when nothing is left.
    """
    send = Send.objects.select_related("campaign").get(pk=send_id)
    result = BatchResult()
    if send.status != Send.Status.RUNNING:
        result.stopped = send.status
        if send.status == Send.Status.CANCELLED:
            _skip_range(send_id=send_id, first_id=first_id, last_id=last_id, result=result)
        return result
    lease = BatchLease(task_id)
    if not lease.acquire():
        result.stopped = "busy"
        return result
    try:
        if _claim(send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id):
            rows = _claimed_rows(
                send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id
            )
            _send_rows(send=send, rows=rows, task_id=task_id, lease=lease, result=result)
    finally:
        lease.release()
    send_close_if_done(send_id=send_id)
    return result


def _skip_range(*, send_id: int, first_id: int, last_id: int, result: BatchResult) -> None:
    """Rows a batch requeued just as the send was cancelled end up skipped too."""
    skipped = Delivery.objects.filter(
        send_id=send_id, status=Delivery.Status.QUEUED, id__gte=first_id, id__lte=last_id
    ).update(status=Delivery.Status.SKIPPED, updated_at=timezone.now())
    if skipped:
        Send.objects.filter(pk=send_id).update(skipped_count=F("skipped_count") + skipped)
    result.skipped += skipped


@dataclass
class _Loop:
    """What the send loop needs for every message of one batch."""

    send: Send
    task_id: str
    lease: BatchLease
    smtp: SmtpSession
    compiled: CompiledCampaign
    frame: WireFrame
    buckets: list[ratelimit.BucketSpec]
    pending: _Pending = field(default_factory=_Pending)
    transient_streak: int = 0


def _send_rows(
    *, send: Send, rows: list[Delivery], task_id: str, lease: BatchLease, result: BatchResult
) -> None:
    compiled, frame = _compiled_with_frame(send.campaign)
    buckets = ratelimit.buckets_for(
        campaign_id=send.campaign_id, campaign_per_minute=send.campaign.rate_limit_per_minute
    )
    flush_every = settings.OPSDASH_DELIVERY_FLUSH_EVERY
    done = 0
    with SmtpSession() as smtp:
        loop = _Loop(send, task_id, lease, smtp, compiled, frame, buckets)
        for row in rows:
            if not _send_one(loop=loop, row=row, result=result):
                break
            done += 1
            if len(loop.pending.rows) >= flush_every:
                _flush(send_id=send.pk, pending=loop.pending, result=result)
            if loop.transient_streak >= settings.OPSDASH_DELIVERY_TRANSIENT_STREAK:
                result.deferred = "the SMTP server keeps answering with temporary errors"
                break
    _flush(send_id=send.pk, pending=loop.pending, result=result)
    _release(send_id=send.pk, task_id=task_id, rows=rows[done:], result=result)


def _send_one(*, loop: _Loop, row: Delivery, result: BatchResult) -> bool:
    """Sends one row and records its outcome; False when the batch must stop before it."""
    loop.lease.renew()
    if (state := send_control_state(send_id=loop.send.pk)) != Send.Status.RUNNING:
        result.stopped = state
        return False
    wait = ratelimit.tokens_take(loop.buckets, max_wait=settings.OPSDASH_RATE_MAX_WAIT_SECONDS)
    if wait > 0:
        result.deferred, result.retry_after = "rate limit", wait
        return False
    outcome = _deliver_one(loop=loop, row=row)
    if not outcome.attempted:
        result.deferred = outcome.summary
        return False
    _record(row=row, outcome=outcome, pending=loop.pending)
    transient = outcome.outcome is Outcome.TRANSIENT
    loop.transient_streak = loop.transient_streak + 1 if transient else 0
    return True


def _deliver_one(*, loop: _Loop, row: Delivery) -> SmtpResult:
    recipient = row.recipient
    url = unsubscribe_url(recipient_id=row.recipient_id, send_id=row.send_id)
    fields = {
        "email": recipient.email,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "attributes": recipient.attributes,
    }
    rendered = message_render(loop.compiled, recipient=fields, unsubscribe_url=url)
    data = wire_message(
        loop.frame,
        rendered,
        to_email=recipient.email,
        to_name=recipient.full_name,
        message_id=row.message_id,
        unsubscribe_url=url,
    )
    return loop.smtp.send(from_addr=loop.frame.envelope_from, to_addr=recipient.email, data=data)


def _record(*, row: Delivery, outcome: SmtpResult, pending: _Pending) -> None:
    now = timezone.now()
    row.attempts += 1
    row.updated_at = now
    if outcome.outcome is Outcome.SENT:
        row.status, row.sent_at, row.smtp_response = Delivery.Status.SENT, now, outcome.summary
    elif (
        outcome.outcome is Outcome.TRANSIENT
        and row.attempts < settings.OPSDASH_DELIVERY_MAX_ATTEMPTS
    ):
        row.status, row.last_error = Delivery.Status.QUEUED, _attempt_error(row, outcome)
    else:
        row.status, row.last_error = Delivery.Status.FAILED, _attempt_error(row, outcome)
        row.smtp_response = outcome.summary
        if outcome.outcome is Outcome.NO_MAILBOX:
            pending.no_mailbox.append(row.recipient_id)
    pending.rows.append(row)


def _attempt_error(row: Delivery, outcome: SmtpResult) -> str:
    """Every attempt's error is kept, one line each, newest last."""
    line = f"attempt {row.attempts} at {row.updated_at:%Y-%m-%d %H:%M:%S}: {outcome.summary}"
    return f"{row.last_error}\n{line}".strip()[-4000:]


def _flush(*, send_id: int, pending: _Pending, result: BatchResult) -> None:
    """Writes pending outcomes in one short transaction.

    Sent rows (nearly all of them) share one UPDATE per SMTP reply text; the rest go through
    ``bulk_update``. The Send's counters move in the same transaction, so they match the rows.
    """
    if not pending.rows:
        return
    sent = [row for row in pending.rows if row.status == Delivery.Status.SENT]
    others = [row for row in pending.rows if row.status != Delivery.Status.SENT]
    failed = sum(row.status == Delivery.Status.FAILED for row in others)
    now = timezone.now()
    with transaction.atomic():
        _write_sent(sent, now=now)
        if others:
            fields = ["status", "attempts", "smtp_response", "last_error", "updated_at"]
            Delivery.objects.bulk_update(others, fields)
        if pending.no_mailbox:
            recipient_suppress(recipient_ids=pending.no_mailbox, status=Recipient.Status.BOUNCED)
        Send.objects.filter(pk=send_id).update(
            sent_count=F("sent_count") + len(sent),
            failed_count=F("failed_count") + failed,
            last_progress_at=now,
            stalled_reason="",
        )
    result.sent += len(sent)
    result.failed += failed
    result.requeued += len(others) - failed
    pending.rows.clear()
    pending.no_mailbox.clear()


def _write_sent(rows: list[Delivery], *, now: datetime) -> None:
    by_reply: dict[str, list[int]] = {}
    for row in rows:
        by_reply.setdefault(row.smtp_response, []).append(row.pk)
    for reply, ids in by_reply.items():
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.SENT,
            attempts=F("attempts") + 1,
            sent_at=now,
            smtp_response=reply,
            updated_at=now,
        )


def _release(*, send_id: int, task_id: str, rows: list[Delivery], result: BatchResult) -> None:
    """Claimed rows the loop did not reach: back to the queue, or skipped if cancelled.

    A cancel also skips the rows this batch requeued after a temporary error, so a cancelled
    send never keeps queued rows.
    """
    if result.stopped == Send.Status.CANCELLED:
        skipped = Delivery.objects.filter(
            send_id=send_id,
            task_id=task_id,
            status__in=[Delivery.Status.SENDING, Delivery.Status.QUEUED],
        ).update(status=Delivery.Status.SKIPPED, updated_at=timezone.now())
        Send.objects.filter(pk=send_id).update(skipped_count=F("skipped_count") + skipped)
        result.skipped += skipped
        return
    ids = [row.pk for row in rows]
    if ids:
        result.requeued += Delivery.objects.filter(
            pk__in=ids, status=Delivery.Status.SENDING
        ).update(status=Delivery.Status.QUEUED, claimed_at=None)


# --- Send control: pause, resume, cancel, close ---------------------------------------------


def _control_key(send_id: int) -> str:
    return f"send:{send_id}:status"


def send_control_state(*, send_id: int) -> str:
    """The Send's status as the delivery loop sees it, checked before every message.

    With Redis the status is read from the shared cache (written by every transition); without
    it, from the database, which the embedded profile's single worker can afford.
    """
    if settings.REDIS_URL:
        value = cache.get(_control_key(send_id))
        if value is not None:
            return str(value)
    value = Send.objects.filter(pk=send_id).values_list("status", flat=True).first()
    status = value or Send.Status.CANCELLED
    if settings.REDIS_URL:
        cache.set(_control_key(send_id), status, timeout=3600)
    return status


_ALLOWED = {
    Send.Status.RUNNING: {
        Send.Status.PAUSED,
        Send.Status.CANCELLED,
        Send.Status.COMPLETED,
        Send.Status.FAILED,
    },
    Send.Status.PAUSED: {Send.Status.RUNNING, Send.Status.CANCELLED},
}


def _send_transition(*, send_id: int, to: str, **extra: object) -> Send:
    """Moves a Send between statuses with a conditional UPDATE; raises on an illegal move."""
    allowed_from = [src for src, targets in _ALLOWED.items() if to in targets]
    updated = Send.objects.filter(pk=send_id, status__in=allowed_from).update(status=to, **extra)
    send = Send.objects.select_related("campaign").get(pk=send_id)
    if not updated and send.status != to:
        raise IllegalTransition(f"A {send.get_status_display().lower()} send cannot become {to}.")
    cache.set(_control_key(send_id), send.status, timeout=3600)
    return send


def send_pause(*, send_id: int) -> Send:
    send = _send_transition(send_id=send_id, to=Send.Status.PAUSED)
    _campaign_mirror(send.campaign, Campaign.Status.PAUSED)
    return send


def send_resume(*, send_id: int, publish: BatchPublisher) -> Send:
    send = _send_transition(
        send_id=send_id, to=Send.Status.RUNNING, last_progress_at=timezone.now()
    )
    _campaign_mirror(send.campaign, Campaign.Status.SENDING)
    transaction.on_commit(lambda: send_dispatch(send_id=send_id, publish=publish))
    return send


def send_cancel(*, send_id: int) -> Send:
    with transaction.atomic():
        send = _send_transition(
            send_id=send_id, to=Send.Status.CANCELLED, finished_at=timezone.now()
        )
        skipped = Delivery.objects.filter(send_id=send_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SKIPPED, updated_at=timezone.now()
        )
        Send.objects.filter(pk=send_id).update(skipped_count=F("skipped_count") + skipped)
        _campaign_mirror(send.campaign, Campaign.Status.CANCELLED)
    return send


def _campaign_mirror(campaign: Campaign, status: str) -> None:
    """A one-off campaign shows the state of its single send; a recurring one stays scheduled."""
    if not campaign.is_recurring and campaign.status != status:
        campaign.status = status
        campaign.save(update_fields=["status", "updated_at"])


def send_close_if_done(*, send_id: int) -> bool:
    """Completes a running Send once no row is queued or sending."""
    busy = Delivery.objects.filter(
        send_id=send_id, status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING]
    ).exists()
    if busy:
        return False
    closed = Send.objects.filter(pk=send_id, status=Send.Status.RUNNING).update(
        status=Send.Status.COMPLETED, finished_at=timezone.now()
    )
    if closed:
        cache.set(_control_key(send_id), Send.Status.COMPLETED, timeout=3600)
        send = Send.objects.select_related("campaign").get(pk=send_id)
        _campaign_mirror(send.campaign, Campaign.Status.SENT)
    return bool(closed)


# --- Recovery -------------------------------------------------------------------------------


def deliveries_reap(*, publish: BatchPublisher) -> int:
    """Returns rows stuck in ``sending`` past their lease to ``queued`` and re-dispatches them.

    1. Find rows in ``sending`` claimed longer ago than the lease.
    2. Leave alone the batches whose run still renews its lease (slow, e.g. rate-limited).
    3. Requeue the rest and publish batches for exactly those rows of running sends.
    """
    lease = timedelta(seconds=settings.OPSDASH_DELIVERY_LEASE_SECONDS)
    stale = Delivery.objects.filter(
        status=Delivery.Status.SENDING, claimed_at__lt=timezone.now() - lease
    )
    task_ids = set(stale.values_list("task_id", flat=True).distinct())
    dead = [task_id for task_id in task_ids if not batch_lease_held(task_id=task_id)]
    reaped_rows = list(stale.filter(task_id__in=dead).values_list("id", "send_id"))
    reaped = Delivery.objects.filter(
        pk__in=[pk for pk, _ in reaped_rows], status=Delivery.Status.SENDING
    ).update(status=Delivery.Status.QUEUED, claimed_at=None)
    by_send: dict[int, list[int]] = {}
    for pk, send_id in reaped_rows:
        by_send.setdefault(send_id, []).append(pk)
    for send_id, ids in by_send.items():
        if Send.objects.filter(pk=send_id, status=Send.Status.RUNNING).exists():
            send_dispatch(send_id=send_id, publish=publish, only_ids=ids)
    if reaped:
        logger.warning("Returned %s deliveries stuck in sending to the queue", reaped)
    return reaped


def sends_flag_stalled(*, publish: BatchPublisher) -> int:
    """Flags running sends with queued rows and no progress for OPSDASH_STALL_MINUTES.

    A flagged send is also re-dispatched (at most once per stall period): its batch messages
    may have been lost with a broker's state, and a second message for a range is harmless.
    """
    minutes = settings.OPSDASH_STALL_MINUTES
    limit = timezone.now() - timedelta(minutes=minutes)
    stalled = Send.objects.filter(status=Send.Status.RUNNING, last_progress_at__lt=limit)
    flagged = 0
    for send in stalled:
        if not Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).exists():
            continue
        reason = (
            f"No progress since {send.last_progress_at:%Y-%m-%d %H:%M} UTC with deliveries "
            "still queued: check that a worker consumes the delivery queue and that the SMTP "
            "server answers. The queued deliveries were dispatched again."
        )
        flagged += Send.objects.filter(pk=send.pk).update(stalled_reason=reason)
        if cache.add(f"send:{send.pk}:redispatched", 1, timeout=minutes * 60):
            send_dispatch(send_id=send.pk, publish=publish)
    return flagged


# --- Test messages --------------------------------------------------------------------------


def test_message_send(*, campaign_id: int, to_email: str, recipient_id: int | None = None) -> str:
    """Renders the campaign for one recipient (or a sample) and sends it to a staff address."""
    campaign = Campaign.objects.get(pk=campaign_id)
    compiled = _compiled_for(campaign)
    recipient = Recipient.objects.filter(pk=recipient_id).first() if recipient_id else None
    fields = {
        "email": recipient.email if recipient else to_email,
        "first_name": recipient.first_name if recipient else "Sample",
        "last_name": recipient.last_name if recipient else "Recipient",
        "attributes": recipient.attributes if recipient else {},
    }
    url = unsubscribe_url(recipient_id=recipient.pk if recipient else 0, send_id=0)
    rendered = message_render(compiled, recipient=fields, unsubscribe_url=url)
    rendered = type(rendered)(f"[TEST] {rendered.subject}", rendered.text, rendered.html)
    message = message_build(
        compiled,
        rendered,
        to_email=to_email,
        to_name="",
        message_id=f"<test-{uuid.uuid4().hex}@{settings.OPSDASH_MESSAGE_ID_DOMAIN}>",
        unsubscribe_url=url,
    )
    envelope_from = message["From"].addresses[0].addr_spec
    with SmtpSession() as smtp:
        outcome = smtp.send(
            from_addr=envelope_from, to_addr=to_email, data=message.as_bytes(policy=policy.SMTP)
        )
    if outcome.outcome is not Outcome.SENT:
        raise TestMessageFailed(f"The SMTP server answered {outcome.summary}")
    return outcome.summary


class TestMessageFailed(RuntimeError):
    __test__ = False  # not a pytest test class
