"""System status for the dashboard's live panel: workers online and queue depths, cached."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from campaigns.services.broker import broker_report

SYSTEM_CACHE_SECONDS = 10
SYSTEM_CACHE_KEY = "dashboard:system:v1"


def system_status() -> dict[str, Any]:
    """Workers online and queue depths, cached; every part fails soft to "unavailable"."""
    cached = cache.get(SYSTEM_CACHE_KEY)
    if cached is not None:
        return dict(cached)
    report = broker_report(queues=settings.QUEUES)
    status = {
        "workers": report.workers,
        "queues": report.queues,
        "reason": report.reason,
        "checked_at": timezone.now(),
    }
    cache.set(SYSTEM_CACHE_KEY, status, SYSTEM_CACHE_SECONDS)
    return status
