"""Shared fixtures. Integration fixtures start real processes against the real services."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from pytest_django import Settings

from opsdash.smtp_sink import SmtpSink
from tests.processes import CeleryProcess, broker_queues_delete

SERVICES = settings.PROFILE == "services"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVICES:
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL, RabbitMQ and Redis: run `make test` with them up "
        "(OPSDASH_PROFILE=services)"
    )
    for item in items:
        # Markers, not keywords: a keyword match would also catch the tests/services/ folder.
        if item.get_closest_marker("services") or item.get_closest_marker("faults"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_queues() -> Iterator[None]:
    yield
    if SERVICES and os.environ.get("OPSDASH_QUEUE_PREFIX"):
        broker_queues_delete()


@pytest.fixture
def smtp_sink(settings: Settings) -> Iterator[SmtpSink]:
    """A real SMTP server on a free port; settings point the app at it."""
    with SmtpSink() as sink:
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = sink.port
        yield sink


@pytest.fixture
def worker(transactional_db: None, smtp_sink: SmtpSink) -> Iterator[CeleryProcess]:
    """A real Celery worker process consuming every queue of this run."""
    with CeleryProcess.worker(smtp_port=smtp_sink.port) as process:
        yield process


@pytest.fixture
def beat(transactional_db: None) -> Iterator[CeleryProcess]:
    """A real beat process with the DatabaseScheduler, ticking every second."""
    with CeleryProcess.beat() as process:
        yield process
