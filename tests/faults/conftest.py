"""Fault-injection harness: a real worker process tuned so that a send lasts a few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from opsdash.smtp_sink import SmtpSink
from tests.outages import services_restore
from tests.processes import CeleryProcess

# The shared checks of tests/faults/harness.py report their operands like a test's own asserts.
pytest.register_assert_rewrite("tests.faults.harness")

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
# The production batch (500) and flush (50) sizes: a fault then catches up to 50 messages per
# batch sent and not yet written. A higher rate keeps such a send at a few seconds.
DEFAULT_SIZES_ENV = {
    **{
        name: value
        for name, value in FAULT_ENV.items()
        if name not in {"OPSDASH_DELIVERY_BATCH_SIZE", "OPSDASH_DELIVERY_FLUSH_EVERY"}
    },
    "OPSDASH_SMTP_RATE_PER_SECOND": "150",
}
_REPORT_KEY = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class Profile:
    """A send shaped for one fault: its worker settings, size, and when the fault strikes."""

    name: str
    env: dict[str, str]
    recipients: int
    fault_at: int  # messages at the sink when the fault is injected

    @property
    def rate(self) -> float:
        return float(self.env["OPSDASH_SMTP_RATE_PER_SECOND"])

    def __str__(self) -> str:
        return self.name


# Ten seconds of sending with 25-row batches, or eight with the default sizes (three batches,
# two at a time): long enough that the send is still running when a service comes back.
SMALL_BATCHES = Profile("small-batches", FAULT_ENV, recipients=600, fault_at=60)
DEFAULT_SIZES = Profile("default-sizes", DEFAULT_SIZES_ENV, recipients=1200, fault_at=300)


def fault_worker(sink: SmtpSink, env: dict[str, str] = FAULT_ENV) -> CeleryProcess:
    return CeleryProcess.worker(smtp_port=sink.port, concurrency=WORKER_CONCURRENCY, extra_env=env)


@pytest.fixture
def worker_factory(transactional_db: None, smtp_sink: SmtpSink) -> Iterator[list[CeleryProcess]]:
    """Workers started by the test (``fault_worker(sink).start()``), all stopped at the end."""
    started: list[CeleryProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture(autouse=True)
def _services_back() -> Iterator[None]:
    """Whatever a test did, Redis, PostgreSQL and RabbitMQ answer again after it: other runs on
    this machine share them. (Each outage restores its service itself; this is the backstop.)"""
    yield
    services_restore()


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
