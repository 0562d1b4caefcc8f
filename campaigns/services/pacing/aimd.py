"""Each provider's adaptive rate per channel (AIMD), shared by every worker through Redis.

A deferral that says "slow down" multiplies the provider's rate by OPSDASH_PACING_DECREASE
(once per OPSDASH_PACING_CUT_SECONDS: a burst of deferrals is one congestion, not ten); each
message accepted adds OPSDASH_PACING_INCREASE / rate, so a second of sending at the current
rate without a deferral raises it by OPSDASH_PACING_INCREASE, up to the ceiling. The rate
never goes below the floor: the provider's own deferrals keep the send from going faster, and
a throttled row is queued again, never failed.

State per (channel, provider): ``<prefix>:pacing:<channel>:<provider>`` (rate, cut_at) and a
count of accepted and deferred messages per minute (``...:w:<minute>``) for the dashboard.
Without Redis (the embedded profile, or while it is down) the state is this process's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings

from campaigns.services.pacing.providers import Provider
from campaigns.services.redisclient import redis_client, redis_failed, redis_up

WINDOW_TTL = 1_200  # per-minute counters are kept 20 minutes
STATE_TTL = 7 * 86_400  # a learned rate is forgotten after a week without sending


@dataclass(frozen=True)
class ProviderLimits:
    """A provider's pacing settings (messages per second; caps per hour and day, 0: none)."""

    floor: float
    start: float
    ceiling: float
    per_hour: int = 0
    per_day: int = 0

    @property
    def adaptive(self) -> bool:
        return self.ceiling > 0


def provider_limits(provider: Provider) -> ProviderLimits:
    return ProviderLimits(*settings.OPSDASH_PACING.get(provider.value, (0.0, 0.0, 0.0, 0, 0)))


def aimd_step(rate: float, *, ok: int, deferred: int, limits: ProviderLimits, cut: bool) -> float:
    """The rate after ``ok`` accepted and ``deferred`` throttled messages (``cut``: whether a
    cut is allowed now, i.e. the last one is older than OPSDASH_PACING_CUT_SECONDS)."""
    if not limits.adaptive:
        return 0.0
    if deferred:
        if not cut:
            return rate
        return max(limits.floor, rate * settings.OPSDASH_PACING_DECREASE)
    if ok:
        raised = rate + settings.OPSDASH_PACING_INCREASE * ok / max(rate, 1.0)
        return min(limits.ceiling, raised)
    return rate


@dataclass
class Tally:
    ok: int = 0
    deferred: int = 0


# KEYS per provider: its state hash, its window hash. ARGV per provider: ok, deferred, floor,
# start, ceiling; then decrease, increase, cut ms, window ttl, state ttl. Returns the new rates
# (as strings: Lua numbers would be cut to integers).
_LUA_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local np = #KEYS / 2
local tail = 5 * np
local decrease = tonumber(ARGV[tail + 1])
local increase = tonumber(ARGV[tail + 2])
local cut_ms = tonumber(ARGV[tail + 3])
local rates = {}
for i = 1, np do
  local key = KEYS[2 * i - 1]
  local ok = tonumber(ARGV[5 * i - 4])
  local deferred = tonumber(ARGV[5 * i - 3])
  local floor = tonumber(ARGV[5 * i - 2])
  local ceiling = tonumber(ARGV[5 * i])
  local state = redis.call('HMGET', key, 'rate', 'cut_at')
  local rate = tonumber(state[1]) or tonumber(ARGV[5 * i - 1])
  local cut_at = tonumber(state[2]) or 0
  if ceiling <= 0 then
    rate = 0
  elseif deferred > 0 then
    if now - cut_at >= cut_ms then
      rate = math.max(floor, rate * decrease)
      redis.call('HSET', key, 'cut_at', now)
    end
  elseif ok > 0 then
    rate = math.min(ceiling, rate + increase * ok / math.max(rate, 1))
  end
  redis.call('HSET', key, 'rate', tostring(rate))
  redis.call('HINCRBY', key, 'ok', ok)
  redis.call('HINCRBY', key, 'deferred', deferred)
  redis.call('EXPIRE', key, tonumber(ARGV[tail + 5]))
  local window = KEYS[2 * i]
  redis.call('HINCRBY', window, 'ok', ok)
  redis.call('HINCRBY', window, 'deferred', deferred)
  redis.call('EXPIRE', window, tonumber(ARGV[tail + 4]))
  rates[i] = tostring(rate)
end
return rates
"""


@cache
def _sync_script(url: str) -> Any:
    return redis_client(decode_responses=True).register_script(_LUA_SYNC)


def state_key(channel: str, provider: Provider) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:pacing:{channel}:{provider.value}"


def window_key(channel: str, provider: Provider, minute: int) -> str:
    return f"{state_key(channel, provider)}:w:{minute}"


class _LocalState:
    """The in-process twin of the Redis state: rates, last cut, per-minute counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rates: dict[tuple[str, Provider], float] = {}
        self.cut_at: dict[tuple[str, Provider], float] = {}
        self.windows: dict[tuple[str, Provider, int], Tally] = {}


_local = _LocalState()


def _shared() -> bool:
    return bool(settings.REDIS_URL) and redis_up()


def rates_read(channel: str, providers: list[Provider]) -> dict[Provider, float]:
    """The current rate of each provider on ``channel`` (its start when nothing was learned)."""
    rates = {p: provider_limits(p).start for p in providers}
    if _shared():
        try:
            pipe = redis_client().pipeline(transaction=False)
            for provider in providers:
                pipe.hget(state_key(channel, provider), "rate")
            for provider, value in zip(providers, pipe.execute(), strict=True):
                if value is not None:
                    rates[provider] = float(value)
            return rates
        except redis.RedisError as exc:
            redis_failed(exc)
    with _local.lock:
        for provider in providers:
            rates[provider] = _local.rates.get((channel, provider), rates[provider])
    return rates


def tallies_apply(channel: str, tallies: dict[Provider, Tally]) -> dict[Provider, float]:
    """Writes what a batch observed (one Redis round trip); returns the providers' new rates."""
    # Providers without an adaptive rate (OTHER by default) are counted for the dashboard too.
    providers = [p for p, t in tallies.items() if t.ok or t.deferred]
    if not providers:
        return {}
    if _shared():
        try:
            return _redis_apply(channel, providers, tallies)
        except redis.RedisError as exc:
            redis_failed(exc)
    return _local_apply(channel, providers, tallies)


def _redis_apply(
    channel: str, providers: list[Provider], tallies: dict[Provider, Tally]
) -> dict[Provider, float]:
    minute = int(time.time() // 60)
    keys: list[str] = []
    args: list[float | int] = []
    for provider in providers:
        limits, tally = provider_limits(provider), tallies[provider]
        keys += [state_key(channel, provider), window_key(channel, provider, minute)]
        args += [tally.ok, tally.deferred, limits.floor, limits.start, limits.ceiling]
    args += [
        settings.OPSDASH_PACING_DECREASE,
        settings.OPSDASH_PACING_INCREASE,
        int(settings.OPSDASH_PACING_CUT_SECONDS * 1000),
        WINDOW_TTL,
        STATE_TTL,
    ]
    rates = _sync_script(settings.REDIS_URL)(keys=keys, args=args)
    return {p: float(r) for p, r in zip(providers, rates, strict=True)}


def _local_apply(
    channel: str, providers: list[Provider], tallies: dict[Provider, Tally]
) -> dict[Provider, float]:
    now, minute = time.monotonic(), int(time.time() // 60)
    new: dict[Provider, float] = {}
    with _local.lock:
        for provider in providers:
            limits, tally, key = provider_limits(provider), tallies[provider], (channel, provider)
            cut = now - _local.cut_at.get(key, -1e9) >= settings.OPSDASH_PACING_CUT_SECONDS
            rate = _local.rates.get(key, limits.start)
            new[provider] = aimd_step(
                rate, ok=tally.ok, deferred=tally.deferred, limits=limits, cut=cut
            )
            if tally.deferred and cut:
                _local.cut_at[key] = now
            _local.rates[key] = new[provider]
            window = _local.windows.setdefault((channel, provider, minute), Tally())
            window.ok += tally.ok
            window.deferred += tally.deferred
    return new


def windows_read(channel: str, providers: list[Provider], minutes: int) -> dict[Provider, Tally]:
    """Accepted and deferred messages per provider over the last ``minutes`` minutes."""
    now_minute = int(time.time() // 60)
    span = range(now_minute - minutes + 1, now_minute + 1)
    totals = {p: Tally() for p in providers}
    if settings.REDIS_URL:
        pipe = redis_client().pipeline(transaction=False)
        for provider in providers:
            for minute in span:
                pipe.hmget(window_key(channel, provider, minute), "ok", "deferred")
        answers = iter(pipe.execute())
        for provider in providers:
            for _ in span:
                ok, deferred = next(answers)
                totals[provider].ok += int(ok or 0)
                totals[provider].deferred += int(deferred or 0)
        return totals
    with _local.lock:
        for provider in providers:
            for minute in span:
                tally = _local.windows.get((channel, provider, minute))
                if tally is not None:
                    totals[provider].ok += tally.ok
                    totals[provider].deferred += tally.deferred
    return totals


def channels_known(providers: list[Provider]) -> list[str]:
    """The channels with a learned rate for some provider (the dashboard lists each)."""
    if not settings.REDIS_URL:
        with _local.lock:
            return sorted({channel for channel, _ in _local.rates})
    pattern = f"{settings.REDIS_KEY_PREFIX}:pacing:*"
    names = {p.value for p in providers}
    found: set[str] = set()
    for key in redis_client().scan_iter(match=pattern, count=500):
        parts = key[len(settings.REDIS_KEY_PREFIX) + len(":pacing:") :].split(":")
        if len(parts) == 2 and parts[1] in names:
            found.add(parts[0])
    return sorted(found)
