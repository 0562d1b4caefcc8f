"""What every fault test measures: the sink against the database, the time to recover once a
service is back, and the task results a fault may leave behind.

The figures go to the fault report (the ``report`` fixture) before anything is asserted, so a
failing run still documents what happened.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.db import Error as DatabaseError
from django.db import connection
from django.db.models import Q
from django_celery_results.models import TaskResult

from campaigns.models import AuditEntry, Campaign, Delivery, Recipient, Send, Subscription, TaskLink
from campaigns.publishers import publish_launch
from opsdash.smtp_sink import SmtpSink
from tests.factories import AudienceFactory, CampaignFactory
from tests.faults.conftest import Profile, fault_worker
from tests.processes import CeleryProcess

# The promise: a send is moving again and done this long after its service returns,
# plus the time its remaining messages need at the send's rate.
RECOVERY_SECONDS = 15.0
# How much longer than that a test waits before it calls the send stuck (keeps a failing run
# short enough for CI while still telling "slow" from "never").
GRACE_SECONDS = 30.0


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Polls ``predicate``; a database error (the server restarting) counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while not _safely(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _safely(predicate: Callable[[], bool]) -> bool:
    try:
        return predicate()
    except DatabaseError:
        connection.close()  # the next poll opens a fresh connection
        return False


# --- Data ------------------------------------------------------------------------------------


def campaign_of(count: int, **fields: object) -> Campaign:
    """A campaign whose one audience has ``count`` subscribed recipients, inserted in bulk."""
    tag = uuid.uuid4().hex[:6]
    audience = AudienceFactory.create()
    recipients = Recipient.objects.bulk_create(
        Recipient(
            email=f"fault-{tag}-{i}@example.com",
            first_name=f"First{i}",
            last_name="Tester",
            attributes={"city": "Oslo"},
        )
        for i in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(recipient=recipient, audience=audience) for recipient in recipients
    )
    return CampaignFactory.create(audiences=[audience], **fields)


def start_send(campaign: Campaign, key: str = "once") -> Send:
    publish_launch(campaign.pk, key, Send.Trigger.MANUAL, None)
    wait_for(lambda: Send.objects.filter(campaign=campaign).exists(), timeout=30, what="launch")
    return Send.objects.get(campaign=campaign)


def send_under_way(sink: SmtpSink, workers: list[CeleryProcess], profile: Profile) -> Send:
    """Starts a worker with the profile's settings and a send of its size; returns once
    ``profile.fault_at`` messages have reached the sink."""
    workers.append(fault_worker(sink, profile.env).start())
    send = start_send(campaign_of(profile.recipients))
    wait_for(
        lambda: len(sink.messages) >= profile.fault_at,
        timeout=60,
        what=f"{profile.fault_at} messages at the sink",
    )
    return send


def wait_done(send: Send, workers: list[CeleryProcess], *, timeout: float = 120) -> Send:
    def done() -> bool:
        send.refresh_from_db()
        return send.status != Send.Status.RUNNING

    try:
        wait_for(done, timeout=timeout, what=f"send {send.pk} to finish")
    except AssertionError:
        logs = "\n".join(process.log()[-3000:] for process in workers)
        raise AssertionError(f"{progress(send)}; logs:\n{logs}") from None
    time.sleep(0.5)  # anything sent twice would arrive now
    return send


def statuses(send: Send) -> Counter[str]:
    return Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))


def progress(send: Send) -> str:
    rows = ", ".join(f"{status} {n}" for status, n in sorted(statuses(send).items()))
    return f"send {send.pk} {send.status}, {send.done_count}/{send.total} done (rows: {rows})"


# --- The sink against the database ---------------------------------------------------------


@dataclass
class SinkCount:
    expected: set[str]
    received: Counter[str]

    def __repr__(self) -> str:  # short, for assertion messages
        return (
            f"SinkCount({len(self.expected)} sent in the database, {self.received.total()} at "
            f"the sink, lost {sorted(self.lost)[:5]}, duplicated {sorted(self.duplicated)[:5]})"
        )

    @property
    def lost(self) -> set[str]:
        return self.expected - set(self.received)

    @property
    def duplicated(self) -> set[str]:
        return {email for email, count in self.received.items() if count > 1}

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.received.values() if count > 1)


def received(sink: SmtpSink) -> Counter[str]:
    return Counter(m["To"].addresses[0].addr_spec for m in sink.messages)


def at_sink(sink: SmtpSink, send: Send) -> SinkCount:
    """What the sink got, against every delivery the database says was sent."""
    sent = Delivery.objects.filter(send=send, status=Delivery.Status.SENT)
    return SinkCount(set(sent.values_list("recipient__email", flat=True)), received(sink))


def unrecorded(sink: SmtpSink, send: Send) -> int:
    """Messages the sink has that the database does not yet say were sent (in flight)."""
    sent = Delivery.objects.filter(send=send, status=Delivery.Status.SENT).count()
    return len(received(sink)) - sent


# --- Recovery --------------------------------------------------------------------------------


@dataclass
class Recovery:
    """How long a send took to finish once its service answered again."""

    back_at: float  # time.time() when the service answered (or the fault ended)
    remaining: int  # recipients not yet at the sink then
    rate: float  # the send's messages per second
    seconds: float | None = None  # Send.finished_at - back_at, once done

    @property
    def allowance(self) -> float:
        return RECOVERY_SECONDS + self.remaining / self.rate

    def line(self) -> str:
        took = "not done" if self.seconds is None else f"done {self.seconds:.1f}s"
        return (
            f"{took} after the service returned (allowed {self.allowance:.1f}s = "
            f"{RECOVERY_SECONDS:g} + {self.remaining} left / {self.rate:g} per s)"
        )


def recovery_start(sink: SmtpSink, send: Send, *, back_at: float, rate: float) -> Recovery:
    total = Send.objects.values_list("total", flat=True).get(pk=send.pk)
    remaining = total - len(received(sink))
    return Recovery(back_at=back_at, remaining=max(remaining, 0), rate=rate)


def recovery_wait(
    recovery: Recovery,
    sink: SmtpSink,
    send: Send,
    workers: list[CeleryProcess],
    report: list[str],
) -> Recovery:
    """Waits for the send to finish (allowance + grace) and reports the time it took."""
    try:
        wait_done(send, workers, timeout=recovery.allowance + GRACE_SECONDS)
    except AssertionError:
        count = at_sink(sink, send)
        report.append(f"{recovery.line()} within {recovery.allowance + GRACE_SECONDS:.0f}s")
        report.append(
            f"{progress(send)}; at the sink {count.received.total()} messages, "
            f"{len(count.received)} recipients, duplicates so far {count.duplicates}"
        )
        raise
    if send.finished_at is not None:
        recovery.seconds = send.finished_at.timestamp() - recovery.back_at
    report.append(recovery.line())
    return recovery


def results_started(send: Send, *, settle: float = 5.0) -> list[str]:
    """Task ids of the send's launch and batches whose result still says STARTED.

    A run that ended a moment ago may still be storing its result: wait ``settle`` seconds
    for that before calling a result stuck.
    """
    task_ids = TaskLink.objects.filter(
        Q(send=send) | Q(campaign_id=send.campaign_id, kind=TaskLink.Kind.LAUNCH)
    ).values_list("task_id", flat=True)
    started = TaskResult.objects.filter(task_id__in=list(task_ids), status="STARTED")
    deadline = time.monotonic() + settle
    while started.exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    return list(started.values_list("task_id", flat=True))


def interruptions(send: Send) -> str:
    """The audit trail's account of the fault, for the report: each entry with its time."""
    entries = AuditEntry.objects.filter(
        send=send, action__in=[AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]
    ).order_by("id")
    told = [
        f"{entry.action} {entry.changes.get('service', '')} at {entry.created_at:%H:%M:%S.%f}"[:-3]
        + (f" after {entry.changes['seconds']}s" if entry.changes.get("seconds") else "")
        for entry in entries
    ]
    return f"audit: {', '.join(told) or 'nothing'}"


def hold(seconds: float, send: Send) -> set[str]:
    """Lets ``seconds`` pass, noting what the send page would say it waits for meanwhile."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(Send.objects.values_list("waiting_for", flat=True).get(pk=send.pk) or "nothing")
        time.sleep(0.5)
    return seen


@dataclass
class Verdict:
    count: SinkCount
    started: list[str]  # task ids whose result still says STARTED


def verdict(sink: SmtpSink, send: Send, report: list[str], *, note: str = "") -> Verdict:
    """Counts lost and duplicated messages and stuck task results, and reports them."""
    count = at_sink(sink, send)
    started = results_started(send)
    report.append(
        f"lost {len(count.lost)}, duplicates {count.duplicates}{note}; "
        f"results left STARTED {len(started)}; {interruptions(send)}"
    )
    return Verdict(count, started)


def assert_healed(send: Send, result: Verdict, recovery: Recovery, *, recipients: int) -> None:
    """The promise for a brief outage of a service: every row sent, none lost, none twice,
    done within the allowance once the service is back, and no task result left STARTED."""
    assert send.status == Send.Status.COMPLETED, progress(send)
    assert statuses(send) == {"sent": recipients}
    assert result.count.lost == set() and result.count.duplicates == 0, result.count
    assert recovery.seconds is not None and recovery.seconds <= recovery.allowance, recovery.line()
    assert result.started == [], f"results left STARTED: {result.started}"
