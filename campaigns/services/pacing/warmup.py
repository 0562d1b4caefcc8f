"""Warm-up: a new sending domain or channel sends a little more each day, per provider.

A ``Warmup`` puts a From domain or a channel on a ``WarmupPlan``; on day n + 1 of it (counted
from ``started_on`` in settings.TIME_ZONE, so the plan advances by itself at local midnight)
each mailbox provider may receive ``daily_limits[n]`` messages from it. The day's count lives
in Redis (``ratelimit:warmup:<id>:<provider>:<day>``, kept two days past its day) and is taken
in the same atomic step as the rate tokens (``ratelimit.take_all``). Once the quota is spent
the batch hands its rows back and the send waits for the next day (``Service.WARMUP``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Send, Warmup
from campaigns.services import ratelimit
from campaigns.services.pacing.providers import Provider
from campaigns.services.redisclient import redis_client

Clock = Callable[[], datetime]
KEEP_SECONDS = 2 * 86_400  # a day's count outlives its day, for the admin's "sent today"


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def local_today(now: datetime) -> date:
    return now.astimezone(_zone()).date()


def seconds_to_next_day(now: datetime) -> float:
    """Seconds from ``now`` until the next day starts in settings.TIME_ZONE."""
    tomorrow = local_today(now) + timedelta(days=1)
    start = datetime.combine(tomorrow, time.min, tzinfo=_zone())
    return max(1.0, (start - now).total_seconds())


def warmup_day(warmup: Warmup, *, today: date) -> int:
    """The day index of the plan today (0 on the start date; before it, 0 as well)."""
    return max(0, (today - warmup.started_on).days)


def warmup_limit(warmup: Warmup, *, today: date) -> int | None:
    """Each provider's limit today; None once the plan is over (no warm-up limit applies)."""
    limits: list[int] = warmup.plan.daily_limits
    day = warmup_day(warmup, today=today)
    return int(limits[day]) if day < len(limits) else None


def sending_domain(send: Send) -> str:
    return parseaddr(send.campaign.from_email)[1].rpartition("@")[2].lower()


def warmups_for(*, send: Send, channel_name: str) -> list[Warmup]:
    """The active warm-ups a send's messages count against: its From domain's and its
    channel's (both apply when both are warming up)."""
    match = Q(target_kind=Warmup.Target.DOMAIN, target=sending_domain(send)) | Q(
        target_kind=Warmup.Target.CHANNEL, target=channel_name
    )
    return list(Warmup.objects.filter(match, active=True).select_related("plan"))


def quota_name(warmup: Warmup, provider: Provider, day: int) -> str:
    return f"warmup:{warmup.pk}:{provider.value}:{day}"


def warmup_quotas(
    warmups: list[Warmup], provider: Provider, *, now: datetime
) -> list[ratelimit.QuotaSpec]:
    """Today's quota of each warm-up for ``provider`` (none for a plan that is over)."""
    today, renews_in = local_today(now), seconds_to_next_day(now)
    quotas = []
    for warmup in warmups:
        limit = warmup_limit(warmup, today=today)
        if limit is None:
            continue
        day = warmup_day(warmup, today=today)
        name = quota_name(warmup, provider, day)
        quotas.append(ratelimit.QuotaSpec(name, limit, int(renews_in) + KEEP_SECONDS, renews_in))
    return quotas


def warmup_sent_today(warmup: Warmup, *, now: datetime | None = None) -> dict[Provider, int]:
    """Messages counted against today's quota, per provider."""
    day = warmup_day(warmup, today=local_today(now or timezone.now()))
    names = [quota_name(warmup, provider, day) for provider in Provider]
    if not settings.REDIS_URL:
        used = [ratelimit.quota_used(name) for name in names]
    else:
        prefix = f"{settings.REDIS_KEY_PREFIX}:ratelimit:"
        used = [int(v or 0) for v in redis_client().mget([prefix + n for n in names])]
    return dict(zip(Provider, used, strict=True))


def plan_limits_clean(value: object) -> list[int]:
    """A plan's daily limits as a list of positive, non-decreasing whole numbers; raises
    ValidationError saying which day is wrong."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Give the daily limits as a list of numbers, e.g. [50, 100, 200].")
    limits: list[int] = []
    for day, item in enumerate(value, start=1):
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValidationError(f"Day {day}: {item!r} is not a positive whole number.")
        if limits and item < limits[-1]:
            raise ValidationError(
                f"Day {day}: {item} is less than day {day - 1}'s {limits[-1]}; a warm-up "
                "never sends less on a later day."
            )
        limits.append(item)
    return limits
