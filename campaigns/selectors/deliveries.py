"""Counts over a send's Delivery rows, for the send page and for the services that close a send;
and one delivery's timeline, for its own page.

This module imports nothing from the services, so the delivery services can read through it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count

from campaigns.models import Delivery, DeliveryEvent


def send_status_counts(*, send_id: int) -> dict[str, int]:
    """How many of a send's Delivery rows are in each status: one grouped count that the
    (send, status) index answers alone."""
    return dict(
        Delivery.objects.filter(send_id=send_id)
        .values_list("status")
        .annotate(n=Count("*"))
        .order_by()
        .values_list("status", "n")
    )


# --- One delivery's timeline ----------------------------------------------------------------

# "attempt 2 at 2026-11-25 18:20:05: 451 4.7.1 Try again later", as the outcome recorder
# writes each failed attempt into last_error (the time is UTC).
ATTEMPT_LINE = re.compile(
    r"^attempt (?P<n>\d+) at (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d): ?(?P<reply>.*)$"
)
TIMELINE_EVENTS = 200  # a message gets a handful; opens and clicks can repeat, so a cap
EVENT_LEVELS: dict[str, str] = {
    DeliveryEvent.Kind.DELIVERED: "success",
    DeliveryEvent.Kind.DEFERRED: "warning",
    DeliveryEvent.Kind.SOFT_BOUNCED: "warning",
    DeliveryEvent.Kind.UNSUBSCRIBED: "warning",
    DeliveryEvent.Kind.BOUNCED: "danger",
    DeliveryEvent.Kind.REJECTED: "danger",
    DeliveryEvent.Kind.COMPLAINED: "danger",
}


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a delivery's history, worded for the people who answer "what happened to
    this message?"."""

    at: datetime | None
    title: str  # "Queued at launch", "Attempt 2", "Delivered"
    text: str = ""  # the server's reply, the event's description
    response: str = ""  # the receiving MTA's answer, as an ESP reported it
    source: str = ""  # where an event came from: an ESP's name or "bounce_mail"
    level: str = ""  # "", "success", "warning", "danger"
    payload: str = ""  # an event's raw payload as indented JSON, for a "details" disclosure


def delivery_timeline(delivery: Delivery) -> list[TimelineEntry]:
    """Everything known about one delivery, oldest first.

    1. Queued: when its send started (rows are written at launch).
    2. Each failed attempt, from the lines kept in ``last_error``.
    3. Sent (with the final SMTP or ESP answer), failed for good, or skipped and why.
    4. Every event a provider or the bounce receiver reported for it (the delivery_id index).
    """
    entries = [*_queued(delivery), *_attempts(delivery.last_error), *_outcome(delivery)]
    entries += [_event_entry(event) for event in _events(delivery.pk)]
    earliest = datetime.min.replace(tzinfo=UTC)
    return sorted(entries, key=lambda entry: entry.at or earliest)


def _queued(delivery: Delivery) -> list[TimelineEntry]:
    send = delivery.send
    at = send.started_at or send.created_at
    return [TimelineEntry(at, "Queued at launch", f"{send} started; the message waits its turn.")]


def _attempts(last_error: str) -> list[TimelineEntry]:
    entries = []
    for line in last_error.splitlines():
        match = ATTEMPT_LINE.match(line.strip())
        if match is None:
            if line.strip():  # an older or unexpected line: shown as it is, not lost
                entries.append(TimelineEntry(None, "Error", line.strip(), level="warning"))
            continue
        at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        title = f"Attempt {match['n']} failed"
        entries.append(TimelineEntry(at, title, match["reply"], level="warning"))
    return entries


def _outcome(delivery: Delivery) -> list[TimelineEntry]:
    status = delivery.status
    if status == Delivery.Status.SENT:
        text = delivery.smtp_response or "accepted"
        return [TimelineEntry(delivery.sent_at, "Sent", text, level="success")]
    if status == Delivery.Status.FAILED:
        reply = delivery.smtp_response or "no answer recorded"
        return [TimelineEntry(delivery.updated_at, "Failed for good", reply, level="danger")]
    if status == Delivery.Status.SKIPPED:
        reason = Delivery.SkipReason(delivery.skip_reason).label
        return [TimelineEntry(delivery.updated_at, "Skipped", f"Not sent: {reason}.")]
    return [TimelineEntry(delivery.updated_at, f"{delivery.get_status_display()} (not sent yet)")]


def _events(delivery_id: int) -> list[DeliveryEvent]:
    rows = DeliveryEvent.objects.filter(delivery_id=delivery_id).order_by("id")
    return list(rows[:TIMELINE_EVENTS])


def _event_entry(event: DeliveryEvent) -> TimelineEntry:
    payload = json.dumps(event.payload, indent=2, sort_keys=True) if event.payload else ""
    return TimelineEntry(
        at=event.occurred_at or event.received_at,
        title=str(event.get_kind_display()),
        text=event.description,
        response=event.mta_response,
        source=event.source,
        level=EVENT_LEVELS.get(event.kind, ""),
        payload=payload,
    )
