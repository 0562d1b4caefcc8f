"""What a Celery worker checks before it consumes anything, and the queues it declares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Queue
from pytest_django import Settings

from opsdash.celery import EX_CONFIG, system_check_errors, task_queues
from tests.processes import CeleryProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_a_worker_with_a_broken_dkim_key_refuses_to_start_with_the_checks_message() -> None:
    worker = CeleryProcess.worker(
        smtp_port=1,
        extra_env={
            "OPSDASH_DKIM_DOMAIN": "example.com",
            "OPSDASH_DKIM_SELECTOR": "opsdash2026",
            "OPSDASH_DKIM_PRIVATE_KEY": "not a PEM key",
        },
    )
    with pytest.raises(RuntimeError, match="celery exited early"):
        worker.start()

    assert worker.proc is not None and worker.proc.returncode == EX_CONFIG
    assert "CRITICAL opsdash.celery Worker not started: campaigns.E104: " in worker.log()
    assert "ready." not in worker.log()


def test_classic_queues_are_celerys_plain_queues() -> None:
    # As before the quorum option: Celery publishes to them through the default exchange.
    assert task_queues(["p-delivery", "p-default"], quorum=False) == [
        Queue("p-delivery"),
        Queue("p-default"),
    ]


def test_quorum_queues_have_a_topic_exchange_of_their_own_for_delayed_delivery() -> None:
    (queue,) = task_queues(["p-delivery"], quorum=True)

    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert (queue.exchange.name, queue.exchange.type) == ("p-delivery.topic", "topic")
    assert queue.routing_key == "p-delivery"
    assert queue.durable


def test_quorum_queues_without_rabbitmq_are_refused_at_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(OPSDASH_PROFILE="embedded", OPSDASH_QUORUM_QUEUES="true")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "OPSDASH_QUORUM_QUEUES=true needs RabbitMQ" in result.stderr


def test_only_unsilenced_check_errors_stop_a_worker(settings: Settings) -> None:
    settings.OPSDASH_DKIM_DOMAIN = "example.com"
    settings.OPSDASH_DKIM_SELECTOR = "opsdash2026"
    settings.OPSDASH_DKIM_PRIVATE_KEY = "not a PEM key"
    assert [line.split(":")[0] for line in system_check_errors()] == ["campaigns.E104"]

    settings.SILENCED_SYSTEM_CHECKS = ["campaigns.E104"]
    assert system_check_errors() == []
