"""Token buckets: shared through Redis by every worker, in-process without Redis."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from multiprocessing.queues import Queue

import pytest
from pytest_django import Settings

from campaigns.services import ratelimit
from campaigns.services.ratelimit import BucketSpec, tokens_take


def spec(rate: float, capacity: float) -> BucketSpec:
    return BucketSpec(f"test:{uuid.uuid4().hex}", rate, capacity)


def _take_all(name: str, attempts: int, out: Queue[int]) -> None:
    bucket = BucketSpec(name, 0.001, 10.0)
    out.put(sum(tokens_take([bucket], max_wait=0.0) == 0.0 for _ in range(attempts)))


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
def test_a_bucket_gives_its_capacity_then_asks_to_wait(
    settings: Settings, redis_url: str | None
) -> None:
    settings.REDIS_URL = redis_url
    bucket = spec(rate=1.0, capacity=3.0)

    taken = [tokens_take([bucket], max_wait=0.0) for _ in range(3)]
    wait = tokens_take([bucket], max_wait=0.0)

    assert taken == [0.0, 0.0, 0.0]
    assert 0.5 < wait <= 1.0


def test_short_waits_are_slept_through(settings: Settings) -> None:
    settings.REDIS_URL = None
    bucket = spec(rate=20.0, capacity=1.0)
    slept: list[float] = []

    results = [tokens_take([bucket], sleep=slept.append) for _ in range(3)]

    assert results == [0.0, 0.0, 0.0] and slept  # the second and third waited for a refill


@pytest.mark.services
def test_workers_in_different_processes_share_one_budget(settings: Settings) -> None:
    name = f"test:{uuid.uuid4().hex}"
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take_all, args=(name, 8, out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    granted = sum(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join()

    assert granted == 10  # 24 attempts against one bucket of 10


def test_every_configured_limit_becomes_a_bucket(settings: Settings) -> None:
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 50
    settings.OPSDASH_SMTP_RATE_PER_HOUR = 36_000
    settings.OPSDASH_SMTP_RATE_PER_DAY = 86_400

    specs = ratelimit.buckets_for(campaign_id=3, campaign_per_minute=120)

    rates = {s.name.rsplit(":", 1)[-1]: s.rate_per_second for s in specs}
    assert rates == {"s": 50, "h": 10, "d": 1, "3": 2}


def test_no_limit_configured_means_no_bucket(settings: Settings) -> None:
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 0
    settings.OPSDASH_SMTP_RATE_PER_HOUR = 0
    settings.OPSDASH_SMTP_RATE_PER_DAY = 0

    assert ratelimit.buckets_for(campaign_id=1, campaign_per_minute=None) == []
    assert tokens_take([]) == 0.0


def test_a_per_minute_limit_is_never_exceeded_in_any_minute(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDIS_URL = ""  # the in-process bucket, on a clock this test moves
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 0
    settings.OPSDASH_SMTP_RATE_PER_HOUR = 0
    settings.OPSDASH_SMTP_RATE_PER_DAY = 0
    clock = [1000.0]
    monkeypatch.setattr("campaigns.services.ratelimit.time.monotonic", lambda: clock[0])
    specs = ratelimit.buckets_for(campaign_id=uuid.uuid4().int % 10**9, campaign_per_minute=120)

    sent_at: list[float] = []
    while clock[0] < 1000.0 + 180:  # three minutes of a worker asking as fast as it can
        if tokens_take(specs, max_wait=0) == 0.0:
            sent_at.append(clock[0])
        clock[0] += 0.01

    busiest = max(sum(1 for t in sent_at if start <= t < start + 60) for start in sent_at)
    assert 115 <= busiest <= 121, busiest


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
def test_a_message_takes_from_all_its_buckets_or_from_none(
    settings: Settings, redis_url: str | None
) -> None:
    settings.REDIS_URL = redis_url
    relay, provider = spec(rate=0.001, capacity=5.0), spec(rate=0.001, capacity=2.0)

    granted = [ratelimit.take_all([relay, provider], 1).wait == 0 for _ in range(4)]
    # The provider's bucket is empty: the relay still holds the 3 tokens nobody used.
    relay_left = [tokens_take([relay], max_wait=0.0) == 0.0 for _ in range(4)]

    assert granted == [True, True, False, False]
    assert relay_left == [True, True, True, False]


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
def test_a_spent_quota_refuses_with_its_renewal_and_takes_no_tokens(
    settings: Settings, redis_url: str | None
) -> None:
    settings.REDIS_URL = redis_url
    relay = spec(rate=0.001, capacity=10.0)
    quota = ratelimit.QuotaSpec(f"test:{uuid.uuid4().hex}", limit=3, ttl=60, renews_in=3600.0)

    taken = [ratelimit.take_all([relay], 1, [quota]) for _ in range(4)]

    assert [t.wait for t in taken[:3]] == [0.0, 0.0, 0.0]
    assert taken[3].quota and taken[3].wait == pytest.approx(3600.0)
    assert sum(tokens_take([relay], max_wait=0.0) == 0.0 for _ in range(10)) == 7


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
def test_a_group_larger_than_a_bucket_goes_once_it_is_full_and_repays(
    settings: Settings, redis_url: str | None
) -> None:
    settings.REDIS_URL = redis_url
    bucket = spec(rate=10.0, capacity=2.0)

    first = ratelimit.take_all([bucket], 5).wait
    second = ratelimit.take_all([bucket], 1).wait

    assert first == 0.0
    assert 0.3 < second <= 0.4  # three tokens of debt plus one, at 10 per second
