"""Unfold's dashboard callback (settings.UNFOLD["DASHBOARD_CALLBACK"])."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from campaigns.selectors import dashboard_counts


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    context.update(dashboard_counts())
    return context
