"""The adaptive rate per provider: cut on deferral, additive increase up to the ceiling."""

from __future__ import annotations

import uuid

import pytest
from pytest_django import Settings

from campaigns.services.pacing.aimd import (
    ProviderLimits,
    Tally,
    aimd_step,
    rates_read,
    tallies_apply,
    windows_read,
)
from campaigns.services.pacing.providers import Provider

LIMITS = ProviderLimits(floor=2.0, start=10.0, ceiling=40.0)


@pytest.fixture(autouse=True)
def _aimd_settings(settings: Settings) -> None:
    settings.OPSDASH_PACING_DECREASE = 0.5
    settings.OPSDASH_PACING_INCREASE = 1.0
    settings.OPSDASH_PACING_CUT_SECONDS = 0.0
    settings.OPSDASH_PACING = {**settings.OPSDASH_PACING, "google": (2.0, 10.0, 40.0, 0, 0)}


def test_a_deferral_cuts_the_rate_multiplicatively() -> None:
    assert aimd_step(10.0, ok=30, deferred=1, limits=LIMITS, cut=True) == 5.0


def test_the_rate_never_goes_below_the_floor() -> None:
    rate = 10.0
    for _ in range(10):
        rate = aimd_step(rate, ok=0, deferred=3, limits=LIMITS, cut=True)
    assert rate == LIMITS.floor


def test_deferrals_within_the_cut_interval_are_one_congestion() -> None:
    assert aimd_step(10.0, ok=0, deferred=5, limits=LIMITS, cut=False) == 10.0


def test_a_second_of_success_adds_the_increase() -> None:
    # 10 messages accepted at 10 per second: one second's worth, so +1 per second.
    assert aimd_step(10.0, ok=10, deferred=0, limits=LIMITS, cut=True) == pytest.approx(11.0)


def test_steady_success_climbs_to_the_ceiling_and_stays() -> None:
    rate = LIMITS.start
    for _ in range(200):
        rate = aimd_step(rate, ok=int(rate), deferred=0, limits=LIMITS, cut=True)
    assert rate == LIMITS.ceiling


def test_a_provider_without_limits_has_no_rate() -> None:
    off = ProviderLimits(0.0, 0.0, 0.0)
    assert aimd_step(0.0, ok=100, deferred=3, limits=off, cut=True) == 0.0


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
def test_the_shared_state_follows_the_same_maths(settings: Settings, redis_url: str | None) -> None:
    settings.REDIS_URL = redis_url
    channel = f"test-{uuid.uuid4().hex[:8]}"
    google = Provider.GOOGLE

    assert rates_read(channel, [google]) == {google: 10.0}
    cut = tallies_apply(channel, {google: Tally(ok=4, deferred=2)})
    raised = tallies_apply(channel, {google: Tally(ok=5, deferred=0)})
    counted = windows_read(channel, [google], minutes=5)[google]

    assert cut == {google: 5.0}
    assert raised[google] == pytest.approx(6.0)
    assert rates_read(channel, [google])[google] == pytest.approx(6.0)
    assert (counted.ok, counted.deferred) == (9, 2)


@pytest.mark.services
def test_a_cut_is_shared_by_every_pacer_of_the_channel(settings: Settings) -> None:
    channel = f"test-{uuid.uuid4().hex[:8]}"
    tallies_apply(channel, {Provider.GOOGLE: Tally(deferred=1)})
    assert rates_read(channel, [Provider.GOOGLE, Provider.YAHOO]) == {
        Provider.GOOGLE: 5.0,
        Provider.YAHOO: 10.0,  # another provider keeps its own rate (the default start)
    }
