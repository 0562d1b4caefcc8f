"""OPSDASH_QUORUM_QUEUES against the real RabbitMQ: quorum queues, a send, countdown retries."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu import Exchange, Queue
from pytest_django import Settings

from campaigns.models import Delivery, Send
from campaigns.publishers import publish_launch
from campaigns.tasks import purge_task_results
from opsdash.celery import EX_CONFIG, app, task_queues
from opsdash.smtp_sink import SmtpSink
from opsdash.workers import celery_beat_argv
from tests.factories import CampaignFactory, audience_with
from tests.processes import CeleryProcess, broker_queues_delete, child_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 30
# One address in six answers 451 the first time it is offered: each such row is retried by the
# batch's countdown retry, which with quorum queues travels through native delayed delivery.
REFUSE_EVERY = 6
LATER_SECONDS = 12
WORKER_ENV = {
    "OPSDASH_QUORUM_QUEUES": "true",
    "OPSDASH_DELIVERY_BATCH_SIZE": "10",
    "OPSDASH_DELIVERY_RETRY_BASE_SECONDS": "1",
}


def _publish_to(*, quorum: bool) -> None:
    """Makes this process publish as a worker with (or without) quorum queues would."""
    app.conf.task_queues = task_queues(settings.QUEUES, quorum=quorum)
    for cached in ("queues", "router", "default_queue"):
        app.amqp.__dict__.pop(cached, None)
    # Fresh connection pools: a closed connection forgets the queues it declared, so the next
    # publish declares them again with the new arguments.
    kombu.pools.reset()
    celery: Any = app
    celery._pool = None
    celery.amqp._producer_pool = None


def _exchanges_delete() -> None:
    with app.connection_for_write() as conn:
        for name in settings.QUEUES:
            try:
                Exchange(f"{name}.topic", channel=conn.channel()).delete()
            except Exception:
                continue


@pytest.fixture
def quorum(settings: Settings) -> Iterator[None]:
    """This run's queues as quorum queues, from nothing, and deleted again afterwards (so a
    later test of the same run declares them classic again)."""
    broker_queues_delete()
    settings.OPSDASH_QUORUM_QUEUES = True
    _publish_to(quorum=True)
    yield
    _publish_to(quorum=False)
    broker_queues_delete()
    _exchanges_delete()


def is_quorum(name: str) -> bool:
    """Asked over AMQP: redeclaring an existing queue as quorum succeeds only if it is one."""
    with app.connection_for_write() as conn:
        Queue(name, channel=conn.channel()).queue_declare(passive=True)
        try:
            quorum = Queue(name, queue_arguments={"x-queue-type": "quorum"})
            quorum.bind(conn.channel()).queue_declare()
        except Exception:
            return False
    return True


def rabbitmqctl_queues(*columns: str) -> dict[str, list[str]] | None:
    """Queue name -> the columns asked for, as RabbitMQ lists them, where rabbitmqctl runs (as
    root on the broker's host, as in CI); None elsewhere."""
    if shutil.which("rabbitmqctl") is None:
        return None
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", *columns],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if listing.returncode != 0:
        return None
    rows = (line.split("\t") for line in listing.stdout.splitlines())
    return {row[0]: row[1:] for row in rows if len(row) == len(columns) + 1}


def assert_countdowns_wait_in_rabbitmq(worker: CeleryProcess) -> None:
    """A sub-second countdown is accepted (sent as one second), and a longer one waits in
    RabbitMQ's delay queues, not unacknowledged in the worker, then runs on time."""
    published = timezone.now()
    quick = purge_task_results.apply_async(countdown=0.3)
    later = purge_task_results.apply_async(countdown=LATER_SECONDS)
    time.sleep(3)
    listed = rabbitmqctl_queues("messages_ready", "messages_unacknowledged")
    if listed is not None:
        delayed = sum(int(row[0]) for name, row in listed.items() if "celery_delayed_" in name)
        assert delayed >= 1
        assert all(listed[name] == ["0", "0"] for name in settings.QUEUES)
    wait_for(
        lambda: (
            TaskResult.objects.filter(task_id__in=[quick.id, later.id], status="SUCCESS")
            .distinct()
            .count()
            == 2
        ),
        timeout=LATER_SECONDS + 30,
        what="both countdown tasks to run",
        logs=worker.log,
    )
    done = TaskResult.objects.get(task_id=later.id).date_done
    assert (done - published).total_seconds() >= LATER_SECONDS - 1


class RefuseOnce:
    """A sink rule: a transient 451 (not a throttling one) for the chosen addresses, once."""

    def __init__(self, addresses: set[str]) -> None:
        self.pending = set(addresses)
        self.lock = threading.Lock()

    def __call__(self, address: str) -> str | None:
        with self.lock:
            if address in self.pending:
                self.pending.discard(address)
                return "451 4.3.0 Local error in processing"
        return None


def test_a_send_over_quorum_queues_retries_with_countdown_and_reaches_everyone_once(
    quorum: None, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    audience = audience_with(RECIPIENTS)
    emails = sorted(audience.subscriptions.values_list("recipient__email", flat=True))
    refused = set(emails[::REFUSE_EVERY])
    smtp_sink.rule = RefuseOnce(refused)
    campaign = CampaignFactory.create(audiences=[audience])

    beat = CeleryProcess(
        celery_beat_argv(schedule=str(tmp_path / "beat-schedule"), max_interval=1),
        child_env(OPSDASH_QUORUM_QUEUES="true"),
        ready_marker="beat: Starting",
    )
    with beat, CeleryProcess.worker(smtp_port=smtp_sink.port, extra_env=WORKER_ENV) as worker:
        assert all(is_quorum(name) for name in settings.QUEUES)
        listed = rabbitmqctl_queues("type")
        if listed is not None:
            types = {name: listed.get(name, ["missing"])[0] for name in settings.QUEUES}
            assert types == dict.fromkeys(settings.QUEUES, "quorum")

        publish_launch(campaign.pk, "once", Send.Trigger.MANUAL, None)
        wait_for(
            lambda: Send.objects.filter(campaign=campaign, status=Send.Status.COMPLETED).exists(),
            timeout=90,
            what="the send to complete",
            logs=worker.log,
        )
        assert_countdowns_wait_in_rabbitmq(worker)
        log = worker.log()

    by_recipient = Counter(message["To"].addresses[0].addr_spec for message in smtp_sink.messages)
    assert set(by_recipient) == set(emails)
    assert set(by_recipient.values()) == {1}
    retried = Delivery.objects.filter(recipient__email__in=refused)
    assert all(row.attempts >= 2 and row.status == Delivery.Status.SENT for row in retried)
    # Every batch that retried with a countdown came back: its message went through RabbitMQ's
    # delay queues and was delivered again (the watchdog publishes new ids, never these).
    retried_ids = set(re.findall(r"deliver_batch\[([0-9a-f-]+)\] retry: Retry in", log))
    assert retried_ids
    for task_id in retried_ids:
        assert log.count(f"deliver_batch[{task_id}] received") >= 2, task_id
    # Beat's housekeeping, published with an expiry (a per-message TTL), runs on quorum queues.
    assert re.search(r"redispatch_orphans\[[0-9a-f-]+\] succeeded", log)
    assert "Direct exchanges are not supported" not in log
    assert "celery_delayed" not in log  # no failure setting up or using the delayed exchanges


def test_a_worker_refuses_to_start_on_queues_of_the_other_type(
    quorum: None, smtp_sink: SmtpSink
) -> None:
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():  # quorum, as a quorum worker declares them
            queue.bind(conn.channel()).declare()

    classic = CeleryProcess.worker(smtp_port=smtp_sink.port)
    with pytest.raises(RuntimeError, match="celery exited early"):
        classic.start()

    assert classic.proc is not None and classic.proc.returncode == EX_CONFIG
    assert (
        f"Worker not started: RabbitMQ has '{settings.QUEUE_DELIVERY}', "
        f"'{settings.QUEUE_PRIORITY}', '{settings.QUEUE_IMPORTS}', '{settings.QUEUE_DEFAULT}' as "
        "quorum queues but OPSDASH_QUORUM_QUEUES=false declares them classic"
    ) in classic.log()
    assert "PRECONDITION_FAILED" in classic.log()
    assert is_quorum(settings.QUEUE_DELIVERY)
