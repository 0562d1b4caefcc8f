"""Who a campaign reaches and how big each audience is: the one rule the launch also uses.

``audience_members_sql`` is the FROM/WHERE the launch's INSERT ... SELECT materialises its
Delivery rows from; the confirmation page counts over the very same clause, so the number staff
confirm is the number of rows the launch creates (suppressed and unsubscribed left out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Count

from campaigns.models import Audience, Campaign, Recipient, Subscription
from campaigns.services.audiences import SUPPRESSED_STATUSES

# Audience sizes change with every import; a few minutes old is fine for a list or a checkbox,
# and on a million-row table it spares a grouped count on every page view.
SUBSCRIBER_COUNT_SECONDS = 300
_COUNT_KEY = "opsdash:audience-subscribers:{}"


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
    """Active subscriptions per audience: cached ones as they are, the rest in one grouped query."""
    ids = sorted(set(audience_ids))
    cached = cache.get_many([_COUNT_KEY.format(pk) for pk in ids])
    counts = {pk: cached[_COUNT_KEY.format(pk)] for pk in ids if _COUNT_KEY.format(pk) in cached}
    missing = [pk for pk in ids if pk not in counts]
    if missing:
        fresh = dict.fromkeys(missing, 0)
        subscribed = Subscription.objects.filter(
            audience_id__in=missing, status=Subscription.Status.SUBSCRIBED
        )
        rows = subscribed.values_list("audience_id").annotate(n=Count("id"))
        fresh.update({audience_id: n for audience_id, n in rows})
        keyed = {_COUNT_KEY.format(pk): n for pk, n in fresh.items()}
        cache.set_many(keyed, SUBSCRIBER_COUNT_SECONDS)
        counts.update(fresh)
    return counts


def audience_label(audience: Audience, count: int) -> str:
    """ "Newsletter readers — 12,340 subscribed", as the campaign's audience tab lists it."""
    return f"{audience.name} — {count:,} subscribed"
