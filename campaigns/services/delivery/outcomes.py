"""Outcome writes of a batch: what it tells its task, and its rows written back in bulk.

Outcomes are kept in memory and flushed every few messages in one short transaction; each
message SMTP accepted is also in the batch's Redis journal until its outcome is written. So a
killed worker, or a database that went away, re-sends at most the message in flight.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from campaigns.models import Delivery, Recipient, Send, Service
from campaigns.services.audiences import recipient_suppress
from campaigns.services.channels import ChannelResult
from campaigns.services.delivery.state import journal_read
from campaigns.services.smtp import Outcome, SmtpResult

logger = logging.getLogger(__name__)

# A batch whose rows went back only because their provider deferred runs again after about
# this many seconds (see BatchResult.settle).
THROTTLE_RETRY_SECONDS = 2.0

# Errors of a lost database connection (a restart, a failover): worth a fresh connection.
DB_CONNECTION_ERRORS = (OperationalError, InterfaceError)


class NextStep(StrEnum):
    """What the batch's task does once the batch service returns."""

    DONE = "done"  # every claimed row has its outcome (or nothing was left to claim)
    STOPPED = "stopped"  # the send is not running (``BatchResult.stopped`` says which status)
    BUSY = "busy"  # another run of this same task still holds the batch: look again later
    RATE_LIMITED = "rate_limited"  # rows requeued until the rate limit allows, in ``retry_in``
    # Rows requeued because the warm-up plan allows no more today: the task ends, and the
    # watchdog dispatches them again once the quota renews (``retry_in`` seconds from now).
    QUOTA_WAIT = "quota_wait"
    BACKOFF = "backoff"  # rows requeued after temporary SMTP trouble: the usual backoff
    WAIT_SERVICE = "wait_service"  # a service is out (``BatchResult.waiting_for``): retry soon


class DeliveryInterrupted(Exception):
    """A batch stopped because a service it needs stayed out; its task retries shortly.

    What SMTP accepted is in the batch's journal, so the next run records it first.
    """

    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(f"{service} unavailable: {detail}" if detail else service)
        self.service = service


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    requeued: int = 0
    next_step: NextStep = NextStep.DONE
    # RATE_LIMITED, QUOTA_WAIT: seconds until the rate limit or the quota has room again.
    retry_in: float = 0.0
    # STOPPED: the send's status (paused, cancelled, or already closed).
    stopped: str = ""
    # Why rows were handed back early (the rate limit, the SMTP server), for the task result.
    deferred: str = ""
    # WAIT_SERVICE: the service (models.Service) the batch waits for.
    waiting_for: str = ""
    # Why rows went back: a provider asked to slow down (``throttled``), or the server or the
    # connection failed for the moment (``troubled``: a temporary error, no connection).
    throttled: bool = False
    troubled: bool = False

    def settle(self) -> None:
        """Decides the next step once every row is written: a retry only if rows went back.

        Rows that went back only because a provider deferred come again after about
        THROTTLE_RETRY_SECONDS: the deferral already cut the provider's shared rate, and the
        backoff of temporary errors, which grows with every run, would leave the provider
        idle for minutes once its rate has adapted.
        """
        if self.next_step in (NextStep.STOPPED, NextStep.BUSY, NextStep.WAIT_SERVICE):
            return
        if not self.requeued:
            self.next_step = NextStep.DONE
        elif self.next_step in (NextStep.RATE_LIMITED, NextStep.QUOTA_WAIT):
            return
        elif self.throttled and not self.troubled:
            self.next_step = NextStep.RATE_LIMITED
            self.retry_in = THROTTLE_RETRY_SECONDS * random.uniform(0.8, 1.2)
            self.deferred = self.deferred or "the mailbox provider asked to slow down"
        else:
            self.next_step = NextStep.BACKOFF

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
class Pending:
    """Outcomes not yet written; flushed every few messages."""

    rows: list[Delivery] = field(default_factory=list)
    no_mailbox: list[int] = field(default_factory=list)


def outcome_record(
    *,
    row: Delivery,
    outcome: ChannelResult | SmtpResult,
    pending: Pending,
    now: datetime | None = None,
) -> None:
    """Sets the row's outcome (``now``: when it came, one clock read for several rows)."""
    now = now or timezone.now()
    row.updated_at = now
    if outcome.outcome is not Outcome.SENT and outcome.throttled:
        # The provider asked us to slow down: back to the queue, and no attempt counted.
        row.status, row.last_error = Delivery.Status.QUEUED, _deferral_note(row, outcome)
        pending.rows.append(row)
        return
    row.attempts += 1
    if outcome.outcome is Outcome.SENT:
        row.status, row.sent_at, row.smtp_response = Delivery.Status.SENT, now, outcome.summary
        if isinstance(outcome, ChannelResult):
            row.esp_message_id = outcome.esp_message_id
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


def _deferral_note(row: Delivery, outcome: ChannelResult | SmtpResult) -> str:
    line = f"deferred at {row.updated_at:%Y-%m-%d %H:%M:%S} (not counted): {outcome.summary}"
    return f"{row.last_error}\n{line}".strip()[-4000:]


def _attempt_error(row: Delivery, outcome: ChannelResult | SmtpResult) -> str:
    """Every attempt's error is kept, one line each, newest last."""
    line = f"attempt {row.attempts} at {row.updated_at:%Y-%m-%d %H:%M:%S}: {outcome.summary}"
    return f"{row.last_error}\n{line}".strip()[-4000:]


def outcomes_flush(*, send_id: int, pending: Pending, result: BatchResult) -> None:
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
        written = _write_sent(sent, now=now)
        if others:
            fields = ["status", "attempts", "smtp_response", "last_error", "updated_at"]
            Delivery.objects.bulk_update(others, fields)
        if pending.no_mailbox:
            recipient_suppress(recipient_ids=pending.no_mailbox, status=Recipient.Status.BOUNCED)
        Send.objects.filter(pk=send_id).update(
            sent_count=F("sent_count") + written,
            failed_count=F("failed_count") + failed,
            last_progress_at=now,
            stalled_reason="",
        )
    result.sent += written
    result.failed += failed
    result.requeued += len(others) - failed
    pending.rows.clear()
    pending.no_mailbox.clear()


def _write_all_sent(*, send_id: int, rows: list[Delivery], now: datetime) -> bool:
    """The common case (every message accepted, one reply text) in a single statement.

    One round trip instead of four (BEGIN, two UPDATEs, COMMIT): a statement is atomic on its
    own, and the Send's counter moves by exactly the rows it marked sent. On an ESP channel
    each row also takes its own message id, joined in from two arrays in the same statement.
    PostgreSQL only; returns False when the rows need the general path.
    """
    replies = {row.smtp_response for row in rows}
    if connection.vendor != "postgresql" or len(replies) != 1:
        return False
    d = Delivery._meta.db_table
    ids = [row.pk for row in rows]
    esp_ids = [_esp_id(row) for row in rows]
    params: list[Any] = [Delivery.Status.SENT, now, replies.pop(), now]
    if any(esp_ids):
        esp_set = ", esp_message_id = v.esp"
        rows_where = f"FROM unnest(%s::bigint[], %s::text[]) AS v(id, esp) WHERE {d}.id = v.id"
        params += [ids, esp_ids]
    else:
        esp_set, rows_where = "", f"WHERE {d}.id = ANY(%s)"
        params.append(ids)
    sql = f"""
        WITH done AS (
            UPDATE {d}
            SET status = %s, attempts = attempts + 1, sent_at = %s, smtp_response = %s,
                updated_at = %s{esp_set}
            {rows_where} AND {d}.status = %s
            RETURNING 1
        )
        UPDATE {Send._meta.db_table}
        SET sent_count = sent_count + (SELECT COUNT(*) FROM done), last_progress_at = %s,
            stalled_reason = ''
        WHERE id = %s
    """
    params += [Delivery.Status.SENDING, now, send_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return True


def _esp_id(row: Delivery) -> str:
    # Claimed rows are loaded without the field: only a recorded outcome sets it.
    return str(row.__dict__.get("esp_message_id") or "")


def _write_sent(rows: list[Delivery], *, now: datetime) -> int:
    """Marks rows still ``sending`` sent, one UPDATE per reply text; returns how many.

    Only rows still ``sending``: a write retried after its commit was lost, or a journal
    applied meanwhile, must not count a message twice.
    """
    replies = {row.pk: (row.smtp_response, _esp_id(row)) for row in rows}
    return _write_replies(replies, now=now)


def _write_replies(replies: dict[int, tuple[str, str]], *, now: datetime) -> int:
    """``replies``: delivery id -> (reply text, ESP message id or "")."""
    by_reply: dict[str, list[int]] = {}
    for pk, (reply, _) in replies.items():
        by_reply.setdefault(reply, []).append(pk)
    written = sum(
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING).update(
            status=Delivery.Status.SENT,
            attempts=F("attempts") + 1,
            sent_at=now,
            smtp_response=reply,
            updated_at=now,
        )
        for reply, ids in by_reply.items()
    )
    # The same id whoever wrote the row sent: setting it again is harmless.
    with_ids = [Delivery(pk=pk, esp_message_id=esp) for pk, (_, esp) in replies.items() if esp]
    if with_ids:
        Delivery.objects.bulk_update(with_ids, ["esp_message_id"])
    return written


# A journal entry keeps the ESP's message id beside the reply, after this separator (a control
# character: no SMTP reply or ESP answer we store contains one).
_JOURNAL_SEPARATOR = "\x1f"


def journal_entry(result: ChannelResult) -> str:
    """What the in-flight journal keeps for an accepted message."""
    if not result.esp_message_id:
        return result.summary
    return f"{result.summary}{_JOURNAL_SEPARATOR}{result.esp_message_id}"


def _journal_parse(entry: str) -> tuple[str, str]:
    reply, _, esp_id = entry.partition(_JOURNAL_SEPARATOR)
    return reply, esp_id


def outcomes_write(
    *,
    send_id: int,
    pending: Pending,
    result: BatchResult,
    reconnected: Callable[[], None],
    interrupted: Callable[[datetime], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Writes pending outcomes, waiting out a lost database connection; nothing is sent meanwhile.

    1. Try the flush.
    2. On a lost connection: close it (the next query opens a fresh one), tell ``interrupted``
       (once), and wait with backoff and jitter.
    3. Call ``reconnected`` (the batch takes its lease back on the new session) and try again,
       for OPSDASH_DELIVERY_DB_RETRY_SECONDS; then raise DeliveryInterrupted, and the task
       retries (the journal keeps what SMTP accepted).
    """
    deadline = time.monotonic() + settings.OPSDASH_DELIVERY_DB_RETRY_SECONDS
    delay, told = 0.25, False
    while True:
        # A write to a server going down can hang before it fails: the outage began when the
        # write was sent, not when its error came back.
        attempted_at = timezone.now()
        try:
            if told:
                reconnected()
            outcomes_flush(send_id=send_id, pending=pending, result=result)
            return
        except DB_CONNECTION_ERRORS as exc:
            connection.close()
            if not told:
                logger.warning("Outcome write of send %s failed (%s); retrying", send_id, exc)
                interrupted(attempted_at)
                told = True
            if time.monotonic() + delay > deadline:
                raise DeliveryInterrupted(Service.DATABASE, str(exc)) from exc
            sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)


def journal_apply(*, task_id: str, send_id: int) -> int:
    """Records what an earlier run of ``task_id`` (a batch of ``send_id``) sent but could not
    write; returns how many.

    Rows still ``sending`` under this task id and in its journal were accepted by SMTP: they
    become ``sent`` with their reply and the Send's counters move, in one transaction. Called
    before a batch claims its rows, and by the reaper before it requeues a dead batch's rows.
    """
    journal = journal_read(task_id=task_id)
    if journal is None:
        # Redis is out: what this task's earlier run sent cannot be known, so its rows must
        # not go out again yet. Nothing of ours in flight, nothing to fear.
        ours = Delivery.objects.filter(send_id=send_id, status=Delivery.Status.SENDING)
        if ours.filter(task_id=task_id).exists():
            raise DeliveryInterrupted(Service.REDIS, "the in-flight journal cannot be read")
        return 0
    if not journal:
        return 0
    now = timezone.now()
    with transaction.atomic():
        found = list(
            Delivery.objects.select_for_update()
            .filter(pk__in=list(journal), send_id=send_id, task_id=task_id)
            .filter(status=Delivery.Status.SENDING)
            .values_list("id", flat=True)
        )
        written = _write_replies({pk: _journal_parse(journal[pk]) for pk in found}, now=now)
        if found:
            Send.objects.filter(pk=send_id).update(
                sent_count=F("sent_count") + len(found), last_progress_at=now, stalled_reason=""
            )
    if written:
        logger.warning("Recorded %s sent messages of batch %s from its journal", written, task_id)
    return written


def rows_release(*, send_id: int, task_id: str, rows: list[Delivery], result: BatchResult) -> None:
    """Claimed rows the loop did not reach: back to the queue, or skipped if cancelled.

    A cancel also skips the rows this batch requeued after a temporary error, so a cancelled
    send never keeps queued rows.
    """
    if result.stopped == Send.Status.CANCELLED:
        ours = Delivery.objects.filter(
            send_id=send_id,
            task_id=task_id,
            status__in=[Delivery.Status.SENDING, Delivery.Status.QUEUED],
        )
        rows_skip(send_id=send_id, rows=ours, result=result, reason=Delivery.SkipReason.CANCELLED)
        return
    ids = [row.pk for row in rows]
    if ids:
        result.requeued += Delivery.objects.filter(
            pk__in=ids, status=Delivery.Status.SENDING
        ).update(status=Delivery.Status.QUEUED, claimed_at=None)


def rows_skip(
    *, send_id: int, rows: QuerySet[Delivery], result: BatchResult, reason: Delivery.SkipReason
) -> None:
    """Marks ``rows`` skipped with why, in one UPDATE, and counts them on the Send.

    ``last_error`` is left as it is: it keeps the history of earlier attempts, if any.
    """
    with transaction.atomic():  # the rows and their count move together
        skipped = rows.update(
            status=Delivery.Status.SKIPPED, skip_reason=reason, updated_at=timezone.now()
        )
        if skipped:
            Send.objects.filter(pk=send_id).update(skipped_count=F("skipped_count") + skipped)
    result.skipped += skipped
