"""Small values every worker reads on every message: a send's status and the batch leases.

Straight to Redis when configured: Django's RedisCache builds a client object per call, which
costs more than the rest of the per-message bookkeeping. Otherwise the Django cache (local
memory in the embedded profile, whose single worker process shares it between its threads).
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from campaigns.models import Send


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL or "", decode_responses=True)


def _state_key(key: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:delivery:{key}"


def state_get(key: str) -> str | None:
    if settings.REDIS_URL:
        value = _redis().get(_state_key(key))
        return None if value is None else str(value)
    cached = cache.get(key)
    return None if cached is None else str(cached)


def state_set(key: str, value: str, *, ttl: int, only_new: bool = False) -> bool:
    """Sets ``key``; with ``only_new``, only if it does not exist (returns whether it was set)."""
    if settings.REDIS_URL:
        return bool(_redis().set(_state_key(key), value, ex=ttl, nx=only_new))
    if only_new:
        return bool(cache.add(key, value, timeout=ttl))
    cache.set(key, value, timeout=ttl)
    return True


def state_delete(key: str) -> None:
    if settings.REDIS_URL:
        _redis().delete(_state_key(key))
    else:
        cache.delete(key)


# --- A send's status, as the delivery loops see it --------------------------------------------

CONTROL_TTL = 86_400


def _control_key(send_id: int) -> str:
    return f"send:{send_id}:status"


def control_set(send_id: int, status: str) -> None:
    state_set(_control_key(send_id), status, ttl=CONTROL_TTL)


def control_publish(send_id: int, status: str) -> None:
    """Tells every delivery loop about a transition, once it is committed."""
    transaction.on_commit(lambda: control_set(send_id, status), robust=True)


def send_control_state(*, send_id: int) -> str:
    """The Send's status as the delivery loop sees it, checked before every message.

    With Redis the status is read from the shared store (written after every transition
    commits); without it, from the database, which the embedded profile's single worker can
    afford. A miss is filled with "set if absent", so it can never overwrite a transition.
    """
    if settings.REDIS_URL:
        value = state_get(_control_key(send_id))
        if value is not None:
            return value
    found = Send.objects.filter(pk=send_id).values_list("status", flat=True).first()
    status = str(found or Send.Status.CANCELLED)
    if settings.REDIS_URL:
        state_set(_control_key(send_id), status, ttl=CONTROL_TTL, only_new=True)
    return status


class ControlProbe:
    """Reads a Send's status once per message on a connection of its own.

    ``ask`` sends the GET without waiting, ``answer`` reads the reply (or falls back to
    ``send_control_state`` without Redis or after any Redis error).
    """

    def __init__(self, send_id: int) -> None:
        self.send_id = send_id
        self.key = _state_key(_control_key(send_id))
        self.conn: Any = None
        self.asked = False

    def __enter__(self) -> ControlProbe:
        if settings.REDIS_URL:
            self.conn = _redis().connection_pool.get_connection()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            _redis().connection_pool.release(self.conn)
            self.conn = None

    def ask(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.send_command("GET", self.key)
            self.asked = True
        except redis.RedisError:
            self._drop()

    def answer(self) -> str:
        value = None
        if self.conn is not None and self.asked:
            self.asked = False
            try:
                value = self.conn.read_response()
            except redis.RedisError:
                self._drop()
        return str(value) if value is not None else send_control_state(send_id=self.send_id)

    def _drop(self) -> None:
        self.conn.disconnect()
        _redis().connection_pool.release(self.conn)
        self.conn = None


# --- Batch leases -----------------------------------------------------------------------------


def _lease_key(task_id: str) -> str:
    return f"batch:{task_id}:lease"


class BatchLease:
    """At most one run of a batch task works on its rows at a time.

    RabbitMQ redelivers a batch whose worker died or lost its connection, possibly while the
    first run is still sending. The lease (a cache key with a short TTL, renewed while the run
    works) tells the second run to wait, and tells the reaper that rows in ``sending`` are
    still in someone's hands however old their claim is.
    """

    def __init__(self, task_id: str) -> None:
        self.key = _lease_key(task_id)
        self.ttl = settings.OPSDASH_DELIVERY_HEARTBEAT_SECONDS
        self.token = uuid.uuid4().hex
        self.renewed_at = 0.0

    def acquire(self) -> bool:
        if not state_set(self.key, self.token, ttl=self.ttl, only_new=True):
            return False
        self.renewed_at = time.monotonic()
        return True

    def renew(self) -> None:
        if time.monotonic() - self.renewed_at >= self.ttl / 4:
            state_set(self.key, self.token, ttl=self.ttl)
            self.renewed_at = time.monotonic()

    def release(self) -> None:
        if state_get(self.key) == self.token:
            state_delete(self.key)


def batch_lease_held(*, task_id: str) -> bool:
    return state_get(_lease_key(task_id)) is not None
