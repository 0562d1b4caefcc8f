"""The SMTP relay as a channel: many sessions at once, VERP envelope senders, DKIM-signed bytes.

A relay answers each message after a round trip (often 50 to 300 ms), so one session at a time
would let the relay's latency set the speed. Each worker process keeps a pool of sessions
(``OPSDASH_DELIVERY_CONNECTIONS``), each on a thread of its own that only talks SMTP: the
batch loop hands it composed messages and reads the results back, and stays the only thread
that touches the database and Redis. The sessions outlive a batch (the next one reuses them),
close after ``OPSDASH_DELIVERY_IDLE_SECONDS`` without a message and when the worker stops, and
reopen after the server dropped them.

A relay on the same host or next to it answers a message faster than a hand-over to another
thread costs (a thread wake-up and a GIL switch each way). While the relay's answers come
within ``OPSDASH_DELIVERY_INLINE_BELOW_MS``, the batch's thread sends on a session of its own,
one message at a time, and the pool's threads stay asleep; a relay that answers slower gets
the pool, and is timed again every few seconds in case it became fast.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_shutdown
from django.conf import settings

from campaigns.services.channels.base import Channel, ChannelResult, Composed, Outgoing
from campaigns.services.dkim import dkim_sign
from campaigns.services.mime import wire_message
from campaigns.services.smtp import Outcome, SmtpSession
from campaigns.services.verp import verp_envelope_from

logger = logging.getLogger(__name__)

Done = tuple[int, list[ChannelResult]]

# A relay answering slower than the inline limit is timed again, on the batch's own session,
# this often: it may have become fast (a restarted relay, a route that changed).
PROBE_SECONDS = 5.0
# How many recent timings decide: the fastest of them, so one slow answer (a pause in the
# relay or in this process) does not hand a fast relay to the threads.
_TIMINGS = 8


@dataclass(frozen=True)
class _Job:
    token: int
    batch: list[Composed]
    reply: queue.SimpleQueue[Done]


class SmtpPool:
    """One worker process's SMTP sessions, one thread each, shared by its batches in turn.

    Threads start as messages need them, up to ``size``; a thread closes its session after
    ``idle`` seconds without a message (and opens it again with the next one).
    """

    def __init__(
        self, *, size: int, idle: float, server: tuple[object, ...], inline_below: float = 0.0
    ) -> None:
        self.size, self.idle, self.server = size, idle, server
        self.pid = os.getpid()
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.sessions: list[SmtpSession] = []
        self.lock = threading.Lock()
        self.busy = 0  # jobs handed over and not finished
        self.busy_peak = 0  # the most at once (tests and benchmarks read it)
        # One connection is one message at a time whichever thread sends it: the batch's own.
        below = math.inf if size == 1 and inline_below > 0 else inline_below
        self.inline = _InlineSession(below=below, idle=idle)
        self.sessions.append(self.inline.session)

    def submit(self, token: int, batch: list[Composed], reply: queue.SimpleQueue[Done]) -> None:
        if (results := self.inline.send(batch)) is not None:
            reply.put((token, results))
            return
        with self.lock:
            self.busy += 1
            self.busy_peak = max(self.busy_peak, self.busy)
            # The inline session, when open, is one of the ``size`` connections.
            room = self.size - (1 if self.inline.session.connected else 0)
            if self.busy > len(self.threads) and len(self.threads) < max(1, room):
                self._grow()
        self.jobs.put(_Job(token, batch, reply))

    def _grow(self) -> None:
        session = SmtpSession()
        thread = threading.Thread(
            target=self._serve,
            args=(session,),
            name=f"smtp-session-{len(self.threads) + 1}",
            daemon=True,  # a worker that exits never waits on a session
        )
        self.sessions.append(session)
        self.threads.append(thread)
        thread.start()

    def _serve(self, session: SmtpSession) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.idle if session.connected else None)
            except queue.Empty:
                session.close()  # the relay keeps no idle session of ours open for long
                continue
            if job is None:
                session.close()
                return
            job.reply.put((job.token, _send_all(session, job.batch)))
            with self.lock:
                self.busy -= 1

    @property
    def connections_opened(self) -> int:
        return sum(session.opened for session in self.sessions)

    def close(self, *, wait: float = 5.0) -> None:
        """Closes every session once the messages handed over are sent (at most ``wait`` s)."""
        self.inline.close()
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(wait)


class _InlineSession:
    """The session the batch's own thread sends on while the relay answers fast.

    Each message sent on an open session is timed; the fastest of the last few timings is
    the relay's speed. A relay slower than ``below`` seconds a message gets the pool's
    threads (``send`` returns None), except one message every PROBE_SECONDS, timed again.
    A small janitor thread closes the session after ``idle`` seconds without a message.
    """

    def __init__(self, *, below: float, idle: float) -> None:
        self.below, self.idle = below, idle
        self.session = SmtpSession()
        self.lock = threading.Lock()  # a test message and a batch may share a process
        self.timings: deque[float] = deque(maxlen=_TIMINGS)
        self.probe_at = 0.0
        self.used_at = 0.0
        self.janitor: threading.Thread | None = None
        self.closed = False

    def fast(self, now: float) -> bool:
        if self.below <= 0:
            return False
        if not self.timings or min(self.timings) < self.below:
            return True
        if now >= self.probe_at:
            self.probe_at = now + PROBE_SECONDS
            return True
        return False

    def send(self, batch: list[Composed]) -> list[ChannelResult] | None:
        """The batch's results, or None: the relay is slow, or the session is in use."""
        if not self.fast(time.monotonic()) or not self.lock.acquire(blocking=False):
            return None
        try:
            results = [self._timed(composed) for composed in batch]
            self.used_at = time.monotonic()
        except BaseException:
            # Interrupted mid-transaction (the task's time limit lands on this thread): the
            # session's state is unknown. The caller hands the message back.
            self.session.drop()
            raise
        finally:
            self.lock.release()
        self._janitor_start()
        return results

    def _timed(self, composed: Composed) -> ChannelResult:
        kept = self.session.connected  # a new session's connect and greeting are not timed
        started = time.monotonic()
        result = _send_one(self.session, composed)  # on this thread, an error is the batch's
        if kept and result.attempted:
            self.timings.append(time.monotonic() - started)
        return result

    def _janitor_start(self) -> None:
        if self.janitor is None and self.idle > 0:
            self.janitor = threading.Thread(
                target=self._close_when_idle, name="smtp-inline-janitor", daemon=True
            )
            self.janitor.start()

    def _close_when_idle(self) -> None:
        while not self.closed:
            time.sleep(min(self.idle, 1.0))
            idle = time.monotonic() - self.used_at >= self.idle
            if idle and self.session.connected and self.lock.acquire(blocking=False):
                try:
                    self.session.close()  # the relay keeps no idle session of ours open
                finally:
                    self.lock.release()

    def close(self) -> None:
        self.closed = True
        with self.lock:
            self.session.close()


def _send_all(session: SmtpSession, batch: list[Composed]) -> list[ChannelResult]:
    results: list[ChannelResult] = []
    for composed in batch:
        try:
            results.append(_send_one(session, composed))
        except Exception as exc:  # a bug must not leave the batch waiting for this result
            logger.exception("Sending delivery %s failed", composed.outgoing.delivery_id)
            results.append(ChannelResult(Outcome.TRANSIENT, 0, f"{type(exc).__name__}: {exc}"))
    return results


def _send_one(session: SmtpSession, composed: Composed) -> ChannelResult:
    message = composed.outgoing
    assert isinstance(composed.payload, bytes)
    # A bounce comes back to an address naming the delivery (VERP) when a bounce domain is
    # configured; otherwise to the campaign's From address.
    verp = verp_envelope_from(delivery_id=message.delivery_id) if message.delivery_id else None
    sender = verp or message.frame.envelope_from
    result = session.send(from_addr=sender, to_addr=message.to_email, data=composed.payload)
    return ChannelResult.of_smtp(result)


_pool: SmtpPool | None = None
_pool_lock = threading.Lock()


def _server() -> tuple[object, ...]:
    return (
        settings.EMAIL_HOST,
        settings.EMAIL_PORT,
        settings.EMAIL_USE_SSL,
        settings.EMAIL_USE_TLS,
        settings.EMAIL_HOST_USER,
        settings.OPSDASH_DELIVERY_CONNECTIONS,
        settings.OPSDASH_DELIVERY_IDLE_SECONDS,
        settings.OPSDASH_DELIVERY_INLINE_BELOW_MS,
    )


def smtp_pool() -> SmtpPool:
    """This process's pool; a new one after a fork (threads do not cross it) or when the
    relay's or the pool's settings changed (the sessions are the old relay's)."""
    global _pool
    server = _server()
    with _pool_lock:
        pool = _pool
        if pool is not None and pool.pid == os.getpid() and pool.server == server:
            return pool
        if pool is not None and pool.pid == os.getpid():
            pool.close(wait=0)
        _pool = SmtpPool(
            size=settings.OPSDASH_DELIVERY_CONNECTIONS,
            idle=settings.OPSDASH_DELIVERY_IDLE_SECONDS,
            server=server,
            inline_below=settings.OPSDASH_DELIVERY_INLINE_BELOW_MS / 1000,
        )
        return _pool


def smtp_pool_close() -> None:
    """Closes this process's sessions (at worker shutdown; the next message opens new ones)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


def _on_shutdown(*args: Any, **kwargs: Any) -> None:
    smtp_pool_close()


worker_process_shutdown.connect(_on_shutdown, weak=False)
atexit.register(smtp_pool_close)


class SmtpChannel(Channel):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reply: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self.pool: SmtpPool | None = None
        self.token = 0

    @property
    def connections(self) -> int:
        return int(settings.OPSDASH_DELIVERY_CONNECTIONS)

    def open(self) -> None:
        """The pool's sessions open with the first messages (and reopen after a drop)."""
        self.pool = smtp_pool()

    def close(self) -> None:
        """The sessions stay open for the worker's next batch (closed when idle)."""

    def compose(self, message: Outgoing) -> Composed:
        data = wire_message(
            message.frame,
            message.rendered,
            to_email=message.to_email,
            to_name=message.to_name,
            message_id=message.message_id,
            unsubscribe_url=message.unsubscribe_url,
        )
        return Composed(message, dkim_sign(data))

    def submit(self, token: int, batch: list[Composed]) -> None:
        if self.pool is None:
            self.open()
        assert self.pool is not None
        self.pool.submit(token, batch, self.reply)

    def collect(self, timeout: float | None) -> list[Done]:
        done: list[Done] = []
        try:
            done.append(self.reply.get(timeout=timeout) if timeout else self.reply.get_nowait())
            while True:
                done.append(self.reply.get_nowait())
        except queue.Empty:
            return done

    def send(self, batch: list[Composed]) -> list[ChannelResult]:
        """Sends and waits (a test message): the same sessions as the batches."""
        self.token -= 1  # negative tokens never meet the batch loop's
        token = self.token
        self.submit(token, batch)
        # Every SMTP step has EMAIL_TIMEOUT: a result comes well within this.
        while done := self.collect(timeout=settings.EMAIL_TIMEOUT * 4 + 5):
            for got, results in done:
                if got == token:
                    return results
        lost = ChannelResult(Outcome.TRANSIENT, 0, "no answer from the SMTP session")
        return [lost for _ in batch]
