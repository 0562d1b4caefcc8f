"""The pages' cache reads and writes, tolerant of a cache server that is down.

Django's RedisCache raises on a dead server, and the pages only cache to save the database
work; so a failed read computes the value directly, a failed write is dropped, and the page goes
on. After a failure the cache is left alone for CACHE_RETRY_SECONDS (the Redis client may retry
for a while on every call, which a page should pay once, not for every key), and it is logged
once per outage, not once per request. ``cache_unavailable_since`` tells a page to say so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CACHE_RETRY_SECONDS = 5.0
PROBE_KEY = "health:cache-probe"
# What a cache server that is down raises: the Redis client's errors, or the socket's own.
CACHE_ERRORS = (RedisError, OSError)


class _Outage:
    """Since when the cache has been failing, per cache location (a test may point elsewhere)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, datetime] = {}
        self._skip_until: dict[str, float] = {}

    def failed(self, location: str, exc: Exception) -> None:
        with self._lock:
            self._skip_until[location] = time.monotonic() + CACHE_RETRY_SECONDS
            if location in self._since:
                return
            self._since[location] = timezone.now()
        logger.warning("Cache unavailable, pages compute their numbers directly: %s", exc)

    def answered(self, location: str) -> None:
        with self._lock:
            self._skip_until.pop(location, None)
            if self._since.pop(location, None) is None:
                return
        logger.info("Cache available again")

    def skipping(self, location: str) -> bool:
        return time.monotonic() < self._skip_until.get(location, 0.0)

    def since(self, location: str) -> datetime | None:
        return self._since.get(location)


_outage = _Outage()


def _location() -> str:
    return str(settings.CACHES.get("default", {}).get("LOCATION", ""))


def cache_get_or_compute[T](key: str, ttl: float, compute: Callable[[], T]) -> T:
    """The cached value of ``key``, or ``compute()`` (stored for ``ttl`` seconds when possible)."""
    location = _location()
    if _outage.skipping(location):
        return compute()
    try:
        cached: T | None = cache.get(key)
    except CACHE_ERRORS as exc:
        _outage.failed(location, exc)
        return compute()
    if cached is not None:
        _outage.answered(location)
        return cached
    value = compute()
    try:
        cache.set(key, value, ttl)
    except CACHE_ERRORS as exc:
        _outage.failed(location, exc)
    else:
        _outage.answered(location)
    return value


def cache_probe() -> datetime | None:
    """One cheap read to learn whether the cache answers: None if it does, else since when not."""
    location = _location()
    if not _outage.skipping(location):
        try:
            cache.get(PROBE_KEY)
        except CACHE_ERRORS as exc:
            _outage.failed(location, exc)
        else:
            _outage.answered(location)
    return _outage.since(location)


def cache_unavailable_since() -> datetime | None:
    """When this process last found the cache down and has not seen it answer since, or None."""
    return _outage.since(_location())
