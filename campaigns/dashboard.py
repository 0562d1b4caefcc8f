"""Unfold's dashboard callback (settings.UNFOLD["DASHBOARD_CALLBACK"]) and its live panel.

The page itself only reads the database (cached numbers); the broker is asked in a separate
fragment the page loads afterwards, so a slow or absent RabbitMQ never slows the dashboard.
How the numbers look (chart colours and options) is decided here, not in the selectors.
Redis is only a cache here: when it is down the page computes its numbers directly and its
"Services" line says Redis is unavailable, next to any service the sends are waiting for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from campaigns.models import Delivery, Service
from campaigns.selectors.cache import cache_unavailable_since
from campaigns.selectors.dashboard import (
    OutcomeSeries,
    WaitingSend,
    dashboard_stats,
    onboarding_steps,
)
from campaigns.selectors.guardrails import guardrail_paused_sends
from campaigns.selectors.health import clock, service_label
from campaigns.selectors.pacing import pacing_panel
from campaigns.selectors.system import system_status

CHART_COLOURS = {
    Delivery.Status.SENT: "var(--color-primary-600)",
    Delivery.Status.FAILED: "#dc2626",
    Delivery.Status.SKIPPED: "var(--color-base-400)",
}
CHART_OPTIONS = {
    "animation": False,
    "responsive": True,
    "maintainAspectRatio": False,
    "scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}},
    "plugins": {"legend": {"align": "end"}},
}


@dataclass(frozen=True)
class ServiceOutage:
    """A service the dashboard knows to be out: which, since when, and how it knows."""

    label: str  # "Redis", "the database", "the broker"
    since: str  # "16:32:05 UTC", or "" when unknown
    seen: str


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    stats = dashboard_stats(now=timezone.now())
    context.update(stats)
    context.update(
        {
            "chart_data": json.dumps(outcomes_chart(stats["outcomes"])),
            "chart_options": json.dumps(CHART_OPTIONS),
            "onboarding": onboarding_steps(),
            "guardrail_pauses": guardrail_paused_sends(),
            "pacing": pacing_panel(),
            "services_out": services_out(
                cache_down_since=cache_unavailable_since(), waiting=stats["waiting_sends"]
            ),
        }
    )
    return context


def services_out(
    *, cache_down_since: datetime | None, waiting: list[WaitingSend]
) -> list[ServiceOutage]:
    """Redis when this page could not reach it, then each service that sends are waiting for."""
    outages: dict[str, ServiceOutage] = {}
    if cache_down_since is not None:
        redis = Service.REDIS
        outages[redis] = ServiceOutage(service_label(redis), clock(cache_down_since), "this page")
    for item in waiting:  # the longest waiting first, so the first send gives the start
        wait = item.wait
        if wait.service not in outages and wait.service != Service.WARMUP:  # a plan, not down
            count = sum(1 for other in waiting if other.wait.service == wait.service)
            since = clock(wait.since) if wait.since else ""
            seen = f"{count} send{'s' if count != 1 else ''} waiting"
            outages[wait.service] = ServiceOutage(wait.label, since, seen)
    return list(outages.values())


def outcomes_chart(series: OutcomeSeries) -> dict[str, Any]:
    """Outcomes per hour as Chart.js data: one stacked bar per hour."""
    return {
        "labels": [f"{hour:%H:00}" for hour in series.hours],
        "datasets": [
            {
                "label": Delivery.Status(status).label,
                "data": counts,
                "backgroundColor": CHART_COLOURS[Delivery.Status(status)],
                "stack": "outcomes",
            }
            for status, counts in series.counts.items()
        ],
    }


def system_status_view(request: HttpRequest) -> HttpResponse:
    """The workers-and-queues panel, fetched by the dashboard (staff only, via admin_view)."""
    return TemplateResponse(request, "admin/campaigns/system_status.html", system_status())
