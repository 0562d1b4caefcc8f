"""Unfold's dashboard callback (settings.UNFOLD["DASHBOARD_CALLBACK"]) and its live panel.

The page itself only reads the database (cached numbers); the broker is asked in a separate
fragment the page loads afterwards, so a slow or absent RabbitMQ never slows the dashboard.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from campaigns import selectors


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    now = timezone.now()
    stats = selectors.dashboard_stats(now=now)
    context.update(stats)
    context.update(
        {
            "chart_data": json.dumps(stats["chart"]),
            "chart_options": json.dumps(selectors.CHART_OPTIONS),
        }
    )
    return context


def system_status_view(request: HttpRequest) -> HttpResponse:
    """The workers-and-queues panel, fetched by the dashboard (staff only, via admin_view)."""
    return TemplateResponse(
        request, "admin/campaigns/system_status.html", selectors.system_status()
    )
