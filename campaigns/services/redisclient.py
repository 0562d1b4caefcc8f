"""The Redis client of the delivery engine and the rate limiter, and whether Redis answers.

Redis is a helper, never a dependency: the client gives up within about a second (after three
quick retries of a dropped connection), and once a call fails this process leaves Redis alone
for a few seconds (``redis_up``), so its callers take their fallback at once instead of waiting
on every message.
"""

from __future__ import annotations

import functools
import logging
import time

import redis
from django.conf import settings
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# After a failed call, Redis is left alone this long before the next attempt.
REDIS_RECHECK_SECONDS = 2.0


class _Health:
    down_until = 0.0


def redis_up() -> bool:
    """False for a few seconds after a Redis call failed in this process (no call is made)."""
    return time.monotonic() >= _Health.down_until


def redis_failed(exc: Exception | None = None) -> None:
    if redis_up():
        logger.warning("Redis is unavailable (%s); falling back until it answers", exc)
    _Health.down_until = time.monotonic() + REDIS_RECHECK_SECONDS


def redis_reset() -> None:
    """Forgets a failure (tests, and a process that knows Redis is back)."""
    _Health.down_until = 0.0


def redis_client(*, decode_responses: bool = True) -> redis.Redis:
    """The shared client for ``settings.REDIS_URL``: 1 s timeouts, retries, health checks."""
    return _client(settings.REDIS_URL or "", decode_responses)


@functools.cache
def _client(url: str, decode_responses: bool) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=15,
        retry=Retry(
            ExponentialWithJitterBackoff(cap=0.5, base=0.05),
            3,
            supported_errors=(redis.ConnectionError, redis.TimeoutError),
        ),
    )
