"""The deliver_batch task body: what it does with each NextStep the batch service reports.

The task runs in-process with the request a worker would give it (its id, its retry count).
In that mode ``self.retry`` raises ``Retry`` carrying the countdown instead of publishing, so
each test reads the wait the task chose. Nothing here needs the services profile.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from numbers import Real
from typing import Any

import pytest
import redis
from celery.exceptions import MaxRetriesExceededError, Retry, SoftTimeLimitExceeded
from django.db import OperationalError
from pytest_django import Settings

from campaigns.models import Delivery, Send
from campaigns.services.delivery import send_launch, send_pause
from campaigns.tasks import BATCH_MAX_RETRIES, deliver_batch, launch_send
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, audience_with
from tests.services.leases import lease_held_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)

Batch = tuple[int, int, int, str]


def launched(recipients: int, **campaign: Any) -> Batch:
    """A launched send of one batch; returns that batch as it was published."""
    published: list[Batch] = []
    send_launch(
        campaign_id=CampaignFactory.create(audiences=[audience_with(recipients)], **campaign).pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    (batch,) = published
    return batch


def run_task(batch: Batch, *, retries: int = 0) -> dict[str, Any]:
    """Runs the task body as a worker would run delivery ``retries + 1`` of this batch."""
    send_id, first_id, last_id, task_id = batch
    kwargs = {"send_id": send_id, "first_id": first_id, "last_id": last_id}
    # celery-types declares push_request with the task's own parameters; Celery hands these to
    # the request Context (id, retries, ...), hence [call-arg].
    deliver_batch.push_request(  # type: ignore[call-arg]
        id=task_id, retries=retries, is_eager=True, called_directly=False, args=(), kwargs=kwargs
    )
    try:
        result: dict[str, Any] = deliver_batch.run(**kwargs)
        return result
    finally:
        deliver_batch.pop_request()


def retry_countdown(batch: Batch, *, retries: int = 0) -> float:
    with pytest.raises(Retry) as raised:
        run_task(batch, retries=retries)
    assert isinstance(raised.value.when, Real)
    return float(raised.value.when)


def statuses(send_id: int) -> Counter[str]:
    return Counter(Delivery.objects.filter(send_id=send_id).values_list("status", flat=True))


def test_a_finished_batch_returns_its_counts(smtp_sink: SmtpSink) -> None:
    batch = launched(3)

    assert run_task(batch) == {"sent": 3, "failed": 0, "skipped": 0, "requeued": 0}
    assert Send.objects.get(pk=batch[0]).status == Send.Status.COMPLETED


def test_a_paused_send_ends_the_task_without_a_retry(smtp_sink: SmtpSink) -> None:
    batch = launched(2)
    send_pause(send_id=batch[0], by=None)

    assert run_task(batch)["stopped"] == Send.Status.PAUSED
    assert smtp_sink.messages == []


def test_a_busy_batch_looks_again_once_the_other_runs_lease_would_lapse(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_DELIVERY_HEARTBEAT_SECONDS = 10
    batch = launched(2)
    # Waiting is not failing: far past the failure bound, the task still waits.
    with lease_held_elsewhere(batch[3]):
        countdown = retry_countdown(batch, retries=BATCH_MAX_RETRIES + 5)

    assert 10 <= countdown <= 13
    assert smtp_sink.messages == []


def test_a_rate_limited_batch_retries_when_the_limit_allows(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_RATE_MAX_WAIT_SECONDS = 1  # a longer wait hands the rows back
    batch = launched(3, rate_limit_per_minute=2)

    countdown = retry_countdown(batch, retries=BATCH_MAX_RETRIES + 5)

    # Two a minute is one every 30 s, with no burst: the second token comes 30 s after the first.
    assert 25 < countdown <= 30
    assert statuses(batch[0]) == {Delivery.Status.SENT: 1, Delivery.Status.QUEUED: 2}


def test_a_rate_limit_wait_is_capped_at_five_minutes(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_SMTP_RATE_PER_HOUR = 1  # the second message waits an hour
    batch = launched(2)

    assert retry_countdown(batch) == 300
    assert statuses(batch[0]) == {Delivery.Status.SENT: 1, Delivery.Status.QUEUED: 1}


def test_a_temporary_refusal_retries_with_a_growing_backoff_then_gives_up(
    smtp_sink: SmtpSink,
    settings: Settings,
) -> None:
    settings.OPSDASH_DELIVERY_RETRY_BASE_SECONDS = 5
    smtp_sink.rule = lambda address: "451 4.3.0 Try again later"
    batch = launched(1)

    assert 4 <= retry_countdown(batch) <= 6  # 5 s, with jitter
    assert 16 <= retry_countdown(batch, retries=2) <= 24  # 5 s doubled twice
    with pytest.raises(MaxRetriesExceededError):
        run_task(batch, retries=BATCH_MAX_RETRIES)
    assert statuses(batch[0]) == {Delivery.Status.QUEUED: 1}  # the stall check takes over


@pytest.fixture
def soft_time_limit() -> Iterator[None]:
    """What a worker does at the soft time limit: a signal whose handler raises in the task."""

    def handler(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("soft_time_limit")
def test_the_soft_time_limit_records_what_was_sent_and_carries_on_in_a_fresh_run(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    # One session at a time: the limit lands while message 3 is handed over, not 16 at once.
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    seen: list[str] = []

    def limit_at_third(address: str) -> None:
        seen.append(address)
        if len(seen) == 3:  # while message 3 is being handed over, the time is up
            os.kill(os.getpid(), signal.SIGUSR1)

    smtp_sink.rule = limit_at_third
    batch = launched(6)
    assert threading.current_thread() is threading.main_thread()  # where signals land

    assert retry_countdown(batch, retries=BATCH_MAX_RETRIES + 5) == 1

    rows = statuses(batch[0])
    assert rows[Delivery.Status.SENDING] == 0  # nothing left claimed by the stopped run
    assert rows[Delivery.Status.SENT] >= 2 and rows[Delivery.Status.QUEUED] >= 3
    assert Send.objects.get(pk=batch[0]).sent_count == rows[Delivery.Status.SENT]
    smtp_sink.rule = None
    assert run_task(batch, retries=1)["requeued"] == 0
    assert statuses(batch[0]) == {Delivery.Status.SENT: 6}


@pytest.mark.parametrize(
    "error",
    [OperationalError("server closed the connection"), redis.ConnectionError("refused")],
    ids=["database", "redis"],
)
def test_an_outage_makes_the_batch_retry_within_seconds_not_fail(
    error: Exception,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = launched(1)

    def outage(**_: object) -> None:
        raise error

    monkeypatch.setattr("campaigns.tasks.batch_deliver", outage)

    # Far past the failure bound: an outage is waited out, never counted as a failure.
    countdown = retry_countdown(batch, retries=BATCH_MAX_RETRIES + 5)

    assert 0.5 <= countdown <= 6.5
    assert Send.objects.get(pk=batch[0]).retry_due_at is not None


def test_an_outage_in_the_launch_retries_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def outage(**_: object) -> None:
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr("campaigns.tasks.send_launch", outage)
    launch_send.push_request(id="launch", retries=0, is_eager=True, called_directly=False)
    try:
        with pytest.raises(Retry):
            launch_send.run(campaign_id=1, occurrence_key="once", trigger="manual")
    finally:
        launch_send.pop_request()
