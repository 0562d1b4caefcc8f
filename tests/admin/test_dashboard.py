"""The dashboard: numbers from the database, workers and queues from the broker, failing soft."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from campaigns.models import Campaign, Delivery, Recipient, Send
from campaigns.selectors.dashboard import STATS_CACHE_KEY, hours_cache_key, table_estimate
from campaigns.selectors.system import SYSTEM_CACHE_KEY
from campaigns.services.campaigns import campaign_schedule
from opsdash.celery import app
from tests.factories import CampaignFactory, RecipientFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_numbers() -> Iterator[None]:
    # Only our keys: clearing the whole cache would touch other runs sharing this Redis.
    keys = (STATS_CACHE_KEY, SYSTEM_CACHE_KEY, hours_cache_key(timezone.now()))
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def deliveries(send: Send, status: str, count: int, *, at: datetime) -> None:
    for _ in range(count):
        Delivery.objects.create(
            send=send, recipient=RecipientFactory.create(), status=status, sent_at=at, updated_at=at
        )


def test_the_dashboard_shows_todays_and_the_weeks_numbers(auditor: Client) -> None:
    now = timezone.now()
    campaign = CampaignFactory.create(status=Campaign.Status.SENDING)
    send = Send.objects.create(
        campaign=campaign,
        occurrence_key="once",
        total=10,
        sent_count=5,
        failed_count=1,
        started_at=now - timedelta(days=2),
        last_progress_at=now,
    )
    deliveries(send, Delivery.Status.SENT, 3, at=now)
    deliveries(send, Delivery.Status.SENT, 2, at=now - timedelta(days=3))  # counted by the send
    deliveries(send, Delivery.Status.FAILED, 1, at=now)

    response = auditor.get(reverse("admin:index"))
    assert response.status_code == 200
    context = response.context
    assert context["sent_today"] == 3 or now.hour == 0  # just after midnight "today" is short
    assert context["sent_week"] == 5
    assert context["failure_rate"] == pytest.approx(100 / 6)
    assert context["active_campaigns"] == 1
    assert context["waiting_deliveries"] == 4
    chart = json.loads(context["chart_data"])
    by_label = {dataset["label"]: sum(dataset["data"]) for dataset in chart["datasets"]}
    assert by_label == {"Sent": 3, "Failed": 1, "Skipped": 0}
    page = response.content.decode()
    assert 'data-kpi="failure-rate">16.7 %' in page


def test_upcoming_and_stalled_sends_are_listed(auditor: Client) -> None:
    scheduled = CampaignFactory.create(
        name="Friday digest",
        audiences=[audience_with(1)],
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() + timedelta(hours=5),
    )
    campaign_schedule(campaign=scheduled, by=UserFactory.create())
    Send.objects.create(
        campaign=CampaignFactory.create(name="Stuck one"),
        occurrence_key="once",
        stalled_reason="No progress since 10:00 UTC with deliveries still queued",
        last_progress_at=timezone.now() - timedelta(hours=1),
    )
    page = auditor.get(reverse("admin:index")).content.decode()
    upcoming = page.split('id="dashboard-upcoming"', 1)[1]
    assert "Friday digest" in upcoming and "4\xa0hours, 59\xa0minutes" in upcoming
    assert "Stuck one" in page and "No progress since 10:00 UTC" in page


def test_the_dashboard_runs_a_bounded_number_of_queries_and_then_uses_the_cache(
    auditor: Client, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    auditor.get(reverse("admin:index"))  # fills the cache
    with django_assert_max_num_queries(6):
        assert auditor.get(reverse("admin:index")).status_code == 200


@pytest.mark.services
def test_the_status_panel_lists_the_queues_of_a_live_broker(auditor: Client) -> None:
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert settings.QUEUE_DELIVERY in page
    assert "unavailable" not in page.split("Queues", 1)[1]


@pytest.mark.services
def test_the_status_panel_says_unavailable_when_the_broker_is_down(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1.
    monkeypatch.setattr(app.conf, "broker_url", "amqp://guest:guest@127.0.0.1:1//")
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert "Unavailable: the broker did not answer." in page
    assert page.count("unavailable") >= 4  # every queue row


def test_totals_come_from_the_planner_estimate_once_analysed() -> None:
    RecipientFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{Recipient._meta.db_table}"')
    assert table_estimate(Recipient) == 3
