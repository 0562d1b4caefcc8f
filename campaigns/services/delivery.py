"""The delivery path: launch a Send, dispatch its batches, send a batch, close, pause, reap.

The Delivery row is the truth. A batch claims its rows with a conditional UPDATE, sends over one
SMTP session, and writes outcomes every few messages, so a killed worker re-sends at most the
messages it had in flight; the reaper hands rows stuck in ``sending`` back to the queue.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery, Recipient, Send, Subscription, TaskLink
from campaigns.services import ratelimit
from campaigns.services.audiences import SUPPRESSED_STATUSES, recipient_suppress, unsubscribe_url
from campaigns.services.mime import WireFrame, wire_frame, wire_message
from campaigns.services.rendering import (
    CompiledCampaign,
    campaign_compile_for,
    message_build,
    message_render,
)
from campaigns.services.smtp import Outcome, SmtpResult, SmtpSession
from campaigns.services.transitions import IllegalTransition

logger = logging.getLogger(__name__)

# Publishes one batch: (send_id, first_id, last_id, task_id). Injected by the task layer so
# services never import Celery tasks.
BatchPublisher = Callable[[int, int, int, str], None]
# Publishes a launch: (campaign_id, occurrence_key, trigger, triggered_by_id).
LaunchPublisher = Callable[[int, str, str, int | None], None]


# --- Shared state ---------------------------------------------------------------------------
# Small values every worker reads on every message (a send's status, batch leases). Straight
# to Redis when configured: Django's RedisCache builds a client object per call, which costs
# more than the rest of the per-message bookkeeping. Otherwise the Django cache (local memory in
# the embedded profile, whose single worker process shares it between its threads).


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL or "", decode_responses=True)


def _state_key(key: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:delivery:{key}"


def _state_get(key: str) -> str | None:
    if settings.REDIS_URL:
        value = _redis().get(_state_key(key))
        return None if value is None else str(value)
    cached = cache.get(key)
    return None if cached is None else str(cached)


def _state_set(key: str, value: str, *, ttl: int, only_new: bool = False) -> bool:
    """Sets ``key``; with ``only_new``, only if it does not exist (returns whether it was set)."""
    if settings.REDIS_URL:
        return bool(_redis().set(_state_key(key), value, ex=ttl, nx=only_new))
    if only_new:
        return bool(cache.add(key, value, timeout=ttl))
    cache.set(key, value, timeout=ttl)
    return True


def _state_delete(key: str) -> None:
    if settings.REDIS_URL:
        _redis().delete(_state_key(key))
    else:
        cache.delete(key)


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
        send.total, span = _materialise_deliveries(send_id=send.pk, campaign_id=campaign.pk)
        send.save(update_fields=["total"])
        if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED) and not (
            campaign.is_recurring
        ):
            campaign.status = Campaign.Status.SENDING
            campaign.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda: _send_started(send_id=send.pk, publish=publish, span=span))
    if send.total == 0:
        send_close_if_done(send_id=send.pk)
    return send


def _send_started(*, send_id: int, publish: BatchPublisher, span: tuple[int, int] | None) -> None:
    # The delivery loop reads the status from the cache: a launch is a transition too.
    _state_set(_control_key(send_id), Send.Status.RUNNING, ttl=_CONTROL_TTL)
    if span is not None:
        send_dispatch(send_id=send_id, publish=publish, span=span)


def _materialise_deliveries(
    *, send_id: int, campaign_id: int
) -> tuple[int, tuple[int, int] | None]:
    """Inserts the rows; returns how many, and the lowest and highest id they were given."""
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
        if connection.vendor == "postgresql":
            # The id span comes back with the insert itself: no second pass over a million rows.
            cursor.execute(
                f"WITH ins AS ({sql} RETURNING id) SELECT COUNT(*), MIN(id), MAX(id) FROM ins",
                params,
            )
        else:
            cursor.execute(sql, params)
            cursor.execute(
                f"SELECT COUNT(*), MIN(id), MAX(id) FROM {d} WHERE send_id = %s", [send_id]
            )
        count, low, high = cursor.fetchone()
    return int(count), (int(low), int(high)) if count else None


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


_PUBLISH_THREADS = 8


def _publish_on_thread(publish: BatchPublisher, batch: tuple[int, int, int, str]) -> None:
    try:
        publish(*batch)
    finally:
        # A publisher that runs the task in-process (eager mode) opened this thread's connection.
        connections.close_all()


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
    if len(batches) <= _PUBLISH_THREADS:
        for batch in batches:
            publish(*batch)
    else:
        # Each publish waits for RabbitMQ's confirm: a large send publishes from a few threads
        # at once, so its launch does not wait thousands of round trips one after another.
        with ThreadPoolExecutor(_PUBLISH_THREADS) as pool:
            list(pool.map(lambda batch: _publish_on_thread(publish, batch), batches))
    return len(batches)


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
        compiled = campaign_compile_for(campaign)
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
        if not _state_set(self.key, self.token, ttl=self.ttl, only_new=True):
            return False
        self.renewed_at = time.monotonic()
        return True

    def renew(self) -> None:
        if time.monotonic() - self.renewed_at >= self.ttl / 4:
            _state_set(self.key, self.token, ttl=self.ttl)
            self.renewed_at = time.monotonic()

    def release(self) -> None:
        if _state_get(self.key) == self.token:
            _state_delete(self.key)


def _lease_key(task_id: str) -> str:
    return f"batch:{task_id}:lease"


def batch_lease_held(*, task_id: str) -> bool:
    return _state_get(_lease_key(task_id)) is not None


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
        if claimed := _claim(send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id):
            rows = _claimed_rows(
                send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id
            )
            if len(rows) < claimed:
                _skip_orphans(send_id=send_id, task_id=task_id, rows=rows, result=result)
            _send_rows(send=send, rows=rows, task_id=task_id, lease=lease, result=result)
    finally:
        lease.release()
    send_close_if_done(send_id=send_id)
    return result


def _skip_orphans(*, send_id: int, task_id: str, rows: list[Delivery], result: BatchResult) -> None:
    """Claimed rows the recipient join did not return: the recipient was deleted meanwhile."""
    skipped = (
        Delivery.objects.filter(send_id=send_id, task_id=task_id, status=Delivery.Status.SENDING)
        .exclude(pk__in=[row.pk for row in rows])
        .update(
            status=Delivery.Status.SKIPPED,
            last_error="the recipient no longer exists",
            updated_at=timezone.now(),
        )
    )
    Send.objects.filter(pk=send_id).update(skipped_count=F("skipped_count") + skipped)
    result.skipped += skipped


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
    control: _ControlProbe
    compiled: CompiledCampaign
    frame: WireFrame
    buckets: list[ratelimit.BucketSpec]
    pending: _Pending
    transient_streak: int = 0


def _send_rows(
    *, send: Send, rows: list[Delivery], task_id: str, lease: BatchLease, result: BatchResult
) -> None:
    compiled, frame = _compiled_with_frame(send.campaign)
    buckets = ratelimit.buckets_for(
        campaign_id=send.campaign_id, campaign_per_minute=send.campaign.rate_limit_per_minute
    )
    flush_every = settings.OPSDASH_DELIVERY_FLUSH_EVERY
    pending = _Pending()
    done = 0
    try:
        with SmtpSession() as smtp, _ControlProbe(send.pk) as control:
            loop = _Loop(send, task_id, lease, smtp, control, compiled, frame, buckets, pending)
            for row in rows:
                if not _send_one(loop=loop, row=row, result=result):
                    break
                done += 1
                if len(pending.rows) >= flush_every:
                    _flush(send_id=send.pk, pending=pending, result=result)
                if loop.transient_streak >= settings.OPSDASH_DELIVERY_TRANSIENT_STREAK:
                    result.deferred = "the SMTP server keeps answering with temporary errors"
                    break
    finally:
        # Also when the loop is interrupted (time limit, lost database): what was sent is
        # recorded, so only a crash of the process itself can leave a message to send again.
        _flush(send_id=send.pk, pending=pending, result=result)
        _release(send_id=send.pk, task_id=task_id, rows=rows[done:], result=result)


def _send_one(*, loop: _Loop, row: Delivery, result: BatchResult) -> bool:
    """Sends one row and records its outcome; False when the batch must stop before it.

    The Send's status is checked for every message, right before it goes out; the question
    to Redis is asked first and the message rendered while the answer travels.
    """
    loop.lease.renew()
    loop.control.ask()
    try:
        data = _compose(loop=loop, row=row)
    except Exception as exc:  # one recipient's data must not stop the batch
        logger.exception("Cannot compose delivery %s", row.pk)
        data = None
        problem = SmtpResult(Outcome.PERMANENT, 0, f"cannot compose the message: {exc}")
    if (state := loop.control.answer()) != Send.Status.RUNNING:
        result.stopped = state
        return False
    if data is None:
        _record(row=row, outcome=problem, pending=loop.pending)
        return True
    wait = ratelimit.tokens_take(loop.buckets, max_wait=settings.OPSDASH_RATE_MAX_WAIT_SECONDS)
    if wait > 0:
        result.deferred, result.retry_after = "rate limit", wait
        return False
    outcome = loop.smtp.send(
        from_addr=loop.frame.envelope_from, to_addr=row.recipient.email, data=data
    )
    if not outcome.attempted:
        result.deferred = outcome.summary
        return False
    _record(row=row, outcome=outcome, pending=loop.pending)
    transient = outcome.outcome is Outcome.TRANSIENT
    loop.transient_streak = loop.transient_streak + 1 if transient else 0
    return True


def _compose(*, loop: _Loop, row: Delivery) -> bytes:
    recipient = row.recipient
    url = unsubscribe_url(recipient_id=row.recipient_id, send_id=row.send_id)
    fields = {
        "email": recipient.email,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "attributes": recipient.attributes,
    }
    rendered = message_render(loop.compiled, recipient=fields, unsubscribe_url=url)
    return wire_message(
        loop.frame,
        rendered,
        to_email=recipient.email,
        to_name=recipient.full_name,
        message_id=row.message_id,
        unsubscribe_url=url,
    )


class _ControlProbe:
    """Reads a Send's status once per message on a connection of its own.

    ``ask`` sends the GET without waiting, ``answer`` reads the reply (or falls back to
    ``send_control_state`` without Redis or after any Redis error).
    """

    def __init__(self, send_id: int) -> None:
        self.send_id = send_id
        self.key = _state_key(_control_key(send_id))
        self.conn: Any = None
        self.asked = False

    def __enter__(self) -> _ControlProbe:
        if settings.REDIS_URL:
            self.conn = _redis().connection_pool.get_connection()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            _redis().connection_pool.release(self.conn)
            self.conn = None

    def ask(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.send_command("GET", self.key)
            self.asked = True
        except redis.RedisError:
            self._drop()

    def answer(self) -> str:
        value = None
        if self.conn is not None and self.asked:
            self.asked = False
            try:
                value = self.conn.read_response()
            except redis.RedisError:
                self._drop()
        return str(value) if value is not None else send_control_state(send_id=self.send_id)

    def _drop(self) -> None:
        self.conn.disconnect()
        _redis().connection_pool.release(self.conn)
        self.conn = None


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
    if not others and _write_all_sent(send_id=send_id, rows=sent, now=now):
        result.sent += len(sent)
        pending.rows.clear()
        return
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


def _write_all_sent(*, send_id: int, rows: list[Delivery], now: datetime) -> bool:
    """The common case (every message accepted, one reply text) in a single statement.

    One round trip instead of four (BEGIN, two UPDATEs, COMMIT): a statement is atomic on its
    own, and the Send's counter moves by exactly the rows it marked sent. PostgreSQL only;
    returns False when the rows need the general path.
    """
    replies = {row.smtp_response for row in rows}
    if connection.vendor != "postgresql" or len(replies) != 1:
        return False
    sql = f"""
        WITH done AS (
            UPDATE {Delivery._meta.db_table}
            SET status = %s, attempts = attempts + 1, sent_at = %s, smtp_response = %s,
                updated_at = %s
            WHERE id = ANY(%s) AND status = %s
            RETURNING 1
        )
        UPDATE {Send._meta.db_table}
        SET sent_count = sent_count + (SELECT COUNT(*) FROM done), last_progress_at = %s,
            stalled_reason = ''
        WHERE id = %s
    """
    params: list[Any] = [Delivery.Status.SENT, now, replies.pop(), now, [r.pk for r in rows]]
    params += [Delivery.Status.SENDING, now, send_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return True


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


_CONTROL_TTL = 86_400


def _control_key(send_id: int) -> str:
    return f"send:{send_id}:status"


def send_control_state(*, send_id: int) -> str:
    """The Send's status as the delivery loop sees it, checked before every message.

    With Redis the status is read from the shared store (written after every transition
    commits); without it, from the database, which the embedded profile's single worker can
    afford. A miss is filled with "set if absent", so it can never overwrite a transition.
    """
    if settings.REDIS_URL:
        value = _state_get(_control_key(send_id))
        if value is not None:
            return value
    found = Send.objects.filter(pk=send_id).values_list("status", flat=True).first()
    status = str(found or Send.Status.CANCELLED)
    if settings.REDIS_URL:
        _state_set(_control_key(send_id), status, ttl=_CONTROL_TTL, only_new=True)
    return status


def _control_publish(send_id: int, status: str) -> None:
    """Tells every delivery loop about a transition, once it is committed."""
    transaction.on_commit(
        lambda: _state_set(_control_key(send_id), status, ttl=_CONTROL_TTL), robust=True
    )


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
    _control_publish(send_id, send.status)
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
        _control_publish(send_id, Send.Status.COMPLETED)
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
        key = f"send:{send.pk}:{send.created_at.timestamp()}:redispatched"
        if _state_set(key, "1", ttl=minutes * 60, only_new=True):
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
