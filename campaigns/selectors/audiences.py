"""Who a campaign reaches and how big each audience is: the one rule the launch also uses.

``audience_members_sql`` is the FROM/WHERE the launch's INSERT ... SELECT materialises its
Delivery rows from; the confirmation page counts over the very same clause, so the number staff
confirm is the number of rows the launch creates (suppressed and unsubscribed left out).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q

from campaigns.models import Audience, Campaign, Recipient, Subscription
from campaigns.selectors.cache import CACHE_ERRORS
from campaigns.services.audience_counts import COUNTS_VERSION_KEY
from campaigns.services.audiences import SUPPRESSED_STATUSES

# Audience sizes cached for a list or a checkbox: on a million-row table it spares a grouped
# count on every page view; an import or an unsubscribe leaves them behind (a version bump).
SUBSCRIBER_COUNT_SECONDS = 300
_COUNT_KEY = "opsdash:audience-subscribers:{}:{}"  # version, audience id


def audience_members_sql(*, campaign_id: int, suppressed: bool = False) -> tuple[str, list[Any]]:
    """``FROM ... WHERE ...`` over recipients ``r``: the active members of a campaign's audiences.

    A recipient counts once however many of the audiences they are in, and only while their
    subscription is active and their address is not unsubscribed, bounced or complained. With
    ``suppressed``, the opposite: the subscribed members the launch leaves out.
    """
    r, s = Recipient._meta.db_table, Subscription._meta.db_table
    through = Campaign.audiences.through._meta.db_table
    placeholders = ", ".join(["%s"] * len(SUPPRESSED_STATUSES))
    sql = f"""
        FROM {r} r
        WHERE r.status {"IN" if suppressed else "NOT IN"} ({placeholders})
          AND EXISTS (
            SELECT 1 FROM {s} s
            WHERE s.recipient_id = r.id AND s.status = %s
              AND s.audience_id IN (SELECT audience_id FROM {through} WHERE campaign_id = %s))
    """
    return sql, [*SUPPRESSED_STATUSES, Subscription.Status.SUBSCRIBED, campaign_id]


def campaign_recipient_count(*, campaign_id: int, suppressed: bool = False) -> int:
    """How many Delivery rows a launch of the campaign would create now (with ``suppressed``:
    how many subscribed members it leaves out)."""
    sql, params = audience_members_sql(campaign_id=campaign_id, suppressed=suppressed)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) {sql}", params)
        return int(cursor.fetchone()[0])


def audience_subscriber_counts(audience_ids: Iterable[int]) -> dict[int, int]:
    """Active subscriptions per audience: cached ones as they are, the rest in one grouped query.

    The keys carry the version an import or an unsubscribe bumps (services.audience_counts), so
    a count is never older than the last such change; a cache that is down costs the query.
    """
    ids = sorted(set(audience_ids))
    try:
        version = cache.get(COUNTS_VERSION_KEY, 0)
        keys = {pk: _COUNT_KEY.format(version, pk) for pk in ids}
        cached = cache.get_many(list(keys.values()))
    except CACHE_ERRORS:
        return _subscribed_counts(ids)
    counts = {pk: cached[key] for pk, key in keys.items() if key in cached}
    missing = [pk for pk in ids if pk not in counts]
    if missing:
        fresh = _subscribed_counts(missing)
        # A cache that is down: the page has its numbers, and the next one counts again.
        with suppress(*CACHE_ERRORS):
            cache.set_many({keys[pk]: n for pk, n in fresh.items()}, SUBSCRIBER_COUNT_SECONDS)
        counts.update(fresh)
    return counts


def _subscribed_counts(audience_ids: list[int]) -> dict[int, int]:
    counts = dict.fromkeys(audience_ids, 0)
    subscribed = Subscription.objects.filter(
        audience_id__in=audience_ids, status=Subscription.Status.SUBSCRIBED
    )
    counts.update(subscribed.values_list("audience_id").annotate(n=Count("id")))
    return counts


@dataclass(frozen=True)
class AudienceReach:
    """One audience as a confirmation page counts it, exactly and now."""

    subscribed: int  # active subscriptions
    left_out: int  # of those, addresses unsubscribed, bounced or complained (never sent to)


def audience_exact_counts(audience_ids: Iterable[int]) -> dict[int, AudienceReach]:
    """Uncached counts for the few audiences of one campaign, in one grouped query.

    What staff confirm a send against must be the truth now, never a cached number: the
    (audience, status) index finds each audience's active subscriptions, and each joins its
    recipient by primary key for the address's status.
    """
    ids = sorted(set(audience_ids))
    rows = (
        Subscription.objects.filter(audience_id__in=ids, status=Subscription.Status.SUBSCRIBED)
        .values_list("audience_id")
        .annotate(
            subscribed=Count("id"),
            left_out=Count("id", filter=Q(recipient__status__in=SUPPRESSED_STATUSES)),
        )
    )
    counts = dict.fromkeys(ids, AudienceReach(0, 0))
    counts.update({pk: AudienceReach(n, out) for pk, n, out in rows})
    return counts


def audience_label(audience: Audience, count: int) -> str:
    """ "Newsletter readers — 12,340 subscribed", as the campaign's audience tab lists it."""
    return f"{audience.name} — {count:,} subscribed"
