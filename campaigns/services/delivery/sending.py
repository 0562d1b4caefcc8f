"""The send loop of a batch: many messages in flight at once, one thread that records them.

The batch's thread is the only one that talks to the database and Redis. It picks the next
rows provider by provider, takes their rate tokens, asks the Send's status, renders them and
hands them to the channel, which may have several in flight at once (SMTP: a pool of sessions,
``OPSDASH_DELIVERY_CONNECTIONS``); as results come back it records them, journals the accepted
ones and writes outcomes every few messages. In flight never exceeds the channel's connections
(nor ``OPSDASH_DELIVERY_CONNECTIONS_PER_PROVIDER`` for one named provider), so a kill re-sends
at most that many messages, and a pause stops the hand-overs at once.

A provider whose bucket is empty waits while the others' rows go; a provider that asked us to
slow down (a throttling reply) gets nothing more from this batch: its rows go back.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from campaigns.models import Delivery, Send
from campaigns.services.audiences import message_links
from campaigns.services.channels import Channel, ChannelResult, Composed, Outgoing
from campaigns.services.delivery.lease import BatchLease
from campaigns.services.delivery.outcomes import (
    BatchResult,
    NextStep,
    Pending,
    journal_entry,
    outcome_record,
)
from campaigns.services.delivery.state import ControlProbe
from campaigns.services.guardrails import guard_note
from campaigns.services.mime import WireFrame
from campaigns.services.pacing import Grant, Pacer, Provider, WaitReason, provider_of
from campaigns.services.rendering import CompiledCampaign, message_render, recipient_fields
from campaigns.services.smtp import Outcome

logger = logging.getLogger(__name__)

_NEXT_STEP = {WaitReason.RATE: NextStep.RATE_LIMITED, WaitReason.WARMUP: NextStep.QUOTA_WAIT}

# How long a stopping batch waits for the messages still in flight (beyond the SMTP timeout,
# which bounds each of them): results that do not come leave their rows ``sending``, for the
# task's next run and its journal.
LANDING_GRACE = 5.0


@dataclass
class _Lane:
    """One provider's rows in this batch, in id order, and what it may do now."""

    provider: Provider
    rows: deque[Delivery]
    in_flight: int = 0
    wait: Grant | None = None  # the pacer's last refusal ...
    ready_at: float = 0.0  # ... and when asking again makes sense (time.monotonic)
    closed: bool = False  # throttled: no more of its rows go in this batch


@dataclass
class _Flight:
    lane: _Lane
    sent: list[tuple[Delivery, Composed]]


@dataclass
class Loop:
    """What the send loop needs for one batch, and its rows in flight."""

    lease: BatchLease
    channel: Channel
    control: ControlProbe
    compiled: CompiledCampaign
    frame: WireFrame
    pacer: Pacer
    pending: Pending
    group_size: int
    lanes: list[_Lane] = field(default_factory=list)
    flights: dict[int, _Flight] = field(default_factory=dict)
    tokens: int = 0
    transient_streak: int = 0
    stopping: bool = False
    recorded: int = 0  # results recorded since the last outcome write
    troubled: bool = False  # ... and whether a failure or a deferral is among them
    # Claimed rows to hand back: the channel never got them (refused before sending).
    back: list[Delivery] = field(default_factory=list)

    def lanes_fill(self, rows: list[Delivery]) -> None:
        by_provider: dict[Provider, _Lane] = {}
        for row in rows:
            provider = provider_of(row.recipient.email)
            if (lane := by_provider.get(provider)) is None:
                lane = by_provider[provider] = _Lane(provider, deque())
                self.lanes.append(lane)
            lane.rows.append(row)

    def unsent(self) -> list[Delivery]:
        """Claimed rows never handed over: to go back to the queue."""
        return self.back + [row for lane in self.lanes for row in lane.rows]


def loop_step(loop: Loop, result: BatchResult) -> bool:
    """Hands over what may go now, or waits for a result or a token; False once the batch
    has nothing more to hand over (every row went, or it stops)."""
    loop.lease.renew()
    if loop.stopping:
        return False
    picks = _pick(loop, time.monotonic())
    if picks:
        _dispatch(loop, picks, result)
        return True
    if loop.flights:
        # Accepted messages reach the journal before the wait (they would otherwise ride
        # with the next status question).
        loop.control.push()
        _collect(loop, result, timeout=_until_ready(loop))
        return True
    return _wait_for_tokens(loop, result)


def _per_provider(lane: _Lane) -> int:
    if lane.provider is Provider.OTHER:  # many small domains, each its own provider
        return 1 << 30
    return int(settings.OPSDASH_DELIVERY_CONNECTIONS_PER_PROVIDER)


def _pick(loop: Loop, now: float) -> list[tuple[_Lane, list[Delivery]]]:
    """The groups that may go now: one group per free connection, taken round-robin over the
    providers that have rows, room and tokens (asked here: the pacer never sleeps)."""
    free = loop.channel.connections - len(loop.flights)
    wanted: dict[int, int] = {}
    while free > 0:
        took = False
        for index, lane in enumerate(loop.lanes):
            groups = wanted.get(index, 0)
            if free <= 0 or lane.closed or lane.ready_at > now:
                continue
            if len(lane.rows) <= groups * loop.group_size:
                continue
            if lane.in_flight + groups >= _per_provider(lane):
                continue
            wanted[index], free, took = groups + 1, free - 1, True
        if not took:
            break
    picks: list[tuple[_Lane, list[Delivery]]] = []
    for index, groups in wanted.items():
        lane = loop.lanes[index]
        count = min(len(lane.rows), groups * loop.group_size)
        if (granted := _pace(loop.pacer, lane, count, now)) == 0:
            continue
        for _ in range(0, granted, loop.group_size):
            group = [lane.rows.popleft() for _ in range(min(loop.group_size, len(lane.rows)))]
            picks.append((lane, group))
    return picks


def _pace(pacer: Pacer, lane: _Lane, count: int, now: float) -> int:
    """Takes tokens for ``count`` messages to the lane's provider, or for one when the bucket
    has not that many; 0 (and the lane waits) when it has none.

    One take never asks for more than the smallest fixed bucket holds (this process's share
    of it, as while Redis is out): a bucket lets a larger take through in debt, which would
    send a campaign capped at 30 a minute in bursts of sixteen.
    """
    count = min(count, _burst(pacer, count))
    grant = pacer.take(lane.provider, count)
    if grant.granted:
        return count
    if count > 1 and (grant := pacer.take(lane.provider, 1)).granted:
        return 1
    lane.wait, lane.ready_at = grant, now + max(grant.wait, 0.01)
    return 0


def _burst(pacer: Pacer, default: int) -> int:
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    return min((int(max(1.0, capacity / share)) for capacity in pacer.capacities), default=default)


def _dispatch(loop: Loop, picks: list[tuple[_Lane, list[Delivery]]], result: BatchResult) -> None:
    """Renders the picked groups and hands them over, unless the Send stopped meanwhile.

    The status question goes to Redis first and the groups are rendered while it travels;
    it is asked once per hand-over round (at most one message per free connection).
    """
    loop.control.ask()
    ready: list[tuple[_Lane, list[tuple[Delivery, Composed]]]] = []
    problems: list[tuple[Delivery, ChannelResult]] = []
    for lane, rows in picks:
        composed: list[tuple[Delivery, Composed]] = []
        for row in rows:
            try:
                composed.append((row, _compose(loop=loop, row=row)))
            except Exception as exc:  # one recipient's data must not stop the batch
                logger.exception("Cannot compose delivery %s", row.pk)
                text = f"cannot compose the message: {exc}"
                problems.append((row, ChannelResult(Outcome.PERMANENT, 0, text)))
        if composed:
            ready.append((lane, composed))
    if (state := loop.control.answer()) != Send.Status.RUNNING:
        result.next_step, result.stopped = NextStep.STOPPED, state
        loop.back += [row for _, rows in picks for row in rows]
        loop.stopping = True
        return
    for row, problem in problems:
        outcome_record(row=row, outcome=problem, pending=loop.pending)
        loop.recorded += 1
        loop.troubled = True
    for index, (lane, composed) in enumerate(ready):
        try:
            _hand_over(loop, lane, composed)
        except BaseException:
            # Interrupted while the channel sent on this thread (the task's time limit): the
            # group and those after it go back like rows never handed over. A message the
            # relay took just before goes out again, as any message in flight at a crash may.
            loop.back += [row for _, group in ready[index:] for row, _ in group]
            raise
    _collect(loop, result, timeout=None)


def _hand_over(loop: Loop, lane: _Lane, composed: list[tuple[Delivery, Composed]]) -> None:
    """Gives one group to the channel: sent on another thread (its result comes with a later
    ``collect``), or on this one, when the relay answers fast (its result is ready)."""
    loop.tokens += 1
    loop.channel.submit(loop.tokens, [message for _, message in composed])
    loop.flights[loop.tokens] = _Flight(lane, composed)
    lane.in_flight += 1


def _until_ready(loop: Loop) -> float:
    """How long to wait for a result before a waiting provider's tokens are worth asking
    for again (at most a second: the loop also renews its lease and flushes)."""
    now = time.monotonic()
    waits = [lane.ready_at - now for lane in loop.lanes if lane.rows and not lane.closed]
    soonest = min((wait for wait in waits if wait > 0), default=1.0)
    return max(0.001, min(1.0, soonest))


def _wait_for_tokens(loop: Loop, result: BatchResult) -> bool:
    """Nothing in flight and nothing may go: sleep out the shortest wait when it is short,
    otherwise hand the rest back until the rate limit (or tomorrow's quota) has room."""
    now = time.monotonic()
    waiting = [lane for lane in loop.lanes if lane.rows and not lane.closed]
    if not waiting:
        return False
    lane = min(waiting, key=lambda lane: lane.ready_at)
    wait = max(0.0, lane.ready_at - now)
    grant = lane.wait or Grant(False, wait)
    if grant.reason is WaitReason.RATE and wait <= settings.OPSDASH_RATE_MAX_WAIT_SECONDS:
        loop.control.push()
        time.sleep(wait)
        return True
    result.next_step, result.retry_in = _NEXT_STEP[grant.reason], wait
    result.deferred = "warm-up quota" if grant.reason is WaitReason.WARMUP else "rate limit"
    return False


def _collect(loop: Loop, result: BatchResult, *, timeout: float | None) -> None:
    """Records the groups the channel finished (waiting up to ``timeout`` for one)."""
    done = loop.channel.collect(timeout)
    now = timezone.now() if done else None
    for token, outcomes in done:
        if (flight := loop.flights.pop(token, None)) is not None:
            flight.lane.in_flight -= 1
            _record_group(loop=loop, flight=flight, outcomes=outcomes, result=result, now=now)


def loop_land(loop: Loop, result: BatchResult) -> None:
    """Waits for the messages still in flight and records them (the batch stops)."""
    deadline = time.monotonic() + settings.EMAIL_TIMEOUT * 4 + LANDING_GRACE
    while loop.flights and (left := deadline - time.monotonic()) > 0:
        loop.control.push()
        _collect(loop, result, timeout=min(left, 1.0))
    if loop.flights:
        logger.warning("%d messages in flight did not answer; their rows wait", len(loop.flights))
        loop.flights.clear()


def _record_group(
    *,
    loop: Loop,
    flight: _Flight,
    outcomes: list[ChannelResult],
    result: BatchResult,
    now: datetime | None,
) -> None:
    """Records each message's outcome and journals the accepted ones; a message the channel
    never got (no connection) goes back and the batch stops handing over; a throttled one
    goes back to the queue (no attempt counted) and its provider gets nothing more here."""
    lane = flight.lane
    for (row, _), outcome in zip(flight.sent, outcomes, strict=True):
        loop.pacer.observe(lane.provider, outcome)
        guard_note(send_id=row.send_id, provider=lane.provider, result=outcome)
        if not outcome.attempted:
            result.deferred, loop.stopping = outcome.summary, True
            result.troubled = True
            loop.back.append(row)
            continue
        if outcome.outcome is Outcome.SENT:
            loop.control.note(row.pk, journal_entry(outcome))
        elif outcome.throttled:
            lane.closed = True
            result.throttled = True
        outcome_record(row=row, outcome=outcome, pending=loop.pending, now=now)
        loop.recorded += 1
        if outcome.outcome is Outcome.SENT:
            loop.transient_streak = 0
            continue
        loop.troubled = True
        transient = outcome.outcome is Outcome.TRANSIENT and not outcome.throttled
        loop.transient_streak = loop.transient_streak + 1 if transient else 0
        if transient:
            result.troubled = True
        if loop.transient_streak >= settings.OPSDASH_DELIVERY_TRANSIENT_STREAK:
            result.deferred = "the server keeps answering with temporary errors"
            loop.stopping = True


def _compose(*, loop: Loop, row: Delivery) -> Composed:
    recipient = row.recipient
    links = message_links(recipient_id=row.recipient_id, send_id=row.send_id)
    fields = recipient_fields(recipient)
    rendered = message_render(
        loop.compiled,
        recipient=fields,
        unsubscribe_url=links.unsubscribe_url,
        web_version_url=links.web_version_url,
    )
    outgoing = Outgoing(
        delivery_id=row.pk,
        frame=loop.frame,
        rendered=rendered,
        to_email=recipient.email,
        to_name=recipient.full_name,
        message_id=row.message_id,
        unsubscribe_url=links.unsubscribe_url,
    )
    return loop.channel.compose(outgoing)
