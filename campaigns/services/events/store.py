"""Storing events as they arrive: one INSERT per request, duplicates ignored.

The request that stores events also asks for an apply run, at most about once a second
across all web processes (a Redis key set with NX and a short expiry decides who publishes),
and counts what it received per source in Redis, which the applier copies to ChannelHealth:
so a burst of webhooks never queues one task per request, nor updates one hot row each.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import ChannelHealth, DeliveryEvent
from campaigns.services.redisclient import redis_client, redis_failed, redis_up

logger = logging.getLogger(__name__)

# An apply run is asked for at most once per this many milliseconds; beat runs one every few
# seconds as well, so a request whose ask was absorbed is applied soon all the same.
APPLY_REQUEST_MS = 1000


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


def events_store(events: Sequence[EventIn]) -> int:
    """Inserts ``events`` in one statement; an event already stored is ignored. Returns how
    many rows the call was given (PostgreSQL does not say how many conflicts it skipped)."""
    now = timezone.now()
    rows = [
        DeliveryEvent(
            source=event.source[:32],
            event_key=event.key(),
            kind=event.kind,
            message_id=event.message_id[:255],
            email=event.email[:254],
            delivery_id=event.delivery_id,
            occurred_at=event.occurred_at,
            received_at=now,
            description=event.description,
            mta_response=event.mta_response,
            payload=event.payload,
        )
        for event in events
    ]
    if not rows:
        return 0
    DeliveryEvent.objects.bulk_create(rows, ignore_conflicts=True)
    for source, count in Counter(row.source for row in rows).items():
        received_count(source=source, count=count, at=now)
    transaction.on_commit(events_apply_request)
    return len(rows)


def redis_key(name: str) -> str:
    """This module's Redis keys: "apply-requested", "received", "last-event"."""
    return f"{settings.REDIS_KEY_PREFIX}:events:{name}"


def events_apply_request(*, publish: Callable[[], None] | None = None) -> bool:
    """Publishes an apply run unless one was asked for within the last second; True when
    this call published. Without Redis every call publishes (correct, only busier)."""
    if redis_up() and settings.REDIS_URL:
        try:
            if not redis_client().set(
                redis_key("apply-requested"), "1", nx=True, px=APPLY_REQUEST_MS
            ):
                return False
        except redis.RedisError as exc:
            redis_failed(exc)
    (publish or _publish_apply)()
    return True


def _publish_apply() -> None:
    # Imported here, as campaigns.publishers does: the tasks module imports the services.
    from campaigns.tasks import apply_events

    try:
        apply_events.delay()
    except Exception:  # the broker is down: the beat run applies these events later
        logger.warning("could not publish an event apply run", exc_info=True)


def received_count(*, source: str, count: int, at: datetime) -> None:
    """Adds ``count`` events to ``source``'s received total: in Redis (copied to ChannelHealth
    by the applier), or straight into the row when Redis is not there."""
    if redis_up() and settings.REDIS_URL:
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.hincrby(redis_key("received"), source, count)
            pipe.hset(redis_key("last-event"), source, at.isoformat())
            pipe.execute()
            return
        except redis.RedisError as exc:
            redis_failed(exc)
    health_received_add(source=source, count=count, at=at)


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
