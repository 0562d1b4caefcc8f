"""While Redis or the database is out, the pages say so and keep answering."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Send, Service
from campaigns.selectors import cache as tolerant_cache
from campaigns.selectors.cache import cache_get_or_compute
from campaigns.selectors.dashboard import STATS_CACHE_KEY
from campaigns.selectors.health import clock
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

# Nothing listens on port 1: Django's RedisCache raises on every call, as with Redis stopped.
REDIS_DOWN = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
}


@pytest.fixture(autouse=True)
def _fresh_numbers() -> Iterator[None]:
    cache.delete(STATS_CACHE_KEY)  # only our key: others' runs may share this Redis
    yield
    cache.delete(STATS_CACHE_KEY)


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A fresh outage record, so one test's outage does not carry into the next.
    monkeypatch.setattr(tolerant_cache, "_outage", tolerant_cache._Outage())
    with override_settings(CACHES=REDIS_DOWN):
        yield


def waiting_send(service: str, *, retry_in: timedelta | None = None, name: str = "News") -> Send:
    since = timezone.now().replace(hour=16, minute=32, second=5, microsecond=0, tzinfo=UTC)
    return Send.objects.create(
        campaign=CampaignFactory.create(name=name),
        occurrence_key="once",
        total=10,
        sent_count=4,
        started_at=since - timedelta(minutes=5),
        last_progress_at=since,
        waiting_for=service,
        waiting_since=since,
        retry_due_at=timezone.now() + retry_in if retry_in is not None else None,
    )


def test_the_send_page_says_what_a_send_waits_for_and_keeps_refreshing(auditor: Client) -> None:
    send = waiting_send(Service.REDIS, retry_in=timedelta(minutes=2))

    html = auditor.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()

    assert "Waiting for Redis since 16:32:05 UTC" in html
    assert send.retry_due_at is not None
    assert f"next try at {clock(send.retry_due_at)}" in html
    assert 'data-send-waiting="redis"' in html and "bg-orange-100" in html  # warning colours
    assert 'data-poll="true"' in html and "send_live.js" in html  # polling goes on meanwhile


def test_the_send_list_says_waiting_for_the_database_instead_of_running(
    auditor: Client,
) -> None:
    waiting_send(Service.DATABASE, retry_in=-timedelta(seconds=5))  # the retry time has passed

    html = auditor.get(reverse("admin:campaigns_send_changelist")).content.decode()

    assert "Waiting for the database since 16:32:05 UTC" in html
    assert "next try" not in html


def test_a_paused_send_reads_paused_even_with_a_wait_recorded(auditor: Client) -> None:
    send = waiting_send(Service.REDIS)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.PAUSED)

    html = auditor.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()

    assert "Waiting for" not in html


def test_the_dashboard_lists_waiting_sends_and_the_services_out(auditor: Client) -> None:
    waiting_send(Service.DATABASE, name="Spring news")
    waiting_send(Service.DATABASE, name="Summer news")

    page = auditor.get(reverse("admin:index")).content.decode()

    waiting = page.split('id="dashboard-waiting"', 1)[1]
    assert "Spring news" in waiting and "Waiting for the database since 16:32:05 UTC" in waiting
    services = page.split('id="dashboard-services"', 1)[1].split("</p>", 1)[0]
    assert "The database unavailable since 16:32:05 UTC" in services
    assert "2 sends waiting" in services and "Redis" not in services
    assert 'id="dashboard-stalled"' not in page  # waiting, not stalled


def test_the_dashboard_names_no_outage_when_all_is_well(auditor: Client) -> None:
    page = auditor.get(reverse("admin:index")).content.decode()

    services = page.split('id="dashboard-services"', 1)[1].split("</p>", 1)[0]
    assert "no outage seen" in services and "unavailable" not in services


def test_with_redis_down_the_dashboard_answers_and_names_redis(
    redis_down: None, auditor: Client
) -> None:
    response = auditor.get(reverse("admin:index"))

    assert response.status_code == 200
    services = response.content.decode().split('id="dashboard-services"', 1)[1]
    assert "Redis unavailable since" in services.split("</p>", 1)[0]
    assert auditor.get(reverse("admin-system-status")).status_code == 200


def test_with_redis_down_a_send_page_answers_and_names_redis(
    redis_down: None, auditor: Client
) -> None:
    send = waiting_send(Service.REDIS)

    response = auditor.get(reverse("admin:campaigns_send_change", args=[send.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="send-services"' in html and "Redis unavailable since" in html
    assert "Waiting for Redis since 16:32:05 UTC" in html


def test_a_dead_cache_is_computed_around_and_logged_once(
    redis_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    with caplog.at_level(logging.WARNING, logger="campaigns.selectors.cache"):
        values = [cache_get_or_compute("test:outage", 5, compute) for _ in range(3)]

    assert values == [42, 42, 42] and len(calls) == 3
    assert len([r for r in caplog.records if "Cache unavailable" in r.message]) == 1
    assert tolerant_cache.cache_unavailable_since() is not None


def test_a_live_cache_is_read_instead_of_computing() -> None:
    key = f"test:live:{datetime.now(UTC).timestamp()}"
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "fresh"

    assert cache_get_or_compute(key, 5, compute) == "fresh"
    assert cache_get_or_compute(key, 5, compute) == "fresh"
    assert len(calls) == 1
