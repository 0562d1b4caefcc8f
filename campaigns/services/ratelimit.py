"""Token buckets (and daily quotas) shared by every worker.

With Redis configured, a bucket lives in one Redis hash updated by a Lua script, so all workers
on all hosts draw from the same budget. A message takes from all of its buckets and quotas in
one script call, or from none (``take_all``). Without Redis (the embedded profile) the bucket is
in-process, which is exact for the single worker the demo runs.

While Redis does not answer, each process falls back to an in-process bucket holding its share
of the budget, the configured rate divided by OPSDASH_RATE_FALLBACK_SHARE (about the number of
worker processes), so the send goes on without ever exceeding the limit; it goes back to the
shared bucket as soon as Redis answers again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings

from campaigns.services.redisclient import redis_client, redis_failed, redis_up

# Takes ``n`` messages' worth from every bucket and every quota of a message, or from none:
# refills each bucket for the time elapsed; a bucket grants when it holds ``n`` tokens, or is
# full (a group larger than a bucket's burst goes into debt that the refill repays, so the
# long-run rate holds); a quota grants while ``used + n <= limit``. Returns {0, 0} when taken,
# {ms, 1} when a quota is spent (ms: until it renews), otherwise {ms, 0}: the longest wait.
# KEYS: the buckets, then the quotas. ARGV: n, the bucket count, rate and capacity per bucket,
# then limit, ttl (s) and renewal (ms) per quota.
_LUA_TAKE_ALL = """
local n = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
local wait = 0
for i = 1, nb do
  local rate = tonumber(ARGV[1 + 2 * i])
  local capacity = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local have = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  have = math.min(capacity, have + math.max(0, now - ts) * rate / 1000)
  tokens[i] = have
  local need = math.min(n, capacity)
  if have < need then
    wait = math.max(wait, math.ceil((need - have) * 1000 / rate))
  end
end
local base = 2 + 2 * nb
for j = 1, #KEYS - nb do
  local limit = tonumber(ARGV[base + 3 * j - 2])
  local used = tonumber(redis.call('GET', KEYS[nb + j]) or '0')
  if used + n > limit then
    return {tonumber(ARGV[base + 3 * j]), 1}
  end
end
if wait > 0 then
  return {wait, 0}
end
for i = 1, nb do
  local rate = tonumber(ARGV[1 + 2 * i])
  local capacity = tonumber(ARGV[2 + 2 * i])
  redis.call('HSET', KEYS[i], 'tokens', tokens[i] - n, 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(capacity * 1000 / rate) + 60000)
end
for j = 1, #KEYS - nb do
  redis.call('INCRBY', KEYS[nb + j], n)
  redis.call('EXPIRE', KEYS[nb + j], tonumber(ARGV[base + 3 * j - 1]))
end
return {0, 0}
"""


@dataclass(frozen=True)
class BucketSpec:
    name: str
    rate_per_second: float
    capacity: float


@dataclass(frozen=True)
class QuotaSpec:
    """A count that may reach ``limit`` within its period (a warm-up day), then waits."""

    name: str
    limit: int
    ttl: int  # seconds the counter is kept (past the end of its period)
    renews_in: float  # seconds until the next period starts


@dataclass(frozen=True)
class Taken:
    wait: float  # 0.0 when everything was taken
    quota: bool = False  # the wait is for a spent quota, not a rate


class _LocalBucket:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self.tokens = spec.capacity
        self.ts = time.monotonic()
        self.lock = threading.Lock()

    def try_take(self, n: int) -> float:
        with self.lock:
            if (wait := self.wait_for(n)) == 0.0:
                self.tokens -= n
            return wait

    def wait_for(self, n: int) -> float:
        """Refills; the seconds until ``n`` tokens (or a full bucket) are there, 0 if now."""
        now = time.monotonic()
        rate = self.spec.rate_per_second
        self.tokens = min(self.spec.capacity, self.tokens + max(0.0, now - self.ts) * rate)
        self.ts = now
        need = min(float(n), self.spec.capacity)
        return 0.0 if self.tokens >= need else (need - self.tokens) / rate


_local_buckets: dict[str, _LocalBucket] = {}
_local_quotas: dict[str, tuple[int, float]] = {}  # name: (used, monotonic expiry)
_local_lock = threading.Lock()


@cache
def _redis_script(url: str) -> Any:
    """The take script, registered once per process (then run by its SHA, not re-sent)."""
    return redis_client(decode_responses=False).register_script(_LUA_TAKE_ALL)


def try_take(spec: BucketSpec, n: int) -> float:
    """Seconds to wait before ``n`` tokens are available; 0 when they were taken."""
    return take_all([spec], n).wait


def take_all(specs: list[BucketSpec], n: int, quotas: list[QuotaSpec] | None = None) -> Taken:
    """Takes ``n`` from every bucket and quota at once, or from none (one Redis round trip).

    Taking bucket by bucket would spend the relay's tokens on a message the provider's bucket
    then refuses; here a refused message costs nothing anywhere.
    """
    quotas = quotas or []
    if not specs and not quotas:
        return Taken(0.0)
    if not settings.REDIS_URL:
        return _local_take_all(specs, quotas, n)
    if redis_up():
        prefix = f"{settings.REDIS_KEY_PREFIX}:ratelimit:"
        keys = [prefix + spec.name for spec in specs] + [prefix + q.name for q in quotas]
        args: list[float | int] = [n, len(specs)]
        for spec in specs:
            args += [spec.rate_per_second, spec.capacity]
        for quota in quotas:
            args += [quota.limit, quota.ttl, max(1, math.ceil(quota.renews_in * 1000))]
        try:
            wait_ms, spent = _redis_script(settings.REDIS_URL)(keys=keys, args=args)
        except redis.RedisError as exc:
            redis_failed(exc)
        else:
            return Taken(int(wait_ms) / 1000, bool(int(spent)))
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    return _local_take_all(
        [_fallback_share(spec) for spec in specs],
        [QuotaSpec(f"fallback:{q.name}", q.limit // share, q.ttl, q.renews_in) for q in quotas],
        n,
    )


def _fallback_share(spec: BucketSpec) -> BucketSpec:
    """This process's share of a shared bucket while Redis is down: it errs on sending less."""
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    return BucketSpec(
        f"fallback:{spec.name}", spec.rate_per_second / share, max(1.0, spec.capacity / share)
    )


def _local_take_all(specs: list[BucketSpec], quotas: list[QuotaSpec], n: int) -> Taken:
    """The in-process twin of the Lua script, under one lock so it is all-or-none too."""
    with _local_lock:
        now = time.monotonic()
        for quota in quotas:
            used, expires = _local_quotas.get(quota.name, (0, now + quota.ttl))
            if expires <= now:
                used, expires = 0, now + quota.ttl
            _local_quotas[quota.name] = (used, expires)
            if used + n > quota.limit:
                return Taken(quota.renews_in, quota=True)
        buckets = [_local_bucket(spec) for spec in specs]
        if (wait := max((bucket.wait_for(n) for bucket in buckets), default=0.0)) > 0:
            return Taken(wait)
        for bucket in buckets:
            bucket.tokens -= n
        for quota in quotas:
            used, expires = _local_quotas[quota.name]
            _local_quotas[quota.name] = (used + n, expires)
        return Taken(0.0)


def _local_bucket(spec: BucketSpec) -> _LocalBucket:
    """The process's bucket of that name, following a changed rate (an adaptive one)."""
    bucket = _local_buckets.setdefault(spec.name, _LocalBucket(spec))
    if bucket.spec != spec:
        bucket.spec = spec
    return bucket


def buckets_for(*, campaign_id: int, campaign_per_minute: int | None) -> list[BucketSpec]:
    """The buckets one message to the configured SMTP server must pass."""
    specs: list[BucketSpec] = []
    server = f"smtp:{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    per_second = settings.OPSDASH_SMTP_RATE_PER_SECOND
    if per_second > 0:
        specs.append(BucketSpec(f"{server}:s", per_second, max(1.0, per_second)))
    per_hour = settings.OPSDASH_SMTP_RATE_PER_HOUR
    if per_hour > 0:
        specs.append(BucketSpec(f"{server}:h", per_hour / 3600, float(per_hour)))
    per_day = settings.OPSDASH_SMTP_RATE_PER_DAY
    if per_day > 0:
        specs.append(BucketSpec(f"{server}:d", per_day / 86400, float(per_day)))
    if campaign_per_minute:
        # A burst of one second's worth, not a minute's: a bucket that starts full with a
        # minute's capacity lets nearly twice the limit out in the first minute, and staff
        # read "120 per minute" as never more than 120 in any minute.
        rate = campaign_per_minute / 60
        specs.append(BucketSpec(f"campaign:{campaign_id}", rate, max(1.0, rate)))
    return specs


def tokens_take(
    specs: list[BucketSpec],
    n: int = 1,
    *,
    max_wait: float = math.inf,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Takes ``n`` tokens from every bucket, sleeping for short waits; 0.0 when taken.

    When the buckets would make the caller wait longer than ``max_wait`` (an hourly or daily
    budget spent), returns that wait instead, so a batch can hand its rows back and retry later
    rather than hold a worker. Nothing is taken from any bucket unless all had the tokens.
    """
    while (wait := take_all(specs, n).wait) > 0:
        if wait > max_wait:
            return wait
        sleep(wait)
    return 0.0


def quota_used(name: str) -> int:
    """How much of an in-process quota is used (the embedded profile's admin pages)."""
    with _local_lock:
        used, expires = _local_quotas.get(name, (0, 0.0))
    return used if expires > time.monotonic() else 0
