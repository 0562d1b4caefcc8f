"""The suppression list: addresses opsdash never mails again, and the one way on and off it.

Every path that learns an address must not be mailed (a hard bounce or complaint from an ESP,
repeated soft bounces, a 5.1.1 answer during sending, an unsubscribe at the ESP) goes through
``suppressions_add``; staff take an address off with ``suppression_lift``. The list keeps an
address even when no recipient has it yet, so a later import cannot bring it back as active.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.models import AuditEntry, Recipient, Subscription, Suppression
from campaigns.services.audience_counts import audience_counts_changed
from campaigns.services.audiences import STATUS_CHANGE_PERMISSION, actor_may
from campaigns.services.audit import By, acting_user, audit_record

Reason = Suppression.Reason
Status = Recipient.Status

# The recipient status each reason gives an active person.
REASON_STATUS: dict[str, str] = {
    Reason.HARD_BOUNCE: Status.BOUNCED,
    Reason.SOFT_BOUNCES: Status.BOUNCED,
    Reason.REJECTED: Status.BOUNCED,
    Reason.COMPLAINT: Status.COMPLAINED,
    Reason.ESP_UNSUBSCRIBE: Status.UNSUBSCRIBED,
    Reason.MANUAL: Status.BOUNCED,
}


@dataclass(frozen=True)
class SuppressionIn:
    """One address to suppress; ``email`` is normalised by the caller."""

    email: str
    reason: Suppression.Reason
    detail: str = ""
    source: str = ""
    event_id: int | None = None


@transaction.atomic
def suppressions_add(*, entries: Sequence[SuppressionIn], by: By = None) -> int:
    """Suppresses addresses in bulk; returns how many were not on the list before.

    1. One entry per address (the first wins); an address already listed keeps its row.
    2. New rows are inserted with the recipient they belong to, when there is one.
    3. Active recipients among them take the reason's status (an ESP unsubscribe also leaves
       every list), read under a row lock so a concurrent change is not overwritten.
    4. Each status change is audited with the reason, naming the event that caused it.
    """
    wanted = {entry.email: entry for entry in reversed(entries) if entry.email}
    if not wanted:
        return 0
    recipients = dict(Recipient.objects.filter(email__in=wanted).values_list("email", "id"))
    listed = set(Suppression.objects.filter(email__in=wanted).values_list("email", flat=True))
    new = [entry for email, entry in wanted.items() if email not in listed]
    Suppression.objects.bulk_create(
        [_row(entry, recipients.get(entry.email)) for entry in new], ignore_conflicts=True
    )
    changed = _statuses_change(new, recipients)
    _audit(new, recipients, changed, by)
    return len(new)


def _row(entry: SuppressionIn, recipient_id: int | None) -> Suppression:
    return Suppression(
        email=entry.email[:254],
        reason=entry.reason,
        detail=entry.detail,
        source=entry.source[:32],
        event_id=entry.event_id,
        recipient_id=recipient_id,
    )


def _statuses_change(entries: list[SuppressionIn], recipients: dict[str, int]) -> set[int]:
    """Active recipients of ``entries`` take their reason's status; returns their ids."""
    by_status: dict[str, list[int]] = {}
    for entry in entries:
        if entry.email in recipients:
            by_status.setdefault(REASON_STATUS[entry.reason], []).append(recipients[entry.email])
    changed: set[int] = set()
    now = timezone.now()
    for status, ids in by_status.items():
        locked = list(
            Recipient.objects.select_for_update()
            .filter(pk__in=ids, status=Status.ACTIVE)
            .order_by("id")
            .values_list("id", flat=True)
        )
        Recipient.objects.filter(pk__in=locked).update(status=status, updated_at=now)
        changed.update(locked)
        if status == Status.UNSUBSCRIBED and locked:
            _lists_leave(locked, now)
    return changed


def _lists_leave(recipient_ids: list[int], now: object) -> None:
    left = Subscription.objects.filter(
        recipient_id__in=recipient_ids, status=Subscription.Status.SUBSCRIBED
    ).update(status=Subscription.Status.UNSUBSCRIBED, updated_at=now)
    if left:
        audience_counts_changed()


def _audit(
    entries: list[SuppressionIn], recipients: dict[str, int], changed: set[int], by: By
) -> None:
    """One SUPPRESSED entry per new address; "from"/"to" only where a status changed, as the
    recipient page reads the reason for a status from the entry that set it."""
    rows = []
    for entry in entries:
        recipient_id = recipients.get(entry.email)
        changes: dict[str, object] = {
            "email": entry.email,
            "suppression": entry.reason,
            "reason": _reason_text(entry),
            "source": entry.source,
            "event": entry.event_id,
        }
        if recipient_id is not None:
            changes["recipient"] = recipient_id
        if recipient_id in changed:
            changes.update({"from": Status.ACTIVE, "to": REASON_STATUS[entry.reason]})
        rows.append(
            AuditEntry(
                action=AuditEntry.Action.SUPPRESSED,
                actor=acting_user(by),
                recipient_id=recipient_id,
                changes=changes,
            )
        )
    AuditEntry.objects.bulk_create(rows)


def _reason_text(entry: SuppressionIn) -> str:
    label = Reason(entry.reason).label
    return f"{label}: {entry.detail}" if entry.detail else str(label)


@transaction.atomic
def suppression_lift(*, email: str, by: By, reason: str) -> bool:
    """Takes ``email`` off the list; False when it was not on it. A recipient whose status
    came from this suppression becomes active again (leaving the lists they left stays left).

    Lifting a complaint overrides a person's "this is spam", so it needs a reason in words.
    Raises PermissionDenied or ValidationError.
    """
    if not actor_may(by=by, permission=STATUS_CHANGE_PERMISSION):
        raise PermissionDenied("Lifting a suppression needs the recipient status permission.")
    row = Suppression.objects.select_for_update().filter(email=email).first()
    if row is None:
        return False
    reason = reason.strip()
    if row.reason == Reason.COMPLAINT and not reason:
        raise ValidationError("This person marked a message as spam: say why they may be mailed.")
    row.delete()
    recipient = Recipient.objects.select_for_update().filter(email=email).first()
    changes: dict[str, object] = {"email": email, "suppression": row.reason, "reason": reason}
    if recipient is not None:
        changes["recipient"] = recipient.pk
        if recipient.status == REASON_STATUS[row.reason]:
            Recipient.objects.filter(pk=recipient.pk).update(
                status=Status.ACTIVE, updated_at=timezone.now()
            )
            changes.update({"from": recipient.status, "to": Status.ACTIVE})
    audit_record(
        action=AuditEntry.Action.SUPPRESSION_LIFTED,
        actor=by,
        recipient=recipient,
        changes=changes,
    )
    return True
