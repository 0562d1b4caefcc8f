"""Starts real Celery worker and beat processes against the test database and this run's queues."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from django.conf import settings
from django.db import connection

from opsdash.workers import celery_beat_argv, celery_worker_argv

ROOT = Path(__file__).resolve().parent.parent


def _test_database_url() -> str:
    """The URL of the database the tests use right now (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{user}{password}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "OPSDASH_QUEUE_PREFIX": settings.QUEUE_PREFIX,
        "OPSDASH_REDIS_PREFIX": settings.REDIS_KEY_PREFIX,
        "EMAIL_HOST": settings.EMAIL_HOST,
        "EMAIL_PORT": str(settings.EMAIL_PORT),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class CeleryProcess:
    """A worker or beat subprocess with its log in a file; stopped on exit (or killed)."""

    def __init__(self, args: list[str], env: dict[str, str], ready_marker: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="opsdash-celery-", suffix=".log")[1])
        self.args = args
        self.env = env
        self.ready_marker = ready_marker
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def worker(
        cls,
        *,
        smtp_port: int,
        concurrency: int = 2,
        queues: list[str] | None = None,
        pool: str = "prefork",
        extra_env: dict[str, str] | None = None,
    ) -> CeleryProcess:
        args = celery_worker_argv(
            name=f"test-{uuid.uuid4().hex[:6]}@%h",
            queues=queues or settings.QUEUES,
            concurrency=concurrency,
            pool=pool,
        )
        env = child_env(EMAIL_PORT=str(smtp_port), **(extra_env or {}))
        return cls(args, env, ready_marker="ready.")

    @classmethod
    def beat(cls) -> CeleryProcess:
        schedule = tempfile.mkstemp(prefix="opsdash-beat-")[1]
        args = celery_beat_argv(schedule=schedule, max_interval=1)
        return cls(args, child_env(), ready_marker="beat: Starting")

    def start(self, timeout: float = 60) -> CeleryProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while self.ready_marker not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery exited early:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery not ready in {timeout}s:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool children die mid-task."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pool_pids(self) -> list[int]:
        """The prefork pool's child processes of this worker (never the worker itself)."""
        if not self.alive():
            return []
        assert self.proc is not None
        out = subprocess.run(
            ["ps", "--ppid", str(self.proc.pid), "-o", "pid="],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return [int(pid) for pid in out.split()]

    def kill_pool_child(self, pid: int) -> None:
        """SIGKILL one pool child, as the kernel's OOM killer would; the worker replaces it."""
        if pid not in self.pool_pids():
            raise ValueError(f"{pid} is not a pool process of this worker")
        os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 30) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> CeleryProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    logs: Callable[[], str] = str,
) -> None:
    """Polls ``predicate`` until it is true; fails after ``timeout`` seconds with ``logs()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(interval)


def broker_queues_delete() -> None:
    """Deletes this run's queues from RabbitMQ so test runs leave nothing behind."""
    from kombu import Queue

    from opsdash.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in settings.QUEUES:
            try:
                Queue(name, channel=channel).delete()
            except Exception:
                continue


def on_own_thread(action: Callable[[], object]) -> None:
    """Runs a service from inside the sink (an asyncio loop) and waits for it."""

    def target() -> None:
        try:
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
