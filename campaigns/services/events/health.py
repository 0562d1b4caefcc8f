"""What went wrong with a source's webhooks, on its ChannelHealth row (rare, so written at once)."""

from __future__ import annotations

from enum import StrEnum

from django.db.models import F
from django.utils import timezone

from campaigns.models import ChannelHealth


class Failure(StrEnum):
    AUTH = "auth"  # wrong or missing basic auth, or a bad signature: nothing was read
    PAYLOAD = "payload"  # authenticated, but not a payload the ESP's parser understands


def health_failure_record(*, source: str, failure: Failure, text: str) -> None:
    """Counts one refused request for ``source`` and keeps what was wrong with it."""
    ChannelHealth.objects.get_or_create(source=source[:32])
    now = timezone.now()
    if failure == Failure.AUTH:
        fields = {
            "auth_failures": F("auth_failures") + 1,
            "last_auth_failure_at": now,
            "last_auth_failure": text[:255],
        }
    else:
        fields = {
            "rejected_payloads": F("rejected_payloads") + 1,
            "last_rejected_at": now,
            "last_rejected": text[:255],
        }
    ChannelHealth.objects.filter(source=source[:32]).update(**fields)
