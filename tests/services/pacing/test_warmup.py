"""Warm-up plans: the day of the plan, its limit per provider, and the wait for tomorrow."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from pytest_django import Settings

from campaigns.models import Warmup, WarmupPlan
from campaigns.services.pacing import Provider, WaitReason
from campaigns.services.pacing.warmup import (
    plan_limits_clean,
    seconds_to_next_day,
    warmup_day,
    warmup_limit,
    warmup_sent_today,
)
from tests.services.pacing.helpers import Clock, pacer_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limits(settings: Settings) -> None:
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 0
    settings.OPSDASH_PACING = {name: (0.0, 0.0, 0.0, 0, 0) for name in settings.OPSDASH_PACING}


def warmup_of(target: str, limits: list[int], started_on: date, **fields: object) -> Warmup:
    plan = WarmupPlan.objects.create(name=f"plan {target}", daily_limits=limits)
    return Warmup.objects.create(target=target, plan=plan, started_on=started_on, **fields)


def test_the_default_plan_ships_with_the_product() -> None:
    plan = WarmupPlan.objects.get(name="Standard 30 days")
    assert len(plan.daily_limits) == 30
    assert plan.daily_limits[0] == 50 and plan.daily_limits[-1] == 50_000
    assert plan_limits_clean(plan.daily_limits) == plan.daily_limits


def test_the_plan_advances_by_itself_day_by_day_and_ends() -> None:
    warmup = warmup_of("news.example.org", [10, 20, 40], date(2026, 11, 24))

    days = [date(2026, 11, 23) + timedelta(days=i) for i in range(6)]

    assert [warmup_day(warmup, today=d) for d in days] == [0, 0, 1, 2, 3, 4]
    assert [warmup_limit(warmup, today=d) for d in days] == [10, 10, 20, 40, None, None]


def test_the_next_day_starts_at_midnight_in_the_site_time_zone(settings: Settings) -> None:
    noon = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert seconds_to_next_day(noon) == 12 * 3600
    settings.TIME_ZONE = "Europe/Oslo"  # UTC+1 in November: midnight there is 23:00 UTC
    assert seconds_to_next_day(noon) == 11 * 3600


def test_over_the_day_quota_the_pacer_says_wait_for_the_next_day() -> None:
    clock = Clock(datetime(2026, 11, 26, 18, 0, tzinfo=UTC))
    warmup_of("warm.example.org", [3, 6], date(2026, 11, 26))
    pacer = pacer_for(from_email="News <news@Warm.Example.org>", clock=clock)

    granted = [pacer.take(Provider.GOOGLE).granted for _ in range(3)]
    refused = pacer.take(Provider.GOOGLE)
    other_provider = pacer.take(Provider.YAHOO)

    assert granted == [True, True, True]
    assert not refused.granted and refused.reason is WaitReason.WARMUP
    assert refused.wait == 6 * 3600  # until midnight
    assert other_provider.granted  # each provider has its own quota

    clock.now += timedelta(hours=7)  # the next day: day 2 of the plan, 6 each
    assert [pacer.take(Provider.GOOGLE).granted for _ in range(7)] == [True] * 6 + [False]


def test_a_channel_warm_up_counts_too_and_shows_what_was_sent_today() -> None:
    clock = Clock()
    pacer = pacer_for(clock=clock)
    warmup = warmup_of(pacer.channel_name, [2], clock.now.date(), target_kind="channel")
    pacer = type(pacer)(send=pacer.send, channel=pacer.channel, clock=clock)

    assert [pacer.take(Provider.APPLE).granted for _ in range(3)] == [True, True, False]
    assert warmup_sent_today(warmup, now=clock.now)[Provider.APPLE] == 2


def test_a_finished_or_inactive_warm_up_limits_nothing() -> None:
    clock = Clock()
    warmup_of("done.example.org", [1], clock.now.date() - timedelta(days=5))
    warmup_of("off.example.org", [1], clock.now.date(), active=False)

    for domain in ("done.example.org", "off.example.org"):
        pacer = pacer_for(from_email=f"a@{domain}", clock=clock)
        assert all(pacer.take(Provider.GOOGLE).granted for _ in range(5))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("50, 100", "as a list of numbers"),
        ([], "as a list of numbers"),
        ([50, 0], "Day 2: 0 is not a positive whole number"),
        ([50, 2.5], "Day 2: 2.5 is not a positive whole number"),
        ([100, 50], "Day 2: 50 is less than day 1's 100"),
    ],
)
def test_a_plan_must_be_positive_whole_numbers_that_never_go_down(
    value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        plan_limits_clean(value)
