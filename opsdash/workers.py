"""Command lines that start Celery processes, written once for the demo, tests and benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def celery_worker_argv(
    *,
    name: str,
    queues: Sequence[str],
    concurrency: int,
    pool: str = "prefork",
    loglevel: str = "info",
    standalone: bool = True,
) -> list[str]:
    """``celery worker`` for this project's app, with this interpreter.

    ``standalone`` leaves out gossip, mingle and heartbeat: a worker that does not talk to its
    peers starts faster and puts less traffic on the broker, which suits tests and benchmarks.
    """
    argv = [*_celery(), "worker", "-l", loglevel, "-Q", ",".join(queues)]
    argv += ["-c", str(concurrency), "-P", pool, "-n", name]
    if standalone:
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return argv


def celery_beat_argv(
    *, schedule: str, loglevel: str = "info", max_interval: int | None = None
) -> list[str]:
    """``celery beat`` for this project's app, keeping its state in the ``schedule`` file."""
    argv = [*_celery(), "beat", "-l", loglevel, "-s", schedule]
    if max_interval is not None:
        argv += ["--max-interval", str(max_interval)]
    return argv


def _celery() -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "opsdash"]
