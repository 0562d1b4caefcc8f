"""Storing events as they arrive: one INSERT per request, duplicates ignored.

The request that stores events also asks for an apply run, through a Redis key that means
"a run is pending": the request that sets it (NX) publishes the run, the others see it set
and publish nothing, and the run clears it as it starts, so whatever is stored after that
asks again. So a burst of webhooks queues one run at a time, never one per request, and no
event waits for the next beat tick. Received counts per source are kept in Redis too and
copied to ChannelHealth by the applier, so no request updates one hot row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field
from django.utils import timezone

from campaigns.models import ChannelHealth, DeliveryEvent
from campaigns.services.redisclient import redis_client, redis_failed, redis_up

logger = logging.getLogger(__name__)

# How long a pending ask lives when its run never starts (a message lost with the broker):
# beat's run every few seconds clears it sooner.
APPLY_PENDING_MS = 10_000


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
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DeliveryEvent._meta.db_table} ({', '.join(_COLUMNS)}) "
            f"VALUES {', '.join([one] * len(rows))} "
            "ON CONFLICT (source, event_key) DO NOTHING",
            params,
        )
    counts = Counter(str(row[0]) for row in rows)
    transaction.on_commit(lambda: events_stored(counts=counts, at=now))
    return len(rows)


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
    """This module's Redis keys: "apply-pending", "received", "last-event"."""
    return f"{settings.REDIS_KEY_PREFIX}:events:{name}"


def events_stored(
    *, counts: Mapping[str, int], at: datetime, publish: Callable[[], None] | None = None
) -> bool:
    """After a commit: counts what each source sent, and publishes an apply run unless one
    is pending already (a Redis key set with NX decides, in the same round trip as the
    counts). True when this call published. Without Redis the counts go to
    ChannelHealth directly and every call publishes: correct, only busier."""
    ask = True
    if redis_up() and settings.REDIS_URL:
        try:
            ask = _redis_note(counts, at)
        except redis.RedisError as exc:
            redis_failed(exc)
            _health_note(counts, at)
    else:
        _health_note(counts, at)
    if ask:
        (publish or _publish_apply)()
    return ask


def _redis_note(counts: Mapping[str, int], at: datetime) -> bool:
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(redis_key("apply-pending"), "1", nx=True, px=APPLY_PENDING_MS)
    for source, count in counts.items():
        pipe.hincrby(redis_key("received"), source, count)
        pipe.hset(redis_key("last-event"), source, at.isoformat())
    return bool(pipe.execute()[0])


def _health_note(counts: Mapping[str, int], at: datetime) -> None:
    for source, count in counts.items():
        health_received_add(source=source, count=count, at=at)


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
        apply_events.delay()
    except Exception:  # the broker is down: the beat run applies these events later
        logger.warning("could not publish an event apply run", exc_info=True)


def health_received_add(*, source: str, count: int, at: datetime) -> None:
    ChannelHealth.objects.get_or_create(source=source)
    ChannelHealth.objects.filter(source=source).update(
        events_received=F("events_received") + count, last_event_at=at
    )


def received_flush() -> int:
    """Moves the received counts kept in Redis into ChannelHealth; returns how many sources."""
    if not settings.REDIS_URL:
        return 0
    client = redis_client()
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(redis_key("received"))
    pipe.hgetall(redis_key("last-event"))
    pipe.delete(redis_key("received"), redis_key("last-event"))
    counts, lasts, _ = pipe.execute()
    for source, count in counts.items():
        at = datetime.fromisoformat(lasts[source]) if source in lasts else timezone.now()
        health_received_add(source=source, count=int(count), at=at)
    return len(counts)
