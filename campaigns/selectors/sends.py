"""One send's page: a page of its deliveries and the results of the tasks that served it."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet
from django_celery_results.models import TaskResult

from campaigns.models import Delivery, Send, TaskLink
from campaigns.services.delivery.health import send_wait_marker

SEND_PAGE_ROWS = 50


def send_deliveries(
    *, send_id: int, status: str = "", email: str = "", limit: int = SEND_PAGE_ROWS
) -> QuerySet[Delivery]:
    """A page of one send's deliveries, optionally one outcome or one exact address.

    Uses the (send, status) index; the email filter is an exact match on the unique index.
    """
    rows = Delivery.objects.filter(send_id=send_id).select_related("recipient")
    if status in Delivery.Status.values:
        rows = rows.filter(status=status)
    if email:
        rows = rows.filter(recipient__email=email.strip().lower())
    return rows.defer("recipient__attributes").order_by("-id")[:limit]


def send_task_ids(send_id: int) -> list[str]:
    """The ids of a send's tasks, fetched first: as a subquery the planner tends to walk the
    whole results table by date looking for them; as a list it looks each one up by id."""
    return list(TaskLink.objects.filter(send_id=send_id).values_list("task_id", flat=True))


def results_of_tasks(queryset: QuerySet[TaskResult], task_ids: list[str]) -> QuerySet[TaskResult]:
    """``task_id = ANY(%s)`` with the ids as one array parameter.

    The same plan as ``task_id__in=[...]``, without Django preparing a placeholder per id on
    every query of the page (a large send has thousands of batch tasks).
    """
    if connection.vendor != "postgresql":  # SQLite (the embedded profile) has no arrays
        return queryset.filter(task_id__in=task_ids)
    table = TaskResult._meta.db_table
    # The SQL is a constant (the model's own table name); the ids go in as a bound parameter.
    where = f'"{table}"."task_id" = ANY(%s)'
    return queryset.extra(where=[where], params=[task_ids])  # noqa: S610


def send_task_results(*, send_id: int, limit: int = SEND_PAGE_ROWS) -> list[TaskResult]:
    """The TaskResult rows of a send's tasks (launch and batches), newest first."""
    return list(
        results_of_tasks(TaskResult.objects.all(), send_task_ids(send_id))
        .defer("task_args", "task_kwargs")
        .order_by("-date_created")[:limit]
    )


def send_waiting(send: Send) -> tuple[str, datetime | None]:
    """The service a running send's batches wait for (a ``models.Service`` value) and since when.

    ("", None) while nothing is wrong. The Send's own fields come first; a database outage is
    only in Redis until the database answers and a batch copies it over, so that is read too.
    A send that is not running waits for nothing.
    """
    if send.status != Send.Status.RUNNING:
        return "", None
    if send.waiting_for:
        return send.waiting_for, send.waiting_since
    return send_wait_marker(send_id=send.pk)
