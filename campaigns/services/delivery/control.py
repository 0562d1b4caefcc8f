"""Send control: pause, resume, cancel and close, each a move of the Send state machine.

The table itself lives in ``services.transitions`` (``send_move``); this module decides when to
move, keeps the delivery loops told (the control key), mirrors the move on a one-off campaign,
and records who pressed the button.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists
from django.utils import timezone

from campaigns.models import AuditEntry, Delivery, Guardrail, Send
from campaigns.publishers import publish_batch, publish_guardrail_notice
from campaigns.selectors.deliveries import send_status_counts
from campaigns.selectors.guardrails import APPROVE_PERMISSION, send_figures
from campaigns.services.audit import By, acting_user, audit_record
from campaigns.services.delivery.dispatch import BatchPublisher, send_dispatch
from campaigns.services.delivery.state import control_publish
from campaigns.services.transitions import IllegalTransition, campaign_mirror_send, send_move

logger = logging.getLogger(__name__)

Status = Send.Status


def send_pause(*, send_id: int, by: By) -> Send:
    """Stops a running send before its next message; no row is lost or sent twice."""
    with transaction.atomic():
        before = _status_of(send_id)
        send, moved = _move(send_id=send_id, to=Status.PAUSED)
        if moved:
            _audit(send, action=AuditEntry.Action.PAUSED, by=by, before=before)
    return send


def send_guardrail_pause(
    *,
    send_id: int,
    guardrail: Guardrail,
    reason: str,
    state: dict[str, Any],
    notify: Callable[[int], None] | None = None,
) -> bool:
    """A guardrail pauses a running send, as the system: the same move as a person's pause
    (every worker stops before its next message), with the guardrail, its reason and what it
    measured written in the same UPDATE. Returns whether this call paused it; a send already
    paused, or finished meanwhile, keeps its state. The approvers' email is published after
    commit, and a broker that does not take it never holds up the caller."""
    extra = {
        "paused_reason": reason[:500],
        "guardrail": guardrail,
        "guardrail_at": timezone.now(),
        "guardrail_state": state,
    }
    try:
        with transaction.atomic():
            send, moved = _move(send_id=send_id, to=Status.PAUSED, **extra)
            if moved:
                changes = {"status": [Status.RUNNING, Status.PAUSED], "guardrail": guardrail}
                audit_record(
                    action=AuditEntry.Action.PAUSED,
                    actor=None,
                    send=send,
                    changes={**changes, "reason": reason},
                )
                transaction.on_commit(lambda: _notify(notify or publish_guardrail_notice, send_id))
    except IllegalTransition:  # completed or cancelled meanwhile: nothing left to pause
        return False
    return moved


def _notify(notify: Callable[[int], None], send_id: int) -> None:
    try:
        notify(send_id)
    except Exception:  # the pause stands; the dashboard and the send page still show it
        logger.exception("Cannot publish the guardrail notice of send %s", send_id)


def send_resume(
    *, send_id: int, by: By, reason: str = "", publish: BatchPublisher = publish_batch
) -> Send:
    """Runs a paused send again and dispatches its queued rows once the move is committed.

    A send a guardrail paused is resumed only by an approver, with a reason: both go into
    the audit trail, and the send's figures at that moment become the accepted baseline the
    guardrails measure from afterwards (services/guardrails.py).
    """
    with transaction.atomic():
        current = Send.objects.select_for_update().get(pk=send_id)
        extra: dict[str, Any] = {}
        if current.status == Status.PAUSED and current.guardrail:
            extra = _guardrail_release(current, by=by, reason=reason)
        send, moved = _move(
            send_id=send_id, to=Status.RUNNING, last_progress_at=timezone.now(), **extra
        )
        if moved:  # a second press finds it running: nothing to record or dispatch again
            changes: dict[str, Any] = {"status": [current.status, send.status]}
            if extra:
                changes |= {"guardrail": current.guardrail, "reason": reason.strip()}
            audit_record(action=AuditEntry.Action.RESUMED, actor=by, send=send, changes=changes)
            transaction.on_commit(lambda: send_dispatch(send_id=send_id, publish=publish))
            if extra:
                transaction.on_commit(lambda: _window_clear(send_id))
    return send


def guardrail_resume_refusal(*, by: By, reason: str = "") -> str:
    """Why ``by`` may not resume a send a guardrail paused ("" when they may)."""
    user = acting_user(by)
    if user is None or not user.has_perm(APPROVE_PERMISSION):
        return "A guardrail paused this send: only an approver can resume it"
    if not reason.strip():
        return "Say why the send may go on: the reason goes into the audit trail"
    return ""


def _guardrail_release(send: Send, *, by: By, reason: str) -> dict[str, Any]:
    """The fields an approved resume writes: the pause cleared, and the figures accepted."""
    if refusal := guardrail_resume_refusal(by=by, reason=reason):
        raise ValidationError(f"{refusal}.")
    user = acting_user(by)
    accepted = {
        **send_figures(send).as_dict(),
        "at": timezone.now().isoformat(),
        "by": user.get_username() if user else "",
        "reason": reason.strip()[:500],
        "guardrail": send.guardrail,
    }
    state = dict(send.guardrail_state or {})
    state["accepted"] = accepted
    state["resumes"] = [*state.get("resumes", []), accepted][-20:]
    return {"paused_reason": "", "guardrail": "", "guardrail_at": None, "guardrail_state": state}


def _window_clear(send_id: int) -> None:
    from campaigns.services.guardrails import guard_window_clear  # it imports this package

    guard_window_clear(send_id=send_id)


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
