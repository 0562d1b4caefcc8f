"""Whether a running send is waiting for a service (Redis, the database, the broker), for the
pages that show it instead of "running"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from campaigns.models import Send, Service
from campaigns.selectors.sends import send_waiting


def clock(moment: datetime) -> str:
    """A time of day as the pages show it: "16:32:05 UTC" (in the site's time zone)."""
    return timezone.localtime(moment).strftime("%H:%M:%S %Z")


def service_label(value: str) -> str:
    """ "Redis", "the database", "the broker"; an unknown value as it is."""
    return str(Service(value).label) if value in Service.values else value


@dataclass(frozen=True)
class SendWait:
    """A running send held up by a service: which one, since when, and its next try if ahead."""

    service: str  # a Service value
    since: datetime | None
    retry_at: datetime | None

    @property
    def label(self) -> str:
        return service_label(self.service)

    def describe(self) -> str:
        """ "Waiting for Redis since 16:32:05 UTC, next try at 16:32:20 UTC"."""
        text = f"Waiting for {self.label}"
        if self.since is not None:
            text += f" since {clock(self.since)}"
        if self.retry_at is not None:
            text += f", next try at {clock(self.retry_at)}"
        return text


def send_wait(send: Send, *, now: datetime | None = None) -> SendWait | None:
    """What ``send`` waits for, or None when it is not running or nothing holds it up."""
    if send.status != Send.Status.RUNNING:
        return None
    service, since = send_waiting(send)
    if not service:
        return None
    now = now or timezone.now()
    due = send.retry_due_at
    return SendWait(service, since, due if due is not None and due > now else None)
