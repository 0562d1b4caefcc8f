"""Guardrails: a send pauses itself before its bounces or complaints hurt the sending domain.

Three guardrails watch a running send (thresholds in settings, OPSDASH_GUARDRAIL_*):

- hard bounces: rows refused because the mailbox does not exist, plus hard bounces reported
  afterwards, over the messages sent (accepted plus those refusals);
- complaints: complaints reported, over the same messages;
- deferrals: of one mailbox provider's attempts in a recent window, the share it deferred
  ("slow down", SMTP 421 or 4.7.x; an ESP's HTTP 429 limits its API, not the provider). The
  batch loop tells ``guard_note`` each answer; notes are kept in memory and written to Redis
  (a hash per send and minute) with the next ``send_guard``.

The rates count only once the send has OPSDASH_GUARDRAIL_MIN_MESSAGES messages (deferrals: the
provider has OPSDASH_GUARDRAIL_DEFERRAL_MIN_ATTEMPTS attempts in the window), and a rate pauses
the send when it is above its threshold, not at it. The pause goes through the Send state
machine as the system, so every worker stops before its next message.

After an approver resumes the send, its figures at that moment are kept as the accepted
baseline (``guardrail_state["accepted"]``), and the rates are measured on what came after it,
with the same minimum: the bad stretch the approver accepted does not pause the send again,
and a send that keeps bouncing at the same rate pauses again once it has sent enough new
messages to tell. The deferral window restarts at the resume too.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import Guardrail, Send
from campaigns.selectors.guardrails import Figures, hard_failures_of
from campaigns.services.channels import ChannelResult
from campaigns.services.pacing import Provider
from campaigns.services.redisclient import redis_client, redis_failed, redis_up

logger = logging.getLogger(__name__)

# Notes older than this are written by ``guard_note`` itself, for a batch whose messages all
# came back deferred (no outcome write, so no ``send_guard`` from the loop).
NOTE_FLUSH_SECONDS = 5.0
BUCKET_SECONDS = 60


@dataclass(frozen=True)
class Trip:
    """A guardrail passed: what it measured, out of what, against which threshold."""

    guardrail: Guardrail
    count: int
    base: int
    threshold: float
    provider: str = ""  # deferrals: Provider value
    since_resume: bool = False

    @property
    def percent(self) -> float:
        return 100.0 * self.count / self.base if self.base else 0.0

    @property
    def reason(self) -> str:
        """The sentence staff read on the send, the dashboard and the email."""
        tail = " since the last resume" if self.since_resume else ""
        if self.guardrail == Guardrail.DEFERRALS:
            name = Provider(self.provider).label if self.provider in Provider.values else "?"
            minutes = settings.OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS // 60
            return (
                f"{name} deferred {self.percent:.1f} % of {self.base} attempts in the last "
                f"{minutes} minutes{tail}, above the {self.threshold:g} % guardrail"
            )
        what = "Hard-bounce rate" if self.guardrail == Guardrail.HARD_BOUNCES else "Complaint rate"
        return (
            f"{what} {self.percent:.2f} % ({self.count} of {self.base} messages){tail}, "
            f"above the {self.threshold:g} % guardrail"
        )

    def as_dict(self) -> dict[str, Any]:
        provider_label = Provider(self.provider).label if self.provider in Provider.values else ""
        return {
            "guardrail": str(self.guardrail),
            "count": self.count,
            "base": self.base,
            "percent": round(self.percent, 4),
            "threshold": self.threshold,
            "provider": self.provider,
            "provider_label": str(provider_label),
            "since_resume": self.since_resume,
            "at": timezone.now().isoformat(),
        }


def above(count: int, base: int, threshold: float) -> bool:
    """Whether count/base is above ``threshold`` percent, exactly (no float rounding at the
    edge: 10 of 200 is 5 %, not above it)."""
    return base > 0 and Fraction(count * 100, base) > Fraction(str(threshold))


# --- The check ---------------------------------------------------------------------------------


def send_guard(*, send_id: int) -> Guardrail | None:
    """Checks the send's rates against the guardrails; pauses it when one is passed.

    Called after each write of a batch's outcomes and after each applied chunk of events.
    Returns the guardrail that paused the send, or None.

    1. Write this process's deferral notes (all sends) and read this send's deferral window,
       in one Redis round trip, when this process noted anything for it.
    2. Read the send's status, counters and state (one query); stop unless it is running.
    3. Rule the rate guardrails out from the counters where possible; count the hard
       failures only when they could decide.
    4. Pause through the state machine with the first guardrail passed.
    """
    if not settings.OPSDASH_GUARDRAIL_ENABLED:
        _NOTES.take()
        return None
    try:
        return _guard(send_id)
    except DatabaseError as exc:
        # The batch's own outcome writes wait out a lost database; the check comes again with
        # the next write, and a guardrail check must never stop delivery by itself.
        logger.warning("Guardrail check of send %s skipped: %s", send_id, exc)
        return None


def _guard(send_id: int) -> Guardrail | None:
    window = _notes_write(send_id)
    row = (
        Send.objects.filter(pk=send_id)
        .values_list(
            "status",
            "sent_count",
            "failed_count",
            "bounced_count",
            "complained_count",
            "guardrail_state",
        )
        .first()
    )
    if row is None or row[0] != Send.Status.RUNNING:
        return None
    _, sent, failed, bounced, complained, state = row
    state = state if isinstance(state, dict) else {}
    counters = _Counters(sent, failed, bounced, complained)
    trip = _rates_trip(send_id, counters, state) or _deferrals_trip(window, state)
    if trip is None:
        return None
    return trip.guardrail if _pause(send_id, trip, state) else None


@dataclass(frozen=True)
class _Counters:
    sent: int
    failed: int  # every failure at send time: the no-such-mailbox ones are among them
    bounced: int
    complained: int


def _rates_trip(send_id: int, c: _Counters, state: dict[str, Any]) -> Trip | None:
    base = Figures.of(state.get("accepted"))
    since_resume = bool(state.get("accepted"))
    minimum = settings.OPSDASH_GUARDRAIL_MIN_MESSAGES
    hard_limit = settings.OPSDASH_GUARDRAIL_HARD_BOUNCE_PERCENT
    complaint_limit = settings.OPSDASH_GUARDRAIL_COMPLAINT_PERCENT
    # Bounds from the counters alone: at most every failure was a missing mailbox, at least
    # the ones counted at the baseline were. A rate that cannot pass needs no row count.
    upper_sent = c.sent + c.failed - base.sent
    if upper_sent < minimum:
        return None
    hard_upper = c.failed + c.bounced - base.hard_bounces
    lower_sent = c.sent + base.hard_failures - base.sent
    if not above(hard_upper, upper_sent, hard_limit) and not above(
        c.complained - base.complained, lower_sent, complaint_limit
    ):
        return None
    hard = hard_failures_of(send_id=send_id)
    now = Figures(c.sent + hard, hard, c.bounced, c.complained).minus(base)
    if now.sent < minimum:
        return None
    if above(now.hard_bounces, now.sent, hard_limit):
        return Trip(
            Guardrail.HARD_BOUNCES, now.hard_bounces, now.sent, hard_limit, "", since_resume
        )
    if above(now.complained, now.sent, complaint_limit):
        return Trip(
            Guardrail.COMPLAINTS, now.complained, now.sent, complaint_limit, "", since_resume
        )
    return None


def _deferrals_trip(window: _Window | None, state: dict[str, Any]) -> Trip | None:
    if window is None:
        return None
    accepted_at = _accepted_minute(state)
    limit = settings.OPSDASH_GUARDRAIL_DEFERRAL_PERCENT
    for provider, (attempts, deferred) in sorted(window.totals(after=accepted_at).items()):
        if attempts >= settings.OPSDASH_GUARDRAIL_DEFERRAL_MIN_ATTEMPTS and above(
            deferred, attempts, limit
        ):
            return Trip(
                Guardrail.DEFERRALS, deferred, attempts, limit, provider, accepted_at is not None
            )
    return None


def _accepted_minute(state: dict[str, Any]) -> int | None:
    accepted = state.get("accepted") or {}
    at = parse_datetime(str(accepted.get("at", ""))) if accepted else None
    return int(at.timestamp()) // BUCKET_SECONDS if isinstance(at, datetime) else None


def _pause(send_id: int, trip: Trip, state: dict[str, Any]) -> bool:
    # Imported here: the delivery package imports the batch loop, which imports this module.
    from campaigns.services.delivery.control import send_guardrail_pause

    entry = trip.as_dict()
    new_state = {**state, "trip": entry, "trips": [*state.get("trips", []), entry][-20:]}
    moved = send_guardrail_pause(
        send_id=send_id, guardrail=trip.guardrail, reason=trip.reason, state=new_state
    )
    if moved:
        logger.warning("Send %s paused by a guardrail: %s", send_id, trip.reason)
    return moved


# --- Deferral notes ----------------------------------------------------------------------------


class _Notes:
    """Answers per send and provider not yet written: {send: {provider: [attempts, deferred]}}."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_send: dict[int, dict[str, list[int]]] = {}
        self.since = 0.0  # monotonic time of the oldest note held

    def add(self, send_id: int, provider: str, deferred: bool) -> bool:
        """Adds one; returns whether the notes held are old enough to write now."""
        with self.lock:
            if not self.by_send:
                self.since = time.monotonic()
            counts = self.by_send.setdefault(send_id, {}).setdefault(provider, [0, 0])
            counts[0] += 1
            counts[1] += int(deferred)
            return time.monotonic() - self.since >= NOTE_FLUSH_SECONDS

    def take(self) -> dict[int, dict[str, list[int]]]:
        with self.lock:
            taken, self.by_send = self.by_send, {}
            return taken


_NOTES = _Notes()


def guard_note(*, send_id: int, provider: str, result: ChannelResult) -> None:
    """Notes one channel answer for a message to ``provider`` (called by the batch loop for
    every message handed over). A deferral that asks to slow down (SMTP 421, 4.7.x) counts as
    a deferred attempt. A message the server never saw is no attempt of the provider's: no
    connection, or an ESP refusing the API call (HTTP 429 is the ESP's own rate limit, not
    the mailbox provider deferring)."""
    if not settings.OPSDASH_GUARDRAIL_ENABLED or not result.attempted:
        return
    if _NOTES.add(send_id, str(provider), result.throttled):
        send_guard(send_id=send_id)


@dataclass(frozen=True)
class _Window:
    """One send's deferral counts per minute bucket: {bucket: {provider: (attempts, deferred)}}."""

    buckets: dict[int, dict[str, tuple[int, int]]]

    def totals(self, *, after: int | None) -> dict[str, tuple[int, int]]:
        sums: dict[str, tuple[int, int]] = {}
        for bucket, providers in self.buckets.items():
            if after is not None and bucket < after:
                continue
            for provider, (attempts, deferred) in providers.items():
                a, d = sums.get(provider, (0, 0))
                sums[provider] = (a + attempts, d + deferred)
        return sums


def _window_key(send_id: int, bucket: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:guardrail:{send_id}:{bucket}"


def _buckets_now() -> list[int]:
    now = int(time.time()) // BUCKET_SECONDS
    count = -(-settings.OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS // BUCKET_SECONDS)
    return [now - i for i in range(count)]


# Without Redis (the embedded profile: one worker process) the window lives in this process.
_LOCAL: dict[str, dict[str, int]] = {}


def _notes_write(send_id: int) -> _Window | None:
    """Writes every note held to the current minute's hashes; returns the window of
    ``send_id`` when this process noted anything for it (else None: nothing new to judge)."""
    notes = _NOTES.take()
    if not notes:
        return None
    bucket = int(time.time()) // BUCKET_SECONDS
    ttl = settings.OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS + 2 * BUCKET_SECONDS
    wanted = send_id in notes
    if not settings.REDIS_URL:
        return _local_write(notes, bucket, send_id if wanted else None)
    if not redis_up():
        return None  # the notes are lost: a deferral guardrail is a help, not a promise
    try:
        return _redis_write(notes, bucket, ttl, send_id if wanted else None)
    except redis.RedisError as exc:
        redis_failed(exc)
        return None


def _fields(providers: dict[str, list[int]]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for provider, (attempts, deferred) in providers.items():
        fields[f"{provider}:a"] = attempts
        fields[f"{provider}:d"] = deferred
    return fields


def _redis_write(
    notes: dict[int, dict[str, list[int]]], bucket: int, ttl: int, send_id: int | None
) -> _Window | None:
    pipe = redis_client().pipeline(transaction=False)
    for noted_send, providers in notes.items():
        key = _window_key(noted_send, bucket)
        for field, n in _fields(providers).items():
            if n:
                pipe.hincrby(key, field, n)
        pipe.expire(key, ttl)
    buckets = _buckets_now() if send_id is not None else []
    for each in buckets:
        pipe.hgetall(_window_key(send_id or 0, each))
    replies = pipe.execute()
    if send_id is None:
        return None
    return _window_of(dict(zip(buckets, replies[-len(buckets) :], strict=True)))


def _local_write(
    notes: dict[int, dict[str, list[int]]], bucket: int, send_id: int | None
) -> _Window | None:
    for noted_send, providers in notes.items():
        held = _LOCAL.setdefault(_window_key(noted_send, bucket), {})
        for field, n in _fields(providers).items():
            held[field] = held.get(field, 0) + n
    if send_id is None:
        return None
    return _window_of({b: dict(_LOCAL.get(_window_key(send_id, b), {})) for b in _buckets_now()})


def _window_of(raw: dict[int, dict[str, Any]]) -> _Window:
    buckets: dict[int, dict[str, tuple[int, int]]] = {}
    for bucket, fields in raw.items():
        providers: dict[str, tuple[int, int]] = {}
        for field, value in fields.items():
            provider, _, kind = str(field).rpartition(":")
            attempts, deferred = providers.get(provider, (0, 0))
            if kind == "a":
                attempts += int(value)
            else:
                deferred += int(value)
            providers[provider] = (attempts, deferred)
        buckets[bucket] = providers
    return _Window(buckets)


def guard_window_clear(*, send_id: int) -> None:
    """Forgets a send's deferral window (an approver resumed it: the window starts again)."""
    keys = [_window_key(send_id, bucket) for bucket in _buckets_now()]
    if not settings.REDIS_URL:
        for key in keys:
            _LOCAL.pop(key, None)
        return
    try:
        redis_client().delete(*keys)
    except redis.RedisError as exc:
        # The resume's baseline time still keeps the old buckets out of the window.
        redis_failed(exc)
