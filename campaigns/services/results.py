"""Housekeeping of django-celery-results rows.

Celery's own ``backend_cleanup`` deletes every expired TaskResult in one statement, which on
millions of rows holds locks and bloats WAL for minutes and can time out. This purge deletes in
id-ordered chunks, each its own short transaction, so it always finishes and never blocks the
workers writing new results.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

PURGE_CHUNK = 5_000


def task_results_purge(*, older_than: timedelta, chunk: int = PURGE_CHUNK) -> int:
    """Deletes TaskResult rows finished longer ago than ``older_than``; returns how many.

    1. Fix the cutoff once, so rows finishing during the purge are never touched.
    2. Repeatedly take the next ``chunk`` ids past the last one seen (an index range scan).
    3. Delete those ids in their own transaction; stop when a chunk comes back empty.
    """
    cutoff = timezone.now() - older_than
    old = TaskResult.objects.filter(date_done__lt=cutoff).order_by("id")
    deleted, last_id = 0, 0
    while ids := list(old.filter(id__gt=last_id).values_list("id", flat=True)[:chunk]):
        with transaction.atomic():
            deleted += TaskResult.objects.filter(id__in=ids).delete()[0]
        last_id = ids[-1]
    return deleted
