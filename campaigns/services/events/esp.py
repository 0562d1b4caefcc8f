"""django-anymail's normalised tracking events, as opsdash's own ``EventIn``.

Anymail names what happened (``event_type``) the same way for every ESP, but calls a soft and
a hard bounce both "bounced"; only the ESP's own fields say which, so those are read here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.http import QueryDict

from campaigns.models import DeliveryEvent
from campaigns.services.audiences import InvalidEmail, normalise_email
from campaigns.services.events.store import EventIn

Kind = DeliveryEvent.Kind

# Anymail's event types that map to one kind whatever the ESP (bounces are decided below).
_KINDS: dict[str, DeliveryEvent.Kind] = {
    EventType.QUEUED: Kind.QUEUED,
    EventType.SENT: Kind.SENT,
    EventType.DELIVERED: Kind.DELIVERED,
    EventType.DEFERRED: Kind.DEFERRED,
    EventType.COMPLAINED: Kind.COMPLAINED,
    EventType.UNSUBSCRIBED: Kind.UNSUBSCRIBED,
    EventType.OPENED: Kind.OPENED,
    EventType.CLICKED: Kind.CLICKED,
}
# An ESP's refusal that says the address itself is bad, so it is suppressed; others (a policy
# block, the ESP's own unsubscribe list) are recorded as "other".
_ADDRESS_REJECTIONS = (RejectReason.INVALID, RejectReason.BOUNCED)
# The stored copy of the ESP's event is for people reading the timeline; a huge one is cut.
PAYLOAD_MAX_CHARS = 8_000


def event_from_anymail(event: AnymailTrackingEvent, *, source: str) -> EventIn:
    """The ``EventIn`` for one anymail tracking event from ``source`` ("postmark", ...)."""
    payload = payload_safe(event.esp_event)
    recipient = str(event.recipient or "")
    return EventIn(
        source=source,
        kind=_kind(event, payload),
        event_key=_key(event, recipient),
        message_id=str(event.message_id or ""),
        email=email_clean(recipient),
        occurred_at=event.timestamp,
        description=_description(event),
        mta_response=str(event.mta_response or ""),
        payload=payload,
    )


def _kind(event: AnymailTrackingEvent, payload: dict[str, Any]) -> DeliveryEvent.Kind:
    if event.event_type == EventType.BOUNCED:
        return Kind.BOUNCED if bounce_is_hard(payload) else Kind.SOFT_BOUNCED
    if event.event_type == EventType.REJECTED:
        return Kind.REJECTED if event.reject_reason in _ADDRESS_REJECTIONS else Kind.OTHER
    return _KINDS.get(str(event.event_type), Kind.OTHER)


def bounce_is_hard(payload: Mapping[str, Any]) -> bool:
    """Whether an ESP's "bounced" event is permanent, from the ESP's own words.

    Postmark: ``Type`` HardBounce (SoftBounce, VirusNotification... are soft). Amazon SES:
    ``bounce.bounceType`` Permanent (Transient, Undetermined are soft). SendGrid: ``type``
    bounce (blocked is soft). Mailgun sends temporary failures as "deferred" already, so its
    "bounced" is permanent; so is any other ESP's, which has no finer word for it.
    """
    if "RecordType" in payload:  # Postmark
        return bool(payload.get("Type") == "HardBounce")
    bounce = payload.get("bounce")
    if isinstance(bounce, Mapping):  # Amazon SES
        return bool(bounce.get("bounceType") == "Permanent")
    event_data = payload.get("event-data")
    if isinstance(event_data, Mapping):  # Mailgun
        return bool(event_data.get("severity", "permanent") == "permanent")
    if payload.get("event") == "bounce" and "type" in payload:  # SendGrid
        return payload.get("type") == "bounce"
    return True


def _key(event: AnymailTrackingEvent, recipient: str) -> str:
    """The ESP's event id; one notification can name several recipients (Amazon SES), so the
    address is part of the key. Empty: the store keys the event by a digest of its content."""
    if not event.event_id:
        return ""
    key = f"{event.event_id}/{recipient.lower()}" if recipient else str(event.event_id)
    return key if len(key) <= 128 else ""


def _description(event: AnymailTrackingEvent) -> str:
    text = str(event.description or "")
    if event.event_type == EventType.REJECTED and event.reject_reason:
        return (
            f"Rejected ({event.reject_reason}): {text}"
            if text
            else f"Rejected ({event.reject_reason})"
        )
    return text


def email_clean(raw: str) -> str:
    """The normalised address, or the trimmed lower-case text when it does not parse (kept so
    a person can still see what the ESP sent)."""
    if not raw:
        return ""
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return raw.strip().lower()[:254]


def payload_safe(esp_event: object) -> dict[str, Any]:
    """The ESP's event as a JSON object of bounded size."""
    if isinstance(esp_event, QueryDict):
        data: object = {key: esp_event.getlist(key) for key in esp_event}
    else:
        data = esp_event
    text = json.dumps(data, default=str)
    if len(text) > PAYLOAD_MAX_CHARS:
        return {"truncated": text[:PAYLOAD_MAX_CHARS]}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"event": value}
