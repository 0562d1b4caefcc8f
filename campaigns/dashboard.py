"""Unfold's dashboard callback (settings.UNFOLD["DASHBOARD_CALLBACK"]) and its live panel.

The page itself only reads the database (cached numbers); the broker is asked in a separate
fragment the page loads afterwards, so a slow or absent RabbitMQ never slows the dashboard.
How the numbers look (chart colours and options) is decided here, not in the selectors.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from campaigns.models import Delivery
from campaigns.selectors.dashboard import OutcomeSeries, dashboard_stats
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


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    stats = dashboard_stats(now=timezone.now())
    context.update(stats)
    context.update(
        {
            "chart_data": json.dumps(outcomes_chart(stats["outcomes"])),
            "chart_options": json.dumps(CHART_OPTIONS),
        }
    )
    return context


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
