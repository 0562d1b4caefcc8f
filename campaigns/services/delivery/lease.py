"""Batch leases: at most one run of a batch task works on its rows at a time.

RabbitMQ redelivers a batch whose worker died or lost its connection, possibly while the first
run is still sending. The lease tells the second run to wait, and tells the reaper and the
watchdog that rows in ``sending`` or ``queued`` are still in someone's hands.

On PostgreSQL the lease is a session advisory lock on the worker's own database connection,
not a Redis key: exclusivity then depends on no service but the one that holds the rows, and
a killed process drops its connection, so the server releases its lock at once (a run merely
cut off from the broker keeps it). Each run also holds a shared lock on its send, so "does this
send have a live batch" is one look at ``pg_locks``. On SQLite (the embedded profile: one
worker process) the lease stays a cache key with a short TTL, renewed while the run works.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import DatabaseError
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper

from campaigns.models import Service
from campaigns.services.delivery.outcomes import DeliveryInterrupted
from campaigns.services.delivery.state import state_delete, state_get, state_set
from campaigns.services.redisclient import redis_failed

_LOCKS_HELD = """
    SELECT DISTINCT (classid::bigint << 32) | objid::bigint FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
      AND ((classid::bigint << 32) | objid::bigint) = ANY(%s)
"""


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (``pg_locks`` shows it in two halves)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _task_key(task_id: str) -> int:
    return advisory_key(f"opsdash:{_database()}:batch:{task_id}")


def _send_key(send_id: int) -> int:
    return advisory_key(f"opsdash:{_database()}:send:{send_id}")


def _database() -> str:
    # Advisory locks are server-wide: another database on the same server (another
    # installation, the tests) has its own send 7.
    return str(default_connection.settings_dict["NAME"])


def _uses_advisory_locks(conn: BaseDatabaseWrapper) -> bool:
    return conn.vendor == "postgresql"


class LeaseLost(DeliveryInterrupted):
    """A reconnected run could not take its lease back: another run has the batch now (and
    records this run's journal before it claims anything)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(Service.DATABASE, f"batch {task_id} was taken over after a reconnect")


class BatchLease:
    """The lease of one run of one batch task (see the module docstring)."""

    def __init__(
        self, task_id: str, send_id: int = 0, *, connection: BaseDatabaseWrapper | None = None
    ) -> None:
        self.task_id, self.send_id = task_id, send_id
        self.db = connection or default_connection
        self.key = f"batch:{task_id}:lease"
        self.ttl = settings.OPSDASH_DELIVERY_HEARTBEAT_SECONDS
        self.token = uuid.uuid4().hex
        self.renewed_at = 0.0
        self.held = False
        self.advisory = _uses_advisory_locks(self.db)

    def acquire(self) -> bool:
        if self.advisory:
            self.held = self._lock()
        else:
            self.held = state_set(self.key, self.token, ttl=self.ttl, only_new=True)
            self._mark_send()
            self.renewed_at = time.monotonic()
        return self.held

    def _lock(self) -> bool:
        # One round trip; CASE evaluates in order, so the send is marked only with the lease.
        sql = "SELECT CASE WHEN pg_try_advisory_lock(%s) THEN pg_try_advisory_lock_shared(%s) END"
        with self.db.cursor() as cursor:
            cursor.execute(sql, [_task_key(self.task_id), _send_key(self.send_id)])
            return bool(cursor.fetchone()[0])

    def retake(self) -> None:
        """After a reconnect (a new session holds no locks): takes the lease back or raises."""
        if self.advisory and not self._lock():
            self.held = False
            raise LeaseLost(self.task_id)

    def renew(self) -> None:
        """Keeps a cache lease alive; an advisory lock lives as long as its connection."""
        if self.advisory or not self.held:
            return
        if time.monotonic() - self.renewed_at >= self.ttl / 4:
            state_set(self.key, self.token, ttl=self.ttl)
            self._mark_send()
            self.renewed_at = time.monotonic()

    def _mark_send(self) -> None:
        if self.send_id:
            state_set(f"send:{self.send_id}:live", "1", ttl=self.ttl)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.advisory:
            self._unlock()
        elif state_get(self.key) == self.token:
            state_delete(self.key)

    def _unlock(self) -> None:
        if self.db.connection is None:
            return  # the connection is gone, and its locks with it
        sql = "SELECT pg_advisory_unlock(%s), pg_advisory_unlock_shared(%s)"
        try:
            with self.db.cursor() as cursor:
                cursor.execute(sql, [_task_key(self.task_id), _send_key(self.send_id)])
        except DatabaseError:
            self.db.close()  # a session that cannot unlock is ended, and its locks with it


def batch_leases_held(*, task_ids: Iterable[str]) -> set[str]:
    """The task ids whose batch is held by a live run, in one query on PostgreSQL."""
    by_key = {_task_key(task_id): task_id for task_id in task_ids}
    return _held(by_key, lambda task_id: bool(state_get(f"batch:{task_id}:lease")))


def sends_with_live_batch(*, send_ids: Iterable[int]) -> set[int]:
    """The sends at least one running batch is working on."""
    return _held({_send_key(send_id): send_id for send_id in send_ids}, _cache_marked)


def _held[T](by_key: dict[int, T], in_cache: Callable[[T], bool]) -> set[T]:
    """The values whose advisory lock someone holds (or, on SQLite, ``in_cache`` says so)."""
    if not by_key:
        return set()
    if _uses_advisory_locks(default_connection):
        return {by_key[key] for key in _advisory_held(list(by_key))}
    return {value for value in by_key.values() if in_cache(value)}


def _cache_marked(send_id: int) -> bool:
    try:
        return state_get(f"send:{send_id}:live") is not None
    except Exception as exc:  # Redis down: count it as live, the minute reaper stays
        redis_failed(exc)
        return True


def _advisory_held(keys: list[int]) -> set[int]:
    with default_connection.cursor() as cursor:
        cursor.execute(_LOCKS_HELD, [keys])
        return {int(row[0]) for row in cursor.fetchall()}
