"""Stops and starts the real services (Redis, PostgreSQL, RabbitMQ) for the fault tests.

Every stop is undone in a ``finally``: a test that left a service down would break every other
run on the machine. Each outage records, on the wall clock, when the service was taken away and
when it answered again, so a test can compare that with ``Send.finished_at``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import Error as DatabaseError
from django.db import connection

REDIS_PORT = 6379
# The command line .ci/run starts Redis with: the same server comes back, with no data.
REDIS_START_ARGV = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
RABBITMQ_PORT = 5672
START_TIMEOUT = 60.0


@dataclass
class Outage:
    """One service taken away; times are ``time.time()`` so they compare with the database's."""

    service: str
    down_at: float
    back_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.back_at - self.down_at


def _poll(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached in {timeout}s")
        time.sleep(0.1)


# --- Redis ----------------------------------------------------------------------------------


def redis_answers() -> bool:
    """PING over a plain socket: redis-py's own connect retries would blur the timings."""
    try:
        with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_stop() -> None:
    """Shuts Redis down without saving: it comes back empty, as after a crash or a failover."""
    # redis-cli reports the closed connection as an error on some versions: the poll decides.
    subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
        capture_output=True,
        timeout=30,
    )
    _poll(lambda: not redis_answers(), timeout=30, what="Redis down")


def redis_start() -> None:
    if redis_answers():
        return
    subprocess.run(REDIS_START_ARGV, check=True, capture_output=True, timeout=30)
    _poll(redis_answers, timeout=START_TIMEOUT, what="Redis answering PING")


@contextmanager
def redis_down() -> Iterator[Outage]:
    """Redis is down inside the block and back, empty, after it (``back_at`` set on exit)."""
    outage = Outage("redis", time.time())
    try:
        redis_stop()
        yield outage
    finally:
        redis_start()
        outage.back_at = time.time()


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_version() -> str:
    """The cluster's major version, as .ci/run finds it (the one folder in /etc/postgresql)."""
    versions = sorted(path.name for path in Path("/etc/postgresql").iterdir())
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def _pg_ctlcluster(action: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", action]
    return subprocess.run([*argv, *extra], capture_output=True, timeout=120)


def postgres_answers() -> bool:
    """Whether this process can query the test database again (on a fresh connection)."""
    connection.close()  # a connection from before a restart is dead: never reuse it
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        connection.close()
        return False


def postgres_start() -> None:
    if postgres_answers():
        return
    _pg_ctlcluster("start")
    _poll(postgres_answers, timeout=START_TIMEOUT, what="PostgreSQL accepting queries")


def postgres_restart() -> Outage:
    """A fast restart (open connections are cut, as after a crash or a failover); returns when
    the test database answers again. This process's own connection is replaced too."""
    outage = Outage("postgresql", time.time())
    try:
        _pg_ctlcluster("restart", "-m", "fast")
    finally:
        postgres_start()
        outage.back_at = time.time()
    return outage


# --- RabbitMQ -------------------------------------------------------------------------------


def rabbitmqctl() -> str:
    path = shutil.which("rabbitmqctl")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must run the broker fault tests: rabbitmqctl is not installed")
        pytest.skip("rabbitmqctl is not available: cannot stop and start RabbitMQ")
    return path


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", RABBITMQ_PORT), timeout=1):
            return True
    except OSError:
        return False


def rabbitmq_start() -> None:
    if rabbitmq_answers():
        return
    subprocess.run([rabbitmqctl(), "start_app"], check=True, capture_output=True, timeout=120)
    _poll(rabbitmq_answers, timeout=START_TIMEOUT, what="RabbitMQ accepting connections")


@contextmanager
def rabbitmq_down() -> Iterator[Outage]:
    """The broker application is stopped inside the block (the Erlang node stays up)."""
    ctl = rabbitmqctl()
    outage = Outage("rabbitmq", time.time())
    try:
        subprocess.run([ctl, "stop_app"], check=True, capture_output=True, timeout=60)
        yield outage
    finally:
        rabbitmq_start()
        outage.back_at = time.time()


def services_restore() -> None:
    """Starts whatever a fault test left down; a no-op when everything answers."""
    redis_start()
    postgres_start()
    if shutil.which("rabbitmqctl"):
        rabbitmq_start()
