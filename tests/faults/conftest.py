"""Fault-injection harness: a real worker process tuned so that a send lasts a few seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsdash.smtp_sink import SmtpSink
from tests.processes import CeleryProcess

WORKER_CONCURRENCY = 2
FLUSH_EVERY = 5
# Small batches and frequent outcome writes, a short lease and backoff so recovery happens within
# the test, and a rate limit so the send is still running when the fault is injected.
FAULT_ENV = {
    "OPSDASH_DELIVERY_BATCH_SIZE": "25",
    "OPSDASH_DELIVERY_FLUSH_EVERY": str(FLUSH_EVERY),
    "OPSDASH_DELIVERY_HEARTBEAT_SECONDS": "3",
    "OPSDASH_DELIVERY_RETRY_BASE_SECONDS": "1",
    "OPSDASH_DELIVERY_LEASE_SECONDS": "10",
    "OPSDASH_SMTP_RATE_PER_SECOND": "60",
    "EMAIL_TIMEOUT": "5",
}
_REPORT_KEY = pytest.StashKey[list[str]]()


def fault_worker(sink: SmtpSink) -> CeleryProcess:
    return CeleryProcess.worker(
        smtp_port=sink.port, concurrency=WORKER_CONCURRENCY, extra_env=FAULT_ENV
    )


@pytest.fixture
def worker_factory(transactional_db: None, smtp_sink: SmtpSink) -> Iterator[list[CeleryProcess]]:
    """Workers started by the test (``fault_worker(sink).start()``), all stopped at the end."""
    started: list[CeleryProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines for the fault report printed at the end of the run (counts of duplicates, ...)."""
    lines: list[str] = []
    yield lines
    stash = request.config.stash.setdefault(_REPORT_KEY, [])
    stash += [f"{request.node.name}: {line}" for line in lines]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_REPORT_KEY, [])
    if lines:
        terminalreporter.section("delivery fault report")
        for line in lines:
            terminalreporter.write_line(line)
