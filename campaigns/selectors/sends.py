"""One send's page: a page of its deliveries and the results of the tasks that served it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from campaigns.models import Delivery, Send, TaskLink
from campaigns.selectors.deliveries import send_status_counts
from campaigns.services.delivery.health import send_wait_marker
from campaigns.services.transitions import SendControl, send_controls_for

SEND_PAGE_ROWS = 50
# A finished send's page keeps polling this long, so the outcome of a message that was in
# flight when it was cancelled or paused still lands without a reload.
SETTLE_SECONDS = 15

ACTIVE = (Send.Status.RUNNING, Send.Status.PAUSED)


@dataclass(frozen=True)
class SendProgress:
    """A send's deliveries by outcome, and why the skipped ones were skipped.

    ``done`` counts every row handled (sent, failed or skipped); ``waiting`` the rows queued
    or in a batch's hands. The sentence says which is which: a cancelled send reads
    "294 of 294 handled: 120 sent, 174 skipped (cancelled before sending)", never "100 %".
    """

    total: int
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0
    # (reason label, count), largest first; empty when nothing was skipped.
    skip_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def shares(self) -> dict[str, float]:
        """Each outcome as a percentage of the total: the bar's segments."""
        counts = {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}
        return {k: 100 * n / self.total if self.total else 0.0 for k, n in counts.items()}

    @property
    def percent_done(self) -> int:
        return 100 * self.done // self.total if self.total else 100

    def skipped_text(self) -> str:
        if len(self.skip_reasons) == 1:
            return f"{self.skipped} skipped ({self.skip_reasons[0][0]})"
        reasons = ", ".join(f"{count} {label}" for label, count in self.skip_reasons)
        return f"{self.skipped} skipped ({reasons})" if reasons else f"{self.skipped} skipped"

    @property
    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(self.skipped_text())
        if self.waiting:
            parts.append(f"{self.waiting} not sent yet")
        return f"{self.done} of {self.total} handled: " + ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "done": self.done,
            "summary": self.summary,
            "skip_reasons": [{"reason": label, "count": n} for label, n in self.skip_reasons],
        }


def send_progress(*, send_id: int) -> SendProgress:
    """A send's progress counted from its Delivery rows as written, not from the counters.

    One grouped count by status, served by the (send, status) index alone (an index-only
    scan), and, when rows were skipped, one grouped count of their reasons.
    """
    counts = send_status_counts(send_id=send_id)
    skipped = counts.get(Delivery.Status.SKIPPED, 0)
    waiting = counts.get(Delivery.Status.QUEUED, 0) + counts.get(Delivery.Status.SENDING, 0)
    return SendProgress(
        total=sum(counts.values()),
        sent=counts.get(Delivery.Status.SENT, 0),
        failed=counts.get(Delivery.Status.FAILED, 0),
        skipped=skipped,
        waiting=waiting,
        skip_reasons=send_skip_reasons(send_id=send_id) if skipped else [],
    )


def send_skip_reasons(*, send_id: int) -> list[tuple[str, int]]:
    """(reason label, count) of a send's skipped rows, the commonest first."""
    rows = (
        Delivery.objects.filter(send_id=send_id, status=Delivery.Status.SKIPPED)
        .values_list("skip_reason")
        .annotate(n=Count("*"))
        .order_by("-n")
        .values_list("skip_reason", "n")
    )
    return [(Delivery.SkipReason(reason).label, n) for reason, n in rows]


def send_progress_of_counters(send: Send) -> SendProgress:
    """The same picture from the Send's counters (no query): for lists of many sends."""
    done = send.sent_count + send.failed_count + send.skipped_count
    return SendProgress(
        total=send.total,
        sent=send.sent_count,
        failed=send.failed_count,
        skipped=send.skipped_count,
        waiting=max(0, send.total - done),
    )


def send_cancel_refusal(send: Send) -> str:
    """Why ``send`` cannot be cancelled, as a sentence; empty while it can (the Send state
    machine decides). The counters of a finished send add up (closing syncs them)."""
    if SendControl.CANCEL in send_controls_for(send.status):
        return ""
    ended = (
        f" on {timezone.localtime(send.finished_at):%Y-%m-%d %H:%M %Z}" if send.finished_at else ""
    )
    handled = send_progress_of_counters(send).summary
    if send.status == Send.Status.CANCELLED:
        return f"this send was cancelled already{ended} ({handled})"
    if send.status == Send.Status.COMPLETED:
        return f"this send has finished{ended}: nothing is left to send ({handled})"
    return f"this send has ended{ended} as {send.get_status_display().lower()} ({handled})"


# The send page asks every POLL_MS, or less often when reading the rows takes long: a page left
# open on a million-row send (about 0.1 to 0.25 s to count) must not keep the database busy.
POLL_MS = 2000
POLL_MAX_MS = 10_000
POLL_COST_FACTOR = 20  # at most 1/20 of the time spent counting


def poll_interval_ms(counted_in: float) -> int:
    """When the page asks again, given how many seconds reading the rows took this time."""
    return min(POLL_MAX_MS, max(POLL_MS, int(counted_in * POLL_COST_FACTOR * 1000)))


def send_polls(send: Send) -> bool:
    """Whether the send's page keeps refreshing: while it is active, and a short while after."""
    if send.status in ACTIVE:
        return True
    ended = send.finished_at
    return ended is not None and timezone.now() - ended < timedelta(seconds=SETTLE_SECONDS)


def send_deliveries(
    *, send_id: int, status: str = "", email: str = "", limit: int = SEND_PAGE_ROWS
) -> QuerySet[Delivery]:
    """A page of one send's deliveries, newest first, optionally one outcome or one address.

    The planner walks the primary key down and filters by send; the send's id span (known at
    launch) starts the walk at its own newest row instead of past every later send's rows
    (150 ms behind a million-row send, a millisecond with it). The email filter is an exact
    match on the unique index.
    """
    rows = Delivery.objects.filter(send_id=send_id).select_related("recipient")
    span = Send.objects.filter(pk=send_id).values_list("delivery_id_low", "delivery_id_high")
    low, high = span.first() or (None, None)
    if low is not None and high is not None:
        rows = rows.filter(id__gte=low, id__lte=high)
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
