"""Token buckets shared by every worker.

With Redis configured, a bucket lives in one Redis hash updated by a Lua script, so all workers
on all hosts draw from the same budget. Without Redis (the embedded profile) the bucket is
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

# Refills the bucket for the time elapsed, then takes ``n`` tokens if it can. Returns 0 when the
# tokens were taken, otherwise the milliseconds to wait before trying again.
_LUA_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= n then
  tokens = tokens - n
else
  wait = math.ceil((n - tokens) * 1000 / rate)
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', key, math.ceil(capacity * 1000 / rate) + 60000)
return wait
"""


@dataclass(frozen=True)
class BucketSpec:
    name: str
    rate_per_second: float
    capacity: float


class _LocalBucket:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self.tokens = spec.capacity
        self.ts = time.monotonic()
        self.lock = threading.Lock()

    def try_take(self, n: int) -> float:
        with self.lock:
            now = time.monotonic()
            rate = self.spec.rate_per_second
            self.tokens = min(self.spec.capacity, self.tokens + (now - self.ts) * rate)
            self.ts = now
            if self.tokens >= n:
                self.tokens -= n
                return 0.0
            return (n - self.tokens) / rate


_local_buckets: dict[str, _LocalBucket] = {}
_local_lock = threading.Lock()


@cache
def _redis_script(url: str) -> Any:
    """The take script, registered once per process (then run by its SHA, not re-sent)."""
    return redis_client(decode_responses=False).register_script(_LUA_TAKE)


def try_take(spec: BucketSpec, n: int) -> float:
    """Seconds to wait before ``n`` tokens are available; 0 when they were taken."""
    if not settings.REDIS_URL:
        return _local_take(spec, n)
    if redis_up():
        key = f"{settings.REDIS_KEY_PREFIX}:ratelimit:{spec.name}"
        try:
            script = _redis_script(settings.REDIS_URL)
            wait_ms = script(keys=[key], args=[spec.rate_per_second, spec.capacity, n])
        except redis.RedisError as exc:
            redis_failed(exc)
        else:
            return int(wait_ms) / 1000
    return _local_take(_fallback_share(spec), n)


def _fallback_share(spec: BucketSpec) -> BucketSpec:
    """This process's share of a shared bucket while Redis is down: it errs on sending less."""
    share = settings.OPSDASH_RATE_FALLBACK_SHARE
    return BucketSpec(
        f"fallback:{spec.name}", spec.rate_per_second / share, max(1.0, spec.capacity / share)
    )


def _local_take(spec: BucketSpec, n: int) -> float:
    with _local_lock:
        bucket = _local_buckets.setdefault(spec.name, _LocalBucket(spec))
    return bucket.try_take(n)


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

    When a bucket would make the caller wait longer than ``max_wait`` (an hourly or daily
    budget spent), returns that wait instead, so a batch can hand its rows back and retry later
    rather than hold a worker. Tokens already taken from earlier buckets are not returned: the
    limits err on the side of sending less.
    """
    for spec in specs:
        while (wait := try_take(spec, n)) > 0:
            if wait > max_wait:
                return wait
            sleep(wait)
    return 0.0
