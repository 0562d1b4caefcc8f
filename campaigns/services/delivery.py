"""The delivery path: launch a Send, dispatch its batches, send a batch, close, pause, reap.

The Delivery row is the truth. A batch claims its rows with a conditional UPDATE, sends over one
SMTP session, and writes outcomes every few messages, so a killed worker re-sends at most the
messages it had in flight; the reaper hands rows stuck in ``sending`` back to the queue.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
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
        transaction.on_commit(lambda: send_dispatch(send_id=send.pk, publish=publish))
    if send.total == 0:
        send_close_if_done(send_id=send.pk)
    return send


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


def _id_ranges(*, send_id: int, status: str, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive id ranges that each hold at most ``size`` rows of the send in ``status``."""
    rows = Delivery.objects.filter(send_id=send_id, status=status).order_by("id")
    last = 0
    while True:
        ids = list(rows.filter(id__gt=last).values_list("id", flat=True)[:size])
        if not ids:
            return
        yield ids[0], ids[-1]
        last = ids[-1]


def send_dispatch(*, send_id: int, publish: BatchPublisher) -> int:
    """Publishes a batch task for every range of queued rows; returns how many."""
    size = settings.OPSDASH_DELIVERY_BATCH_SIZE
    send = Send.objects.only("campaign_id").get(pk=send_id)
    count = 0
    for first_id, last_id in _id_ranges(send_id=send_id, status=Delivery.Status.QUEUED, size=size):
        task_id = str(uuid.uuid4())
        TaskLink.objects.create(
            task_id=task_id, kind=TaskLink.Kind.BATCH, campaign_id=send.campaign_id, send_id=send_id
        )
        publish(send_id, first_id, last_id, task_id)
        count += 1
    return count


# --- One batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    requeued: int = 0
    stopped: str = ""

    def as_dict(self) -> dict[str, int | str]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "requeued": self.requeued,
            "stopped": self.stopped,
        }


@dataclass
class _Pending:
    """Outcomes not yet written; flushed every few messages."""

    rows: list[Delivery] = field(default_factory=list)
    no_mailbox: list[int] = field(default_factory=list)


_compiled_cache: dict[tuple[int, str], CompiledCampaign] = {}


def _compiled_for(campaign: Campaign) -> CompiledCampaign:
    """Templates compiled once per campaign version in this process."""
    key = (campaign.pk, campaign.updated_at.isoformat())
    compiled = _compiled_cache.get(key)
    if compiled is None:
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
        _compiled_cache[key] = compiled
    return compiled


def _claim(*, send_id: int, first_id: int, last_id: int, task_id: str) -> int:
    """Marks the range's queued rows as ours. A redelivered task (same id) re-claims its own."""
    return Delivery.objects.filter(
        Q(status=Delivery.Status.QUEUED) | Q(status=Delivery.Status.SENDING, task_id=task_id),
        send_id=send_id,
        id__gte=first_id,
        id__lte=last_id,
    ).update(status=Delivery.Status.SENDING, claimed_at=timezone.now(), task_id=task_id)


def batch_deliver(*, send_id: int, first_id: int, last_id: int, task_id: str) -> BatchResult:
    """Sends one claimed range of a Send.

    1. Stop at once unless the Send is running.
    2. Claim the range's queued rows (conditional UPDATE: a second run finds nothing to claim).
    3. For each row: check the Send is still running, take rate tokens, render, send.
    4. Write outcomes every few messages; transient failures go back to ``queued``.
    5. Hand back unsent claimed rows when stopped; close the Send when nothing is left.
    """
    send = Send.objects.select_related("campaign").get(pk=send_id)
    result = BatchResult()
    if send.status != Send.Status.RUNNING:
        result.stopped = send.status
        return result
    if not _claim(send_id=send_id, first_id=first_id, last_id=last_id, task_id=task_id):
        send_close_if_done(send_id=send_id)
        return result
    rows = (
        Delivery.objects.filter(send_id=send_id, task_id=task_id, status=Delivery.Status.SENDING)
        .filter(id__gte=first_id, id__lte=last_id)
        .select_related("recipient")
        .only(
            "id",
            "send_id",
            "recipient_id",
            "attempts",
            "recipient__email",
            "recipient__first_name",
            "recipient__last_name",
            "recipient__attributes",
        )
        .order_by("id")
    )
    _send_rows(send=send, rows=list(rows), result=result)
    send_close_if_done(send_id=send_id)
    return result


def _send_rows(*, send: Send, rows: list[Delivery], result: BatchResult) -> None:
    compiled = _compiled_for(send.campaign)
    buckets = ratelimit.buckets_for(
        campaign_id=send.campaign_id, campaign_per_minute=send.campaign.rate_limit_per_minute
    )
    pending = _Pending()
    flush_every = settings.OPSDASH_DELIVERY_FLUSH_EVERY
    with SmtpSession() as smtp:
        for index, row in enumerate(rows):
            if (stopped := send_control_state(send_id=send.pk)) != Send.Status.RUNNING:
                result.stopped = stopped
                _flush(send_id=send.pk, pending=pending, result=result)
                _release(rows=rows[index:], result=result)
                return
            ratelimit.tokens_take(buckets)
            outcome = _deliver_one(smtp=smtp, compiled=compiled, row=row)
            _record(row=row, outcome=outcome, pending=pending)
            if len(pending.rows) >= flush_every:
                _flush(send_id=send.pk, pending=pending, result=result)
    _flush(send_id=send.pk, pending=pending, result=result)


def _deliver_one(*, smtp: SmtpSession, compiled: CompiledCampaign, row: Delivery) -> SmtpResult:
    recipient = row.recipient
    url = unsubscribe_url(recipient_id=row.recipient_id, send_id=row.send_id)
    fields = {
        "email": recipient.email,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "attributes": recipient.attributes,
    }
    rendered = message_render(compiled, recipient=fields, unsubscribe_url=url)
    message = message_build(
        compiled,
        rendered,
        to_email=recipient.email,
        to_name=recipient.full_name,
        message_id=row.message_id,
        unsubscribe_url=url,
    )
    envelope_from = message["From"].addresses[0].addr_spec
    data = message.as_bytes(policy=policy.SMTP)
    return smtp.send(from_addr=envelope_from, to_addr=recipient.email, data=data)


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
    if not pending.rows:
        return
    counts = {status: 0 for status in Delivery.Status.values}
    for row in pending.rows:
        counts[row.status] += 1
    with transaction.atomic():
        Delivery.objects.bulk_update(
            pending.rows,
            ["status", "attempts", "sent_at", "smtp_response", "last_error", "updated_at"],
        )
        if pending.no_mailbox:
            recipient_suppress(recipient_ids=pending.no_mailbox, status=Recipient.Status.BOUNCED)
        Send.objects.filter(pk=send_id).update(
            sent_count=F("sent_count") + counts[Delivery.Status.SENT],
            failed_count=F("failed_count") + counts[Delivery.Status.FAILED],
            last_progress_at=timezone.now(),
            stalled_reason="",
        )
    result.sent += counts[Delivery.Status.SENT]
    result.failed += counts[Delivery.Status.FAILED]
    result.requeued += counts[Delivery.Status.QUEUED]
    pending.rows.clear()
    pending.no_mailbox.clear()


def _release(*, rows: list[Delivery], result: BatchResult) -> None:
    """Gives claimed but unsent rows back to the queue (pause) or skips them (cancel)."""
    ids = [row.pk for row in rows]
    if not ids:
        return
    Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.QUEUED, claimed_at=None
    )
    result.requeued += len(ids)


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
    """Returns rows stuck in ``sending`` past their lease to ``queued`` and re-dispatches them."""
    lease = timedelta(seconds=settings.OPSDASH_DELIVERY_LEASE_SECONDS)
    stale = Delivery.objects.filter(
        status=Delivery.Status.SENDING, claimed_at__lt=timezone.now() - lease
    )
    send_ids = set(stale.values_list("send_id", flat=True).distinct())
    reaped = stale.update(status=Delivery.Status.QUEUED, claimed_at=None)
    for send_id in send_ids:
        if Send.objects.filter(pk=send_id, status=Send.Status.RUNNING).exists():
            send_dispatch(send_id=send_id, publish=publish)
    return reaped


def sends_flag_stalled() -> int:
    """Flags running sends with queued rows and no progress for OPSDASH_STALL_MINUTES."""
    limit = timezone.now() - timedelta(minutes=settings.OPSDASH_STALL_MINUTES)
    stalled = Send.objects.filter(status=Send.Status.RUNNING, last_progress_at__lt=limit)
    flagged = 0
    for send in stalled:
        if Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).exists():
            reason = (
                f"No progress since {send.last_progress_at:%Y-%m-%d %H:%M} UTC with deliveries "
                "still queued: check that a worker consumes the delivery queue and that the SMTP "
                "server answers."
            )
            flagged += Send.objects.filter(pk=send.pk).update(stalled_reason=reason)
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
