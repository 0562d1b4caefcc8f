"""The version of the cached audience sizes: bumped when subscriptions change in bulk.

The Audience list and the campaign's audience tab cache each audience's subscriber count; an
import or an unsubscribe changes those numbers, and staff check them at once. Rather than find
every key, the keys carry a version that a change bumps, so every cached count is left behind.
A cache that is down is no error: the counts are then computed directly anyway.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import transaction

from campaigns.selectors.cache import CACHE_ERRORS

logger = logging.getLogger(__name__)

COUNTS_VERSION_KEY = "opsdash:audience-subscribers:version"


def audience_counts_changed() -> None:
    """Leaves every cached audience count behind, once the current transaction commits (a
    reader before the commit would cache the old number again)."""
    transaction.on_commit(_bump)


def _bump() -> None:
    try:
        # add() creates the key when missing (incr alone raises); no expiry, it only grows.
        if not cache.add(COUNTS_VERSION_KEY, 1, None):
            cache.incr(COUNTS_VERSION_KEY)
    except (*CACHE_ERRORS, ValueError) as exc:  # ValueError: the key expired in between
        logger.warning("Audience counts not invalidated (cache unavailable): %s", exc)
