"""Applying stored events in bulk: deliveries, per-send counters and suppressions.

A run takes unapplied events in chunks, one transaction per chunk, with ``FOR UPDATE SKIP
LOCKED`` so that two workers split the queue instead of waiting on each other; a crash inside
a chunk rolls the whole chunk back, to be applied again by the next run. Every step is a
statement over the chunk, never one per event, and every step is idempotent: a Delivery's
first-time column (``bounced_at``, ...) is only ever set where it is still empty, and the
Send's counter moves by the rows that statement changed, so the same event twice, or a late
one out of order, never counts twice.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import Delivery, DeliveryEvent, Send, Suppression
from campaigns.services.events.store import apply_pending_clear, health_received_add
from campaigns.services.guardrails import send_guard
from campaigns.services.suppressions import SuppressionIn, suppressions_add

logger = logging.getLogger(__name__)

Kind = DeliveryEvent.Kind
CHUNK_SIZE = 1000
# The kinds that count once per delivery: Delivery.<name>_at and Send.<name>_count.
COUNTED: dict[str, str] = {
    Kind.DELIVERED: "delivered",
    Kind.SOFT_BOUNCED: "soft_bounced",
    Kind.BOUNCED: "bounced",
    Kind.COMPLAINED: "complained",
    Kind.UNSUBSCRIBED: "unsubscribed",
    Kind.OPENED: "opened",
    Kind.CLICKED: "clicked",
}
# The kinds that put the address on the suppression list at once.
SUPPRESSING: dict[str, Suppression.Reason] = {
    Kind.BOUNCED: Suppression.Reason.HARD_BOUNCE,
    Kind.COMPLAINED: Suppression.Reason.COMPLAINT,
    Kind.REJECTED: Suppression.Reason.REJECTED,
    Kind.UNSUBSCRIBED: Suppression.Reason.ESP_UNSUBSCRIBE,
}
# Our own Message-ID (Delivery.message_id), which bounce mail and SMTP events carry.
_OUR_MESSAGE_ID = re.compile(r"^<?send-(\d+)\.rcpt-(\d+)@[^>]*>?$")
_FIELDS = ("id", "source", "kind", "message_id", "email", "delivery_id", "description")


@dataclass
class ApplyResult:
    events: int = 0
    counted: int = 0  # first-time marks set on deliveries (so counter increments)
    suppressed: int = 0  # addresses newly on the suppression list
    # Sends whose bounce or complaint counters the last chunk moved: their guardrails are
    # checked once the chunk is committed.
    to_guard: set[int] = field(default_factory=set)


def events_apply(*, chunk_size: int = CHUNK_SIZE, max_chunks: int = 1000) -> ApplyResult:
    """Applies unapplied events, a chunk at a time, until none are left (or ``max_chunks``,
    so one run never holds a worker for ever). The pending ask is cleared first: an event
    committed after that asks for a run of its own, so none is left waiting for beat."""
    apply_pending_clear()
    result = ApplyResult()
    for _ in range(max_chunks):
        held = chunk_apply(chunk_size=chunk_size, result=result)
        _guard(result)
        if held < chunk_size:
            break
    return result


def _guard(result: ApplyResult) -> None:
    for send_id in sorted(result.to_guard):
        send_guard(send_id=send_id)
    result.to_guard.clear()


@transaction.atomic
def chunk_apply(*, chunk_size: int, result: ApplyResult) -> int:
    """Applies one chunk in one transaction; returns how many events it held.

    1. Claim up to ``chunk_size`` unapplied events (skipping rows another run holds).
    2. Link each to its delivery (the ESP's message id, or our own Message-ID) and fill in
       the address from the delivery where the event had none.
    3. Set each delivery's first-time column for the event's kind, and move the counters.
    4. Suppress the addresses the events condemn; count soft bounces against the limit.
    5. Mark the chunk applied.
    """
    ids = list(
        DeliveryEvent.objects.select_for_update(skip_locked=True)
        .filter(applied_at=None)
        .order_by("id")
        .values_list("id", flat=True)[:chunk_size]
    )
    if not ids:
        return 0
    _received_count(ids)
    _deliveries_link(ids)
    events = list(DeliveryEvent.objects.filter(pk__in=ids).order_by("id").values(*_FIELDS))
    result.counted += _counters_apply(ids, events, to_guard=result.to_guard)
    result.suppressed += _suppress(events)
    DeliveryEvent.objects.filter(pk__in=ids).update(applied_at=timezone.now())
    result.events += len(ids)
    return len(ids)


def _received_count(ids: list[int]) -> None:
    """Counts the chunk's events on each source's ChannelHealth, with the latest arrival."""
    received = (
        DeliveryEvent.objects.filter(pk__in=ids)
        .values("source")
        .annotate(count=Count("id"), last=Max("received_at"))
        .order_by("source")  # the rows are locked in the same order by every run
    )
    for row in received:
        health_received_add(source=row["source"], count=row["count"], at=row["last"])


def _deliveries_link(ids: list[int]) -> None:
    unlinked = DeliveryEvent.objects.filter(pk__in=ids, delivery_id=None).exclude(message_id="")
    unlinked.update(
        delivery_id=Subquery(
            Delivery.objects.filter(esp_message_id=OuterRef("message_id"))
            .exclude(esp_message_id="")  # the partial index's condition, so the index is used
            .order_by()  # the model's ordering by id would walk the primary key instead
            .values("id")[:1]
        )
    )
    _our_message_ids_link(ids)
    DeliveryEvent.objects.filter(pk__in=ids, email="", delivery_id__isnull=False).update(
        email=Coalesce(
            Subquery(
                Delivery.objects.filter(pk=OuterRef("delivery_id")).values("recipient__email")[:1]
            ),
            F("email"),
        )
    )


def _our_message_ids_link(ids: list[int]) -> None:
    """Events carrying our own Message-ID (bounce mail, the SMTP channel): rare next to the
    ESPs' ids, so linked with a query per distinct send."""
    wanted: dict[tuple[int, int], list[int]] = defaultdict(list)
    rows = DeliveryEvent.objects.filter(pk__in=ids, delivery_id=None, message_id__contains="rcpt-")
    for event_id, message_id in rows.values_list("id", "message_id"):
        if match := _OUR_MESSAGE_ID.match(message_id.strip()):
            wanted[(int(match[1]), int(match[2]))].append(event_id)
    by_send: dict[int, list[int]] = defaultdict(list)
    for send_id, recipient_id in wanted:
        by_send[send_id].append(recipient_id)
    for send_id, recipient_ids in by_send.items():
        found = Delivery.objects.filter(send_id=send_id, recipient_id__in=recipient_ids)
        for delivery_id, recipient_id in found.values_list("id", "recipient_id"):
            events = wanted[(send_id, recipient_id)]
            DeliveryEvent.objects.filter(pk__in=events).update(delivery_id=delivery_id)


# The counters the guardrails read (services/guardrails.py).
_GUARDED = {"bounced_count", "complained_count"}


def _counters_apply(ids: list[int], events: list[dict[str, object]], *, to_guard: set[int]) -> int:
    """Per counted kind: the deliveries whose first-time column is still empty take the
    earliest event's time; each Send's counter moves by the rows that changed."""
    kinds = {str(e["kind"]) for e in events if e["delivery_id"] is not None} & set(COUNTED)
    moves: dict[int, Counter[str]] = defaultdict(Counter)
    for kind in sorted(kinds):
        name = COUNTED[kind]
        for send_id, changed in _first_marks(ids, kind, f"{name}_at").items():
            moves[send_id][f"{name}_count"] += changed
    for send_id, counts in moves.items():
        Send.objects.filter(pk=send_id).update(**{name: F(name) + n for name, n in counts.items()})
        if _GUARDED & set(counts):
            to_guard.add(send_id)
    return sum(sum(c.values()) for c in moves.values())


def _first_marks(ids: list[int], kind: str, column: str) -> Counter[int]:
    """Sets ``column`` where empty on the deliveries ``kind`` events of the chunk name;
    returns rows changed per send. The rows are locked first, so a concurrent run that set
    the same column is seen (its rows no longer match ``IS NULL``) rather than counted again."""
    events = DeliveryEvent.objects.filter(pk__in=ids, kind=kind, delivery_id__isnull=False)
    targets = Delivery.objects.filter(
        pk__in=events.values("delivery_id"), **{f"{column}__isnull": True}
    )
    # Locked in id order, as every run locks them: two runs never wait on each other in a cycle.
    rows = list(targets.order_by("id").select_for_update().values_list("id", "send_id"))
    if not rows:
        return Counter()
    first_seen = (
        events.filter(delivery_id=OuterRef("pk"))
        .annotate(at=Coalesce("occurred_at", "received_at"))
        .order_by("at")
        .values("at")[:1]
    )
    Delivery.objects.filter(pk__in=[pk for pk, _ in rows]).update(**{column: Subquery(first_seen)})
    return Counter(send_id for _, send_id in rows)


def _suppress(events: list[dict[str, object]]) -> int:
    entries = [
        SuppressionIn(
            email=str(e["email"]),
            reason=SUPPRESSING[str(e["kind"])],
            detail=str(e["description"]),
            source=str(e["source"]),
            event_id=int(str(e["id"])),
        )
        for e in events
        if str(e["kind"]) in SUPPRESSING and e["email"]
    ]
    soft = {
        str(e["email"]): str(e["source"])
        for e in events
        if e["kind"] == Kind.SOFT_BOUNCED and e["email"]
    }
    entries += _soft_bounces_over_limit(soft)
    return suppressions_add(entries=entries) if entries else 0


def _soft_bounces_over_limit(emails: dict[str, str]) -> list[SuppressionIn]:
    """Addresses with OPSDASH_SOFT_BOUNCE_LIMIT soft bounces or more within the window,
    counting the events just stored (applied or not)."""
    if not emails:
        return []
    limit = settings.OPSDASH_SOFT_BOUNCE_LIMIT
    days = settings.OPSDASH_SOFT_BOUNCE_WINDOW_DAYS
    since = timezone.now() - timedelta(days=days)
    counts = (
        DeliveryEvent.objects.filter(email__in=emails, kind=Kind.SOFT_BOUNCED)
        .filter(Q(occurred_at__gte=since) | Q(occurred_at=None, received_at__gte=since))
        .values("email")
        .annotate(n=Count("id"), last=Max("id"))
        .filter(n__gte=limit)
    )
    return [
        SuppressionIn(
            email=row["email"],
            reason=Suppression.Reason.SOFT_BOUNCES,
            detail=f"{row['n']} soft bounces within {days} days",
            source=emails[row["email"]],
            event_id=row["last"],
        )
        for row in counts
    ]
