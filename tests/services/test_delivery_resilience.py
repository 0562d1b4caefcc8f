"""Delivery through outages: the journal, the lease, reconnecting writes, fallbacks, the watchdog.

Real PostgreSQL and Redis where the profile has them; the tests that need one skip without it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import AuditEntry, Delivery, Send, Service
from campaigns.selectors.sends import send_waiting
from campaigns.services import delivery, ratelimit
from campaigns.services.delivery import BatchLease, batch_deliver, send_launch
from campaigns.services.delivery.outcomes import BatchResult, Pending, outcome_record
from campaigns.services.delivery.outcomes import outcomes_write as write
from campaigns.services.delivery.state import ControlProbe, journal_key, send_control_state
from campaigns.services.redisclient import redis_client, redis_reset
from campaigns.services.smtp import Outcome, SmtpResult
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, audience_with
from tests.processes import wait_for
from tests.services.leases import lease_held_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = connection.vendor == "postgresql"
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="advisory locks are PostgreSQL's")
needs_redis = pytest.mark.skipif(not django_settings.REDIS_URL, reason="the journal is in Redis")
CLOSED_PORT = "redis://127.0.0.1:1/0"

Batch = tuple[int, int, int, str]


@pytest.fixture(autouse=True)
def _redis_fresh() -> Iterator[None]:
    redis_reset()
    yield
    redis_reset()


def launched(recipients: int, **campaign: object) -> tuple[Send, Batch]:
    published: list[Batch] = []
    send = send_launch(
        campaign_id=CampaignFactory.create(audiences=[audience_with(recipients)], **campaign).pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    return send, published[0]


def statuses(send: Send) -> Counter[str]:
    return Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))


def claimed_by(send: Send, task_id: str, *, minutes: int = 0) -> list[int]:
    """The send's rows as a run of ``task_id`` left them when it died mid-batch."""
    Delivery.objects.filter(send=send).update(
        status=Delivery.Status.SENDING,
        task_id=task_id,
        claimed_at=timezone.now() - timedelta(minutes=minutes),
    )
    return list(Delivery.objects.filter(send=send).order_by("id").values_list("id", flat=True))


def journal(task_id: str, ids: list[int]) -> None:
    client = redis_client()
    client.hset(journal_key(task_id), mapping={str(pk): "250 accepted" for pk in ids})
    client.expire(journal_key(task_id), 600)


# --- The in-flight journal --------------------------------------------------------------------


@needs_redis
def test_a_batch_records_what_its_dead_run_journaled_and_sends_only_the_rest(
    smtp_sink: SmtpSink,
) -> None:
    send, (send_id, first, last, task_id) = launched(3)
    ids = claimed_by(send, task_id)
    journal(task_id, ids[:2])

    result = batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    assert result.sent == 1 and len(smtp_sink.messages) == 1
    assert statuses(send) == {Delivery.Status.SENT: 3}
    send.refresh_from_db()
    assert send.sent_count == 3 and send.status == Send.Status.COMPLETED
    assert Delivery.objects.get(pk=ids[0]).smtp_response == "250 accepted"
    assert not redis_client().exists(journal_key(task_id))  # dropped once all is written


@needs_redis
def test_the_reaper_records_a_dead_batchs_journal_before_requeueing_its_rows() -> None:
    send, (_, _, _, task_id) = launched(3)
    ids = claimed_by(send, task_id, minutes=30)
    journal(task_id, ids[:2])
    republished: list[Batch] = []

    reaped = delivery.deliveries_reap(publish=lambda *batch: republished.append(batch))

    assert reaped == 1
    assert statuses(send) == {Delivery.Status.SENT: 2, Delivery.Status.QUEUED: 1}
    assert Send.objects.get(pk=send.pk).sent_count == 2
    assert [batch[1:3] for batch in republished] == [(ids[2], ids[2])]


def test_the_reaper_skips_a_dead_batchs_rows_of_a_cancelled_send_instead_of_requeueing() -> None:
    send, (_, _, _, task_id) = launched(2)
    claimed_by(send, task_id, minutes=30)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.CANCELLED)

    delivery.deliveries_reap(publish=lambda *batch: None)

    assert statuses(send) == {Delivery.Status.SKIPPED: 2}
    assert Send.objects.get(pk=send.pk).skipped_count == 2


@needs_redis
def test_the_reaper_leaves_a_batch_whose_lock_is_gone_but_whose_heartbeat_beats() -> None:
    """A database restart drops every advisory lock while the runs go on: the heartbeat in
    Redis keeps the reaper from handing a live run's rows to a second run."""
    send, (_, _, _, task_id) = launched(2)
    claimed_by(send, task_id, minutes=30)
    with ControlProbe(send.pk, task_id) as probe:
        probe.ask()  # the first question of a run carries its heartbeat
        probe.answer()

    assert delivery.deliveries_reap(publish=lambda *batch: None) == 0
    assert statuses(send) == {Delivery.Status.SENDING: 2}


@needs_postgres  # on SQLite the batch lease itself is a Redis key when Redis is configured
def test_a_batch_whose_journal_cannot_be_read_waits_instead_of_resending(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    send, (send_id, first, last, task_id) = launched(2)
    claimed_by(send, task_id)  # an earlier run of this task died with these rows in hand
    settings.REDIS_URL = CLOSED_PORT

    with pytest.raises(delivery.DeliveryInterrupted):
        batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    assert smtp_sink.messages == []
    assert statuses(send) == {Delivery.Status.SENDING: 2}


@needs_redis
def test_the_batch_loop_journals_each_accepted_message_before_its_outcome_is_written(
    smtp_sink: SmtpSink,
) -> None:
    send, (_, _, _, task_id) = launched(1)
    (pk,) = claimed_by(send, task_id)

    with ControlProbe(send.pk, task_id) as probe:
        probe.note(pk, "250 queued as X")
        assert probe.answer() == Send.Status.RUNNING  # from the database: nothing was asked
        probe.ask()
        assert probe.answer() == Send.Status.RUNNING

    assert redis_client().hgetall(journal_key(task_id)) == {str(pk): "250 queued as X"}


# --- Outcome writes across a lost connection --------------------------------------------------


@needs_postgres
def test_an_outcome_write_reconnects_when_the_database_drops_the_connection() -> None:
    send, (_, _, _, task_id) = launched(2)
    claimed_by(send, task_id)
    pending = Pending()
    for row in Delivery.objects.filter(send=send):
        outcome_record(row=row, outcome=SmtpResult(Outcome.SENT, 250, "250 ok"), pending=pending)
    _terminate_session()
    calls: list[str] = []
    result = BatchResult()

    write(
        send_id=send.pk,
        pending=pending,
        result=result,
        reconnected=lambda: calls.append("reconnected"),
        interrupted=lambda _since: calls.append("interrupted"),
        sleep=lambda _: None,
    )

    assert calls == ["interrupted", "reconnected"]
    assert result.sent == 2 and statuses(send) == {Delivery.Status.SENT: 2}
    assert Send.objects.get(pk=send.pk).sent_count == 2


@needs_postgres
def test_an_outcome_write_gives_up_after_its_retry_time_with_a_typed_error(
    settings: Settings,
) -> None:
    settings.OPSDASH_DELIVERY_DB_RETRY_SECONDS = 0
    send, (_, _, _, task_id) = launched(1)
    claimed_by(send, task_id)
    pending = Pending()
    row = Delivery.objects.get(send=send)
    outcome_record(row=row, outcome=SmtpResult(Outcome.SENT, 250, "250 ok"), pending=pending)
    _terminate_session()

    with pytest.raises(delivery.DeliveryInterrupted) as raised:
        write(
            send_id=send.pk,
            pending=pending,
            result=BatchResult(),
            reconnected=lambda: None,
            interrupted=lambda _since: None,
        )

    assert raised.value.service == Service.DATABASE
    assert statuses(send) == {Delivery.Status.SENDING: 1}  # the journal's next run records it


def _terminate_session() -> None:
    """Ends this connection's server session from another connection, as a restart would."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


# --- Batch leases -----------------------------------------------------------------------------


@needs_postgres
def test_a_lease_is_exclusive_across_sessions_and_ends_with_its_connection() -> None:
    holder = connections.create_connection("default")
    first = BatchLease("task-a", 7, connection=holder)
    second = BatchLease("task-a", 7)
    assert first.acquire()

    assert not second.acquire()
    assert delivery.batch_leases_held(task_ids=["task-a", "task-b"]) == {"task-a"}
    assert delivery.sends_with_live_batch(send_ids=[7, 8]) == {7}

    holder.close()  # a killed worker: its session ends, and its locks with it
    # The server ends the session a moment after the client hangs up, not at once.
    wait_for(
        lambda: delivery.batch_leases_held(task_ids=["task-a"]) == set(),
        timeout=10,
        what="the closed session's lock to be released",
    )
    assert second.acquire()
    second.release()
    assert delivery.sends_with_live_batch(send_ids=[7]) == set()


@needs_postgres
def test_a_run_that_reconnects_after_another_took_its_batch_stops_with_a_typed_error() -> None:
    lease = BatchLease("task-c", 9)
    with lease_held_elsewhere("task-c", 9), pytest.raises(delivery.DeliveryInterrupted):
        lease.retake()


# --- Redis down -------------------------------------------------------------------------------


def test_the_rate_limiter_falls_back_to_a_local_share_while_redis_is_down(
    settings: Settings,
) -> None:
    settings.REDIS_URL = CLOSED_PORT
    settings.OPSDASH_RATE_FALLBACK_SHARE = 2
    bucket = ratelimit.BucketSpec("fallback-test", rate_per_second=10.0, capacity=10.0)
    waits: list[float] = []

    taken = [ratelimit.tokens_take([bucket], max_wait=0.0) for _ in range(5)]
    wait = ratelimit.tokens_take([bucket], max_wait=0.0, sleep=waits.append)

    assert taken == [0.0] * 5  # half the capacity: this process's share
    assert 0.1 < wait <= 0.2  # and half the rate


def test_the_send_status_falls_back_to_the_database_while_redis_is_down(
    settings: Settings,
) -> None:
    settings.REDIS_URL = CLOSED_PORT
    send, _ = launched(1)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.PAUSED)

    assert send_control_state(send_id=send.pk) == Send.Status.PAUSED
    with ControlProbe(send.pk, "task") as probe:
        probe.ask()
        probe.note(1, "250 ok")
        assert probe.answer() == Send.Status.PAUSED
        assert not probe.connected


@needs_postgres  # on SQLite the batch lease itself is a Redis key when Redis is configured
def test_a_batch_goes_on_while_redis_is_down_and_the_send_says_what_it_waits_for(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.REDIS_URL = CLOSED_PORT
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 1
    send, (send_id, first, last, task_id) = launched(3)

    result = batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    assert result.sent == 3 and len(smtp_sink.messages) == 3
    send.refresh_from_db()
    assert send.waiting_for == Service.REDIS and send.waiting_since is not None
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.INTERRUPTED)
    assert entry.changes["service"] == Service.REDIS


def test_the_waiting_state_ends_with_the_first_progress_once_the_service_is_back(
    smtp_sink: SmtpSink,
) -> None:
    send, (send_id, first, last, task_id) = launched(2)
    since = timezone.now() - timedelta(seconds=30)
    Send.objects.filter(pk=send.pk).update(waiting_for=Service.REDIS, waiting_since=since)
    assert send_waiting(Send.objects.get(pk=send.pk)) == (Service.REDIS, since)

    batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    send.refresh_from_db()
    assert (send.waiting_for, send.waiting_since) == ("", None)
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.RECOVERED)
    assert entry.changes["service"] == Service.REDIS and entry.changes["seconds"] >= 30


def test_a_process_that_still_sees_redis_down_just_after_a_recovery_reports_no_new_outage(
    smtp_sink: SmtpSink,
) -> None:
    """Another worker process may keep its failed view of Redis for a few seconds after one
    batch saw it come back: its report is the tail of the same outage, not a new one."""
    send, _ = launched(1)
    delivery.send_wait_begin(send_id=send.pk, service=Service.REDIS)
    assert delivery.send_wait_end(send_id=send.pk)

    delivery.send_wait_begin(send_id=send.pk, service=Service.REDIS)  # a lagging process

    send.refresh_from_db()
    assert send.waiting_for == ""
    actions = list(
        AuditEntry.objects.filter(send=send).order_by("id").values_list("action", flat=True)
    )
    assert actions == [AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]


@needs_redis
def test_a_database_outage_kept_in_redis_is_shown_then_recorded_once_the_database_answers(
    smtp_sink: SmtpSink,
) -> None:
    send, (send_id, first, last, task_id) = launched(2)
    delivery.send_wait_begin(send_id=send.pk, service=Service.DATABASE)
    assert send_waiting(send)[0] == Service.DATABASE
    assert Send.objects.get(pk=send.pk).waiting_for == ""  # the database was out, by assumption

    batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    actions = list(
        AuditEntry.objects.filter(send=send).order_by("id").values_list("action", flat=True)
    )
    assert actions[-2:] == [AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]
    assert send_waiting(Send.objects.get(pk=send.pk)) == ("", None)


# --- The watchdog -----------------------------------------------------------------------------


@pytest.fixture
def empty_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("campaigns.services.delivery.recovery.queue_ready_messages", lambda **_: 0)


def orphaned(recipients: int = 2, **fields: object) -> Send:
    send, _ = launched(recipients)
    quiet = timezone.now() - timedelta(seconds=60)
    Send.objects.filter(pk=send.pk).update(last_progress_at=quiet, **fields)
    return send


@pytest.mark.usefixtures("empty_queue")
def test_the_watchdog_dispatches_a_send_no_batch_serves_once_per_period() -> None:
    send = orphaned()
    published: list[Batch] = []

    assert delivery.sends_redispatch_orphans(publish=lambda *b: published.append(b)) == 1
    assert delivery.sends_redispatch_orphans(publish=lambda *b: published.append(b)) == 0

    assert [batch[0] for batch in published] == [send.pk]


@pytest.mark.usefixtures("empty_queue")
def test_the_watchdog_leaves_alone_a_send_whose_batch_retries_later_or_still_runs() -> None:
    later = orphaned(retry_due_at=timezone.now() + timedelta(minutes=1))
    live = orphaned()
    published: list[Batch] = []

    with lease_held_elsewhere("live-batch", live.pk):
        dispatched = delivery.sends_redispatch_orphans(publish=lambda *b: published.append(b))

    assert dispatched == 0 and published == []
    assert Send.objects.get(pk=later.pk).retry_due_at is not None


def test_the_watchdog_waits_while_the_delivery_queue_holds_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("campaigns.services.delivery.recovery.queue_ready_messages", lambda **_: 3)
    orphaned()

    assert delivery.sends_redispatch_orphans(publish=lambda *b: None) == 0
