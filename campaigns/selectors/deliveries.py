"""Counts over a send's Delivery rows, for the send page and for the services that close a send.

This module imports nothing from the services, so the delivery services can read through it.
"""

from __future__ import annotations

from django.db.models import Count

from campaigns.models import Delivery


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
