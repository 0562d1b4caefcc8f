"""Read-side queries for the admin and the dashboard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery, ImportJob, Send


def dashboard_counts() -> dict[str, Any]:
    now = timezone.now()
    day_ago = now - timedelta(days=1)
    deliveries = Delivery.objects.filter(sent_at__gte=day_ago).aggregate(
        sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
    )
    return {
        "sent_today": deliveries["sent"],
        "active_campaigns": Campaign.objects.filter(
            status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED]
        ).count(),
        "scheduled_campaigns": Campaign.objects.filter(status=Campaign.Status.SCHEDULED).count(),
        "running_sends": Send.objects.filter(status=Send.Status.RUNNING).count(),
        "running_imports": ImportJob.objects.filter(status=ImportJob.Status.RUNNING).count(),
        "stalled_sends": list(
            Send.objects.filter(status=Send.Status.RUNNING).exclude(stalled_reason="")[:10]
        ),
    }
