"""Small values every worker reads on every message: a send's status and its in-flight journal.

Straight to Redis when configured: Django's RedisCache builds a client object per call, which
costs more than the rest of the per-message bookkeeping. Otherwise the Django cache (local
memory in the embedded profile, whose single worker process shares it between its threads).

Redis is a helper here, never a dependency: every use survives it being down. The client gives
up within about a second, and once a call fails the process stops asking for a few seconds
(``redis_up``), so a send goes on at database speed instead of waiting on every message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from campaigns.models import Send
from campaigns.services.redisclient import redis_client, redis_failed, redis_up


def _redis() -> redis.Redis:
    return redis_client()


def state_key(key: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:delivery:{key}"


def state_get(key: str) -> str | None:
    if settings.REDIS_URL:
        value = _redis().get(state_key(key))
        return None if value is None else str(value)
    cached = cache.get(key)
    return None if cached is None else str(cached)


def state_set(key: str, value: str, *, ttl: int, only_new: bool = False) -> bool:
    """Sets ``key``; with ``only_new``, only if it does not exist (returns whether it was set)."""
    if settings.REDIS_URL:
        return bool(_redis().set(state_key(key), value, ex=ttl, nx=only_new))
    if only_new:
        return bool(cache.add(key, value, timeout=ttl))
    cache.set(key, value, timeout=ttl)
    return True


def state_delete(key: str) -> None:
    if settings.REDIS_URL:
        _redis().delete(state_key(key))
    else:
        cache.delete(key)


# --- A send's status, as the delivery loops see it --------------------------------------------

# Short on purpose: a transition whose write to Redis failed (a blip) is corrected from the
# database within this many seconds, because a miss reads the Send's row.
CONTROL_TTL = 10


def _control_key(send_id: int) -> str:
    return f"send:{send_id}:status"


def control_set(send_id: int, status: str) -> None:
    try:
        state_set(_control_key(send_id), status, ttl=CONTROL_TTL)
    except redis.RedisError as exc:
        # The loops fall back to the database while Redis is down; a value it kept from
        # before the outage is corrected by the next transition or expires.
        redis_failed(exc)


def control_publish(send_id: int, status: str) -> None:
    """Tells every delivery loop about a transition, once it is committed."""
    transaction.on_commit(lambda: control_set(send_id, status), robust=True)


def send_control_state(*, send_id: int) -> str:
    """The Send's status as the delivery loop sees it, checked before every message.

    With Redis the status is read from the shared store (written after every transition
    commits); without it, or while it does not answer, from the database. A miss is filled
    with "set if absent", so it can never overwrite a transition.
    """
    use_redis = bool(settings.REDIS_URL) and redis_up()
    if use_redis:
        try:
            value = state_get(_control_key(send_id))
        except redis.RedisError as exc:
            redis_failed(exc)
            use_redis, value = False, None
        if value is not None:
            return value
    found = Send.objects.filter(pk=send_id).values_list("status", flat=True).first()
    status = str(found or Send.Status.CANCELLED)
    if use_redis:
        try:
            state_set(_control_key(send_id), status, ttl=CONTROL_TTL, only_new=True)
        except redis.RedisError as exc:
            redis_failed(exc)
    return status


# --- The in-flight journal --------------------------------------------------------------------

JOURNAL_TTL = 86_400
# A running batch refreshes its heartbeat every ALIVE_EVERY seconds, kept ALIVE_TTL seconds.
ALIVE_EVERY = 5.0
ALIVE_TTL = 30


def journal_key(task_id: str) -> str:
    return state_key(f"journal:{task_id}")


class ControlProbe:
    """Reads a Send's status once per message on a connection of its own, and journals sends.

    ``ask`` sends the GET without waiting, ``answer`` reads the reply (or falls back to
    ``send_control_state`` without Redis or after any Redis error). ``note`` keeps a message
    SMTP accepted for the batch's journal: the messages noted since the last write go out as
    one HSET in the same write as the next GET, and its reply is read with the GET's, so the
    journal costs no round trip of its own and one command per round, not per message.
    """

    def __init__(self, send_id: int, task_id: str = "") -> None:
        self.send_id = send_id
        self.key = state_key(_control_key(send_id))
        self.journal = journal_key(task_id) if task_id else ""
        self.conn: Any = None
        self.asked = False
        self.notes: list[tuple[str, ...]] = []  # writes to send with the next GET
        self.entries: list[str] = []  # journal fields and values for the next write's HSET
        self.unread = 0  # replies of journal writes not read yet
        self.journal_expiring = False
        self.alive = state_key(f"batch:{task_id}:alive") if task_id else ""
        self.alive_at = 0.0
        # True once a Redis call of this probe failed: the batch reports the outage.
        self.failed = False

    def __enter__(self) -> ControlProbe:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is None:
            return
        try:
            self._send([])
            self._drain()
        except redis.RedisError as exc:
            self._drop(exc)
            return
        _redis().connection_pool.release(self.conn)
        self.conn = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def _connect(self) -> None:
        if not settings.REDIS_URL or not redis_up():
            return
        try:
            self.conn = _redis().connection_pool.get_connection()
        except redis.RedisError as exc:
            self._fail(exc)

    def ask(self) -> None:
        if self.conn is None:
            if not settings.REDIS_URL or not redis_up():
                return
            self._connect()  # Redis is worth another try: back from the database fallback
            if self.conn is None:
                return
        if self.alive and time.monotonic() - self.alive_at >= ALIVE_EVERY:
            # A heartbeat beside the advisory lock, which a database restart drops while this
            # run goes on: the reaper takes a batch for dead only when both are gone.
            self.notes.append(("SET", self.alive, "1", "EX", str(ALIVE_TTL)))
            self.alive_at = time.monotonic()
        try:
            self._send([("GET", self.key)])
            self.asked = True
        except redis.RedisError as exc:
            self._drop(exc)

    def answer(self) -> str:
        value = None
        if self.conn is not None and self.asked:
            self.asked = False
            try:
                self._drain()
                value = self.conn.read_response()
            except redis.RedisError as exc:
                self._drop(exc)
        return str(value) if value is not None else send_control_state(send_id=self.send_id)

    def note(self, delivery_id: int, reply: str) -> None:
        """Journals a message SMTP accepted (nothing while Redis is down)."""
        if self.conn is None or not self.journal:
            return
        self.entries += (str(delivery_id), reply)

    def push(self) -> None:
        """Sends the journal notes not sent yet (before an outcome write, which may stall)."""
        if self.conn is None or not (self.notes or self.entries):
            return
        try:
            self._send([])
        except redis.RedisError as exc:
            self._drop(exc)

    def _send(self, commands: list[tuple[str, ...]]) -> None:
        """One write for the journal notes and ``commands``; no health-check PING (it would
        read a reply meant for us), the GET every message keeps the connection checked."""
        if self.entries:
            self.notes.append(("HSET", self.journal, *self.entries))
            self.entries = []
            if not self.journal_expiring:
                self.notes.append(("EXPIRE", self.journal, str(JOURNAL_TTL)))
                self.journal_expiring = True
        batch, self.notes = [*self.notes, *commands], []
        if batch:
            self.unread += len(batch) - len(commands)
            self.conn.send_packed_command(self.conn.pack_commands(batch), check_health=False)

    def _drain(self) -> None:
        while self.unread:
            self.unread -= 1
            self.conn.read_response()

    def _drop(self, exc: Exception) -> None:
        self._fail(exc)
        self.conn.disconnect()
        _redis().connection_pool.release(self.conn)
        self.conn = None
        self.unread, self.asked, self.notes, self.entries = 0, False, [], []

    def _fail(self, exc: Exception) -> None:
        self.failed = True
        redis_failed(exc)


def journal_read(*, task_id: str) -> dict[int, str] | None:
    """Delivery id -> SMTP reply of the messages a run of ``task_id`` sent; {} without Redis,
    None when Redis is configured but cannot be read (the journal may hold messages)."""
    if not settings.REDIS_URL:
        return {}
    if not redis_up():
        return None
    try:
        entries = _redis().hgetall(journal_key(task_id))
    except redis.RedisError as exc:
        redis_failed(exc)
        return None
    return {int(pk): str(reply) for pk, reply in dict(entries).items()}


def batches_alive(*, task_ids: Iterable[str]) -> set[str] | None:
    """The batches whose run beat within ALIVE_TTL; None when Redis cannot be read."""
    ordered = list(task_ids)
    if not settings.REDIS_URL or not ordered:
        return set()
    if not redis_up():
        return None
    try:
        beats = _redis().mget([state_key(f"batch:{task_id}:alive") for task_id in ordered])
    except redis.RedisError as exc:
        redis_failed(exc)
        return None
    return {task_id for task_id, beat in zip(ordered, beats, strict=True) if beat is not None}


def journal_drop(*, task_id: str) -> None:
    """Forgets a batch's journal once every outcome in it is written."""
    if not settings.REDIS_URL or not redis_up():
        return
    try:
        _redis().delete(journal_key(task_id))
    except redis.RedisError as exc:
        redis_failed(exc)
