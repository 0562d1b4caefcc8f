"""Send control: pause, resume, cancel and close, each a move of the Send state machine.

The table itself lives in ``services.transitions`` (``send_move``); this module decides when to
move, keeps the delivery loops told (the control key), mirrors the move on a one-off campaign,
and records who pressed the button.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Exists
from django.utils import timezone

from campaigns.models import AuditEntry, Delivery, Send
from campaigns.publishers import publish_batch
from campaigns.selectors.deliveries import send_status_counts
from campaigns.services.audit import By, audit_record
from campaigns.services.delivery.dispatch import BatchPublisher, send_dispatch
from campaigns.services.delivery.state import control_publish
from campaigns.services.transitions import IllegalTransition, campaign_mirror_send, send_move

Status = Send.Status


def send_pause(*, send_id: int, by: By) -> Send:
    """Stops a running send before its next message; no row is lost or sent twice."""
    with transaction.atomic():
        before = _status_of(send_id)
        send, moved = _move(send_id=send_id, to=Status.PAUSED)
        if moved:
            _audit(send, action=AuditEntry.Action.PAUSED, by=by, before=before)
    return send


def send_resume(*, send_id: int, by: By, publish: BatchPublisher = publish_batch) -> Send:
    """Runs a paused send again and dispatches its queued rows once the move is committed."""
    with transaction.atomic():
        before = _status_of(send_id)
        send, moved = _move(send_id=send_id, to=Status.RUNNING, last_progress_at=timezone.now())
        if moved:  # a second press finds it running: nothing to record or dispatch again
            _audit(send, action=AuditEntry.Action.RESUMED, by=by, before=before)
            transaction.on_commit(lambda: send_dispatch(send_id=send_id, publish=publish))
    return send


def send_cancel(*, send_id: int, by: By) -> Send:
    """Ends a send for good: every row not yet sent is skipped."""
    with transaction.atomic():
        before = _status_of(send_id)
        send, moved = _move(send_id=send_id, to=Status.CANCELLED, finished_at=timezone.now())
        if not moved:
            return send
        Delivery.objects.filter(send_id=send_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SKIPPED,
            skip_reason=Delivery.SkipReason.CANCELLED,
            updated_at=timezone.now(),
        )
        send_counts_sync(send_id=send_id)
        _audit(send, action=AuditEntry.Action.CANCELLED, by=by, before=before)
    return send


def send_close_if_done(*, send_id: int) -> bool:
    """Closes a running Send once no row is queued or sending; returns whether this call did.

    It closes as ``failed`` when every delivery failed (none sent), else as ``completed``.
    """
    busy = Delivery.objects.filter(
        send_id=send_id, status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING]
    )
    status, sent, failed, is_busy = (
        Send.objects.filter(pk=send_id)
        .annotate(busy=Exists(busy))
        .values_list("status", "sent_count", "failed_count", "busy")
        .get()
    )
    if is_busy or status != Status.RUNNING:
        return False
    to = Status.FAILED if sent == 0 and failed > 0 else Status.COMPLETED
    try:
        with transaction.atomic():
            _, moved = _move(send_id=send_id, to=to, finished_at=timezone.now())
            if moved:
                send_counts_sync(send_id=send_id)
    except IllegalTransition:  # paused or cancelled meanwhile: not ours to close
        return False
    return moved


def send_counts_sync(*, send_id: int) -> None:
    """Sets the Send's counters from its rows (one grouped count on the (send, status) index).

    Batches move the counters by increments in the same transactions as their rows, so this
    changes nothing unless something drifted; it makes sure a closed or cancelled send's
    counters add up to its total. Called in a transaction that has just moved the Send, so the
    row lock is held: a batch writing meanwhile waits, and its increment lands on top.
    """
    counts = send_status_counts(send_id=send_id)
    Send.objects.filter(pk=send_id).update(
        sent_count=counts.get(Delivery.Status.SENT, 0),
        failed_count=counts.get(Delivery.Status.FAILED, 0),
        skipped_count=counts.get(Delivery.Status.SKIPPED, 0),
    )


def _move(*, send_id: int, to: str, **extra: Any) -> tuple[Send, bool]:
    """One move of the state machine, told to the delivery loops and mirrored on the campaign."""
    send, moved = send_move(send_id=send_id, to=to, **extra)
    control_publish(send_id, send.status)
    campaign_mirror_send(send)
    return send, moved


def _status_of(send_id: int) -> str:
    return Send.objects.values_list("status", flat=True).get(pk=send_id)


def _audit(send: Send, *, action: AuditEntry.Action, by: By, before: str) -> None:
    audit_record(action=action, actor=by, send=send, changes={"status": [before, send.status]})
