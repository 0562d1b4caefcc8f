"""System status for the dashboard's live panel: workers online and queue depths, cached."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.selectors.cache import cache_get_or_compute
from campaigns.services.broker import broker_report

SYSTEM_CACHE_SECONDS = 10
SYSTEM_CACHE_KEY = "dashboard:system:v1"


def system_status() -> dict[str, Any]:
    """Workers online and queue depths, cached; every part fails soft to "unavailable"."""
    return dict(cache_get_or_compute(SYSTEM_CACHE_KEY, SYSTEM_CACHE_SECONDS, _ask_broker))


def _ask_broker() -> dict[str, Any]:
    report = broker_report(queues=settings.QUEUES)
    return {
        "workers": report.workers,
        "queues": report.queues,
        "reason": report.reason,
        "checked_at": timezone.now(),
    }
