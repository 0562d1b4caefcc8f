"""Faults injected mid-send, with real parts: a Celery worker process, RabbitMQ, PostgreSQL,
Redis and a real SMTP sink. Each test asserts at the sink that no recipient is lost, and that
duplicates happen only for messages in flight at a kill; the counts go to the fault report
printed at the end of the run.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_results.models import TaskResult

from campaigns.models import Campaign, Delivery, Recipient, Send, TaskLink
from campaigns.publishers import publish_batch, publish_launch
from campaigns.services import delivery
from campaigns.services.campaigns import campaign_schedule
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, UserFactory, audience_with
from tests.faults.conftest import (
    DEFAULT_SIZES,
    FAULT_ENV,
    WORKER_CONCURRENCY,
    Profile,
    fault_worker,
)
from tests.faults.harness import (
    assert_healed,
    at_sink,
    campaign_of,
    received,
    recovery_start,
    recovery_wait,
    results_started,
    send_under_way,
    start_send,
    statuses,
    verdict,
    wait_done,
    wait_for,
)
from tests.outages import rabbitmq_down
from tests.processes import CeleryProcess

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 240  # four seconds at the tests' 60 messages per second
# Each worker process keeps this many SMTP sessions (the default: the fault env leaves it), so
# this many messages per process can be in flight, sent and not yet heard back, at a fault.
CONNECTIONS = settings.OPSDASH_DELIVERY_CONNECTIONS
IN_FLIGHT = WORKER_CONCURRENCY * CONNECTIONS


@pytest.fixture
def campaign() -> Campaign:
    return CampaignFactory.create(audiences=[audience_with(RECIPIENTS)])


# --- Worker and broker faults ---------------------------------------------------------------


def test_sigkill_of_the_worker_mid_send_loses_nothing_and_resends_only_what_was_in_flight(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    first = fault_worker(smtp_sink).start()
    worker_factory.append(first)
    send = start_send(campaign)
    wait_for(lambda: len(smtp_sink.messages) >= 60, timeout=60, what="60 messages")

    first.kill()  # SIGKILL to the worker and its pool processes
    # Messages whose data was on the wire when the sessions died still land at the sink.
    time.sleep(1)
    in_flight = set(
        Delivery.objects.filter(send=send, status=Delivery.Status.SENDING).values_list(
            "recipient__email", flat=True
        )
    )
    unrecorded = (
        len(smtp_sink.messages)
        - Delivery.objects.filter(send=send, status=Delivery.Status.SENT).count()
    )
    worker_factory.append(fault_worker(smtp_sink).start())
    wait_done(send, worker_factory)

    count = at_sink(smtp_sink, send)
    report.append(
        f"lost {len(count.lost)}, duplicates {count.duplicates} "
        f"(sent but not yet recorded at the kill: {unrecorded})"
    )
    assert send.status == Send.Status.COMPLETED and statuses(send) == {"sent": RECIPIENTS}
    assert count.lost == set()
    assert count.duplicated <= in_flight  # only messages the killed batches had in hand
    # With the in-flight journal, each killed batch resends at most the messages SMTP may have
    # taken without the batch hearing back (its sessions in flight); never more than was
    # unrecorded.
    assert count.duplicates <= min(unrecorded, IN_FLIGHT)
    assert results_started(send) == []


def _busy_child(worker: CeleryProcess, send: Send) -> tuple[int, str]:
    """A pool child of ``worker`` running one of the send's batches, and that batch's task id.

    Celery stores ``{"pid": ..., "hostname": ...}`` as the result of a STARTED task.
    """
    batch_ids = TaskLink.objects.filter(send=send, kind=TaskLink.Kind.BATCH).values_list(
        "task_id", flat=True
    )
    found: list[tuple[int, str]] = []

    def running() -> bool:
        children = worker.pool_pids()
        started = TaskResult.objects.filter(task_id__in=list(batch_ids), status="STARTED")
        for task_id, meta in started.values_list("task_id", "result"):
            pid = json.loads(meta or "null") or {}
            if isinstance(pid, dict) and pid.get("pid") in children:
                found.append((int(pid["pid"]), task_id))
        return bool(found)

    wait_for(running, timeout=10, what="a pool child running a batch")
    return found[0]


def test_sigkill_of_one_pool_child_mid_batch_resends_at_most_the_message_in_flight(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    beat: CeleryProcess,
    report: list[str],
) -> None:
    profile = Profile("small-batches", FAULT_ENV, recipients=RECIPIENTS, fault_at=60)
    send = send_under_way(smtp_sink, worker_factory, profile)
    worker = worker_factory[0]
    pid, task_id = _busy_child(worker, send)

    def in_hand() -> set[str]:
        rows = Delivery.objects.filter(send=send, task_id=task_id, status=Delivery.Status.SENDING)
        return set(rows.values_list("recipient__email", flat=True))

    # Strike between two outcome writes, when the batch has sent messages it has not recorded.
    deadline = time.monotonic() + 3
    while not in_hand() & set(received(smtp_sink)) and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.kill_pool_child(pid)  # as the OOM killer would: the parent stays
    killed_at = time.time()
    held = in_hand()
    in_flight = len(held & set(received(smtp_sink)))  # sent, not yet recorded
    recovery = recovery_start(smtp_sink, send, back_at=killed_at, rate=profile.rate)
    recovery_wait(recovery, smtp_sink, send, [*worker_factory, beat], report)

    note = f" (sent, not recorded at the kill: {in_flight})"
    result = verdict(smtp_sink, send, report, note=note)
    runs = worker.log().count(f"deliver_batch[{task_id}] received")
    report.append(f"the killed batch was received {runs} times")
    assert worker.alive() and pid not in worker.pool_pids()
    assert len(worker.pool_pids()) == WORKER_CONCURRENCY  # the parent replaced the child
    assert runs >= 2  # redelivered (reject_on_worker_lost), not dropped
    assert statuses(send) == {"sent": RECIPIENTS}
    assert result.count.lost == set()
    assert result.count.duplicated <= held  # only what the killed batch had in hand
    assert result.count.duplicates <= CONNECTIONS  # with the journal: its messages in flight
    assert recovery.seconds is not None and recovery.seconds <= recovery.allowance
    assert result.started == []


@pytest.mark.parametrize(
    "profile",
    [
        Profile("small-batches", FAULT_ENV, recipients=RECIPIENTS, fault_at=40),
        DEFAULT_SIZES,
    ],
    ids=str,
)
def test_a_rabbitmq_restart_mid_send_loses_and_duplicates_nothing(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    beat: CeleryProcess,
    report: list[str],
    profile: Profile,
) -> None:
    send = send_under_way(smtp_sink, worker_factory, profile)

    with rabbitmq_down() as outage:
        time.sleep(3)
    recovery = recovery_start(smtp_sink, send, back_at=outage.back_at, rate=profile.rate)
    report.append(f"RabbitMQ down {outage.seconds:.1f}s")
    recovery_wait(recovery, smtp_sink, send, [*worker_factory, beat], report)

    result = verdict(smtp_sink, send, report)
    assert_healed(send, result, recovery, recipients=profile.recipients)


def test_two_beat_processes_at_once_fire_one_schedule_once(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    beat: CeleryProcess,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())
    with CeleryProcess.beat() as second_beat:
        campaign = campaign_of(
            60,
            schedule_kind=Campaign.ScheduleKind.ONCE,
            scheduled_at=timezone.now() + timedelta(seconds=3),
        )
        campaign_schedule(campaign=campaign, by=UserFactory.create())
        wait_for(lambda: Send.objects.filter(campaign=campaign).exists(), timeout=30, what="launch")
        send = wait_done(Send.objects.get(campaign=campaign), [*worker_factory, beat, second_beat])

    fired = TaskLink.objects.filter(campaign=campaign, kind=TaskLink.Kind.LAUNCH).count()
    result = verdict(smtp_sink, send, report, note=f" (the beats fired the schedule {fired} times)")
    assert Send.objects.filter(campaign=campaign).count() == 1
    assert statuses(send) == {"sent": 60}
    assert result.count.lost == set() and result.count.duplicates == 0
    assert result.started == []


def test_two_launches_of_one_occurrence_at_once_send_once(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())

    for _ in range(2):  # two workers' pool processes take one each, concurrently
        publish_launch(campaign.pk, "2026-11-21T09:00", Send.Trigger.SCHEDULE, None)
    wait_for(lambda: Send.objects.filter(campaign=campaign).exists(), timeout=30, what="launch")
    send = wait_done(Send.objects.get(campaign=campaign), worker_factory)

    count = at_sink(smtp_sink, send)
    report.append(
        f"sends {Send.objects.count()}, lost {len(count.lost)}, duplicates {count.duplicates}"
    )
    assert Send.objects.count() == 1
    assert len(count.expected) == RECIPIENTS
    assert count.lost == set() and count.duplicates == 0


# --- SMTP faults ----------------------------------------------------------------------------


def test_the_sink_down_for_a_while_then_back_loses_nothing(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())
    send = start_send(campaign)
    wait_for(lambda: len(smtp_sink.messages) >= 40, timeout=60, what="40 messages")

    smtp_sink.stop()
    time.sleep(4)
    smtp_sink.start()
    wait_done(send, worker_factory)

    count = at_sink(smtp_sink, send)
    report.append(f"lost {len(count.lost)}, duplicates {count.duplicates}")
    assert statuses(send) == {"sent": RECIPIENTS}
    assert count.lost == set()
    # A message whose 250 reply was cut off by the shutdown is the only possible repeat.
    assert count.duplicates <= IN_FLIGHT


def test_a_sink_answering_4xx_for_a_while_delays_but_loses_nothing(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())
    send = start_send(campaign)
    wait_for(lambda: len(smtp_sink.messages) >= 40, timeout=60, what="40 messages")

    # A temporary error that is not about the rate: each one counts an attempt (a throttling
    # reply would not, see the pacing tests).
    smtp_sink.rule = lambda address: "451 4.3.0 Local error in processing"
    time.sleep(3)
    smtp_sink.rule = None
    wait_done(send, worker_factory)

    count = at_sink(smtp_sink, send)
    retried = Delivery.objects.filter(send=send, last_error__contains="451 4.3.0")
    report.append(
        f"lost {len(count.lost)}, duplicates {count.duplicates}, rows retried {retried.count()}"
    )
    assert statuses(send) == {"sent": RECIPIENTS}
    assert retried.exists() and all(row.attempts >= 2 for row in retried)
    assert count.lost == set() and count.duplicates == 0


def test_a_sink_refusing_some_addresses_with_5xx_fails_exactly_those(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    emails = sorted(Recipient.objects.values_list("email", flat=True))
    unknown, rejected = set(emails[10:15]), set(emails[100:103])
    replies = {email: "550 5.1.1 No such user" for email in unknown}
    replies |= {email: "554 5.7.1 Message rejected" for email in rejected}
    smtp_sink.rule = replies.get
    worker_factory.append(fault_worker(smtp_sink).start())

    send = wait_done(start_send(campaign), worker_factory)

    count = at_sink(smtp_sink, send)
    failed = set(
        Delivery.objects.filter(send=send, status=Delivery.Status.FAILED).values_list(
            "recipient__email", flat=True
        )
    )
    bounced = set(
        Recipient.objects.filter(status=Recipient.Status.BOUNCED).values_list("email", flat=True)
    )
    report.append(f"failed {len(failed)}, lost {len(count.lost)}, duplicates {count.duplicates}")
    assert failed == unknown | rejected and bounced == unknown
    assert set(count.received) == set(emails) - failed
    assert count.lost == set() and count.duplicates == 0
    assert (send.status, send.sent_count, send.failed_count) == ("completed", RECIPIENTS - 8, 8)
    # Each batch left a small result row with its counts.
    batch_ids = TaskLink.objects.filter(send=send, kind=TaskLink.Kind.BATCH).values_list(
        "task_id", flat=True
    )
    wait_for(
        lambda: (
            TaskResult.objects.filter(task_id__in=batch_ids, status="SUCCESS").count()
            == len(batch_ids)
        ),
        timeout=20,
        what="a result row per batch",
    )
    results = [json.loads(r.result) for r in TaskResult.objects.filter(task_id__in=batch_ids)]
    assert sum(r["sent"] for r in results) == RECIPIENTS - 8
    assert sum(r["failed"] for r in results) == 8
    assert all(len(r) <= 5 for r in results)


# --- Pause, resume, cancel ------------------------------------------------------------------


def test_pause_then_resume_mid_send_sends_nothing_while_paused_and_nothing_twice(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())
    send = start_send(campaign)
    wait_for(lambda: len(smtp_sink.messages) >= 40, timeout=60, what="40 messages")

    delivery.send_pause(send_id=send.pk, by=None)
    at_pause = len(smtp_sink.messages)
    wait_for(
        lambda: not Delivery.objects.filter(send=send, status=Delivery.Status.SENDING).exists(),
        timeout=30,
        what="the batches to hand their rows back",
    )
    after_pause = len(smtp_sink.messages)
    time.sleep(2)
    assert len(smtp_sink.messages) == after_pause
    assert after_pause - at_pause <= IN_FLIGHT  # already handed to SMTP at the pause

    delivery.send_resume(send_id=send.pk, by=None, publish=publish_batch)
    wait_done(send, worker_factory)

    count = at_sink(smtp_sink, send)
    report.append(
        f"in flight at pause {after_pause - at_pause}, lost {len(count.lost)}, "
        f"duplicates {count.duplicates}"
    )
    assert statuses(send) == {"sent": RECIPIENTS}
    assert count.lost == set() and count.duplicates == 0


def test_cancel_mid_send_skips_the_rest_and_sends_nothing_more(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    campaign: Campaign,
    report: list[str],
) -> None:
    worker_factory.append(fault_worker(smtp_sink).start())
    send = start_send(campaign)
    wait_for(lambda: len(smtp_sink.messages) >= 40, timeout=60, what="40 messages")

    delivery.send_cancel(send_id=send.pk, by=None)
    at_cancel = len(smtp_sink.messages)
    wait_for(
        lambda: statuses(send).keys() <= {"sent", "skipped"},
        timeout=30,
        what="every row to be sent or skipped",
    )
    time.sleep(2)

    count = at_sink(smtp_sink, send)
    rows = statuses(send)
    send.refresh_from_db()
    report.append(
        f"sent {rows['sent']}, skipped {rows['skipped']}, in flight at cancel "
        f"{len(smtp_sink.messages) - at_cancel}, duplicates {count.duplicates}"
    )
    assert send.status == Send.Status.CANCELLED
    assert rows["sent"] + rows["skipped"] == RECIPIENTS and rows["skipped"] > 0
    assert set(count.received) == count.expected  # the sink has exactly the rows marked sent
    assert count.duplicates == 0
    assert len(smtp_sink.messages) - at_cancel <= IN_FLIGHT
    assert (send.sent_count, send.skipped_count) == (rows["sent"], rows["skipped"])
