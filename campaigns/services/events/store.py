"""Storing events as they arrive: one INSERT per request, duplicates ignored.

The request that stores events also asks for an apply run (``apply_ask``). A run is
published with a second's countdown, and a Redis key that means "a run is pending", holding
the time it is due, is set with it (NX): whoever sets the key publishes, and the run clears it
as it starts, so whatever is stored after that asks again. A process that published, or saw
the key, knows a run is coming that will take whatever it stores until shortly before that
run is due, and asks nothing more until then: a burst of webhooks costs a few Redis round
trips a second in all, not one per request, and no event waits for the next beat tick.
The received counts per source are the applier's to keep (ChannelHealth), from the events
it applies, so no request updates one hot row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Field, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from campaigns.models import ChannelHealth, DeliveryEvent
from campaigns.services.redisclient import redis_client, redis_failed, redis_up

logger = logging.getLogger(__name__)

# How long a pending ask lives when its run never starts (a message lost with the broker):
# beat's run every few seconds clears it sooner.
APPLY_PENDING_MS = 10_000
APPLY_GATHER_SECONDS = 1.0


@dataclass(frozen=True)
class EventIn:
    """One normalised event, as a receiver hands it over."""

    source: str  # "postmark", "amazon_ses", "mailgun", ..., or "bounce_mail"
    kind: DeliveryEvent.Kind
    event_key: str = ""  # the provider's event id; a digest of the content when empty
    message_id: str = ""
    email: str = ""
    delivery_id: int | None = None
    occurred_at: datetime | None = None
    description: str = ""
    mta_response: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        if self.event_key:
            return self.event_key[:128]
        content = json.dumps(
            [self.kind, self.message_id, self.email, self.delivery_id, str(self.occurred_at)],
            default=str,
        )
        return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


# The columns the store writes; the rest keep their defaults (applied_at stays empty).
_COLUMNS = (
    "source",
    "event_key",
    "kind",
    "message_id",
    "email",
    "delivery_id",
    "occurred_at",
    "received_at",
    "description",
    "mta_response",
    "payload",
)


def events_store(events: Sequence[EventIn]) -> int:
    """Inserts ``events`` in one statement; an event already stored is ignored. Returns how
    many rows the call was given (PostgreSQL does not say how many conflicts it skipped).

    A plain INSERT ... ON CONFLICT DO NOTHING rather than ``bulk_create``: in autocommit it is
    one round trip to the database, where ``bulk_create`` adds its own transaction around it;
    on the webhook path, which does little else, that was half the request. Once the rows
    are committed, one Redis round trip counts them and asks for an apply run.
    """
    now = timezone.now()
    rows = [_row(event, now) for event in events]
    if not rows:
        return 0
    fields = [_field(name) for name in _COLUMNS]
    params = [
        field.get_db_prep_save(value, connection)
        for row in rows
        for field, value in zip(fields, row, strict=True)
    ]
    one = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    _insert(
        f"INSERT INTO {DeliveryEvent._meta.db_table} ({', '.join(_COLUMNS)}) "
        f"VALUES {', '.join([one] * len(rows))} "
        "ON CONFLICT (source, event_key) DO NOTHING",
        params,
    )
    transaction.on_commit(apply_ask)
    return len(rows)


def _insert(sql: str, params: list[Any]) -> None:
    """Runs the INSERT; outside a transaction the INSERT itself is the connection's check.

    Django checks a kept-alive connection with a query of its own before a request's first
    one (CONN_HEALTH_CHECKS), a round trip as long as the INSERT on a request that does little
    else. Here a connection that went stale (a database restart) is closed instead and the
    INSERT run once more on a fresh one: it ignores rows already stored, so running it twice
    is harmless even when the first one committed before its answer was lost.
    """
    if connection.in_atomic_block:  # a caller's transaction: it owns the connection
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    connection.health_check_done = True  # type: ignore[attr-defined]  # not in the stubs
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except (OperationalError, InterfaceError):
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _field(name: str) -> Field[Any, Any]:
    field = DeliveryEvent._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _row(event: EventIn, now: datetime) -> tuple[object, ...]:
    return (
        event.source[:32],
        event.key(),
        str(event.kind),
        event.message_id[:255],
        event.email[:254],
        event.delivery_id,
        event.occurred_at,
        now,
        event.description,
        event.mta_response,
        event.payload,
    )


def redis_key(name: str) -> str:
    """This module's Redis keys: "apply-pending"."""
    return f"{settings.REDIS_KEY_PREFIX}:events:{name}"


# Until when (time.monotonic) this process knows an apply run is still to start: what it
# stores before then is committed before that run claims its first chunk.
_covered_until = 0.0
# How long before a pending run is due this process stops counting on it: room for clock
# differences between hosts (the due time is wall-clock) and for the run's own start.
_COVER_MARGIN = 0.3


def apply_ask(*, publish: Callable[[], None] | None = None) -> bool:
    """Asks for an apply run of what was just stored, unless one is known to be coming;
    True when this call published one. Without Redis every ask publishes: correct, only
    busier (the runs then find little to do)."""
    global _covered_until
    now = time.monotonic()
    if now < _covered_until:
        return False
    due_in = APPLY_GATHER_SECONDS
    if redis_up() and settings.REDIS_URL:
        try:
            due_in = _pending_set()
        except redis.RedisError as exc:
            redis_failed(exc)
    if due_in == APPLY_GATHER_SECONDS:  # the key was ours to set (or Redis is out)
        (publish or _publish_apply)()
    _covered_until = now + min(due_in, APPLY_GATHER_SECONDS) - _COVER_MARGIN
    return due_in == APPLY_GATHER_SECONDS


def _pending_set() -> float:
    """Sets the pending key to the time a new run would be due, unless it is set; returns in
    how many seconds the pending run is due (APPLY_GATHER_SECONDS when this call set it)."""
    due = time.time() + APPLY_GATHER_SECONDS
    previous = redis_client().set(
        redis_key("apply-pending"), f"{due:.3f}", nx=True, px=APPLY_PENDING_MS, get=True
    )
    if previous is None:
        return APPLY_GATHER_SECONDS
    try:
        return max(0.0, min(float(previous) - time.time(), APPLY_GATHER_SECONDS - 0.001))
    except ValueError:  # a value this code never writes: count on nothing
        return 0.0


def apply_pending_clear() -> None:
    """Called by a run as it starts: events stored from now on ask for the next run."""
    if redis_up() and settings.REDIS_URL:
        try:
            redis_client().delete(redis_key("apply-pending"))
        except redis.RedisError as exc:
            redis_failed(exc)


def _publish_apply() -> None:
    # Imported here, as campaigns.publishers does: the tasks module imports the services.
    from campaigns.tasks import apply_events

    try:
        # A second's gathering: a burst of webhooks is applied in a few large chunks, not one
        # small run after another, and the pending ask stays set (one publish) meanwhile.
        apply_events.apply_async(countdown=APPLY_GATHER_SECONDS)
    except Exception:  # the broker is down: the beat run applies these events later
        logger.warning("could not publish an event apply run", exc_info=True)


def health_received_add(*, source: str, count: int, at: datetime) -> None:
    """Counts ``count`` events received from ``source``, the latest at ``at``."""
    ChannelHealth.objects.get_or_create(source=source)
    ChannelHealth.objects.filter(source=source).update(
        events_received=F("events_received") + count,
        last_event_at=Greatest(Coalesce("last_event_at", Value(at)), Value(at)),
    )
