"""Storing events as they arrive: one INSERT per request, duplicates ignored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from campaigns.models import DeliveryEvent


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
    DeliveryEvent.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
