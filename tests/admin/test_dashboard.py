"""The dashboard: numbers from the database, workers from their heartbeats, queue depths from
the broker where it can tell, failing soft; onboarding until the first send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from campaigns.models import Campaign, Delivery, ImportJob, Recipient, Send, TaskLink
from campaigns.selectors.dashboard import STATS_CACHE_KEY, hours_cache_key, table_estimate
from campaigns.selectors.system import SYSTEM_CACHE_KEY
from campaigns.services.campaigns import campaign_schedule
from campaigns.services.heartbeat import Beat, heartbeat_write
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
    # The onboarding checks (three EXISTS) are never cached, so a step shows ticked at once.
    with django_assert_max_num_queries(10):
        assert auditor.get(reverse("admin:index")).status_code == 200


def fresh_worker(name: str = "w1@host", queues: tuple[str, ...] | None = None) -> None:
    now = timezone.now()
    beat = Beat(name, "worker", queues or tuple(settings.QUEUES), 7, 2, now - timedelta(hours=1))
    heartbeat_write(beat=beat, now=now)


@pytest.mark.services
def test_the_status_panel_lists_the_queues_of_a_live_broker(auditor: Client) -> None:
    fresh_worker()
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert settings.QUEUE_DELIVERY in page
    queues = page.split('id="queues"', 1)[1]
    assert "unavailable" not in queues and "not reported" not in queues
    assert "data-warn" not in page and 'data-healthy="yes"' in page


@pytest.mark.services
def test_the_status_panel_says_unavailable_when_the_broker_is_down(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_worker()
    # Nothing listens on port 1.
    monkeypatch.setattr(app.conf, "broker_url", "amqp://guest:guest@127.0.0.1:1//")
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert "The broker did not answer" in page and 'data-healthy="no"' in page
    assert page.count(">unavailable<") == len(settings.QUEUES)
    assert 'data-alive="yes"' in page  # the workers are known from their heartbeats all the same


def test_the_embedded_profile_shows_live_workers_without_any_warning(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_worker()
    monkeypatch.setattr(app.conf, "broker_url", "filesystem://")  # the embedded transport
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert "w1@host" in page and ">OK<" in page
    assert page.count("not reported by this broker") == len(settings.QUEUES)
    assert "data-warn" not in page and "opsdash-unavailable" not in page
    assert "Unavailable" not in page and 'data-healthy="yes"' in page


def test_a_dashboard_with_no_worker_at_all_says_so(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.conf, "broker_url", "filesystem://")
    page = auditor.get(reverse("admin-system-status")).content.decode()
    assert 'id="workers-none"' in page and 'data-healthy="no"' in page


def test_an_empty_dashboard_says_what_to_do_first(auditor: Client) -> None:
    page = auditor.get(reverse("admin:index")).content.decode()
    steps = page.split('id="dashboard-onboarding"', 1)[1].split("</ol>", 1)[0]
    for url in (
        reverse("admin:campaigns_importjob_add"),
        reverse("admin:campaigns_campaign_add"),
        reverse("admin:campaigns_campaign_changelist"),
    ):
        assert f'href="{url}"' in steps
    assert "1. Import recipients" in steps and "3. Send a test" in steps
    assert steps.count('data-done="no"') == 3


def test_onboarding_ticks_each_step_and_goes_once_something_was_sent(auditor: Client) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    TaskLink.objects.create(task_id="t-1", kind=TaskLink.Kind.TEST, campaign=campaign)
    page = auditor.get(reverse("admin:index")).content.decode()
    assert page.count('data-done="yes"') == 3
    Send.objects.create(campaign=campaign, occurrence_key="once")
    assert 'id="dashboard-onboarding"' not in auditor.get(reverse("admin:index")).content.decode()


def test_times_on_the_dashboard_carry_their_time_zone(auditor: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    scheduled = CampaignFactory.create(
        name="Winter sale",
        audiences=[audience_with(1)],
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=datetime(2036, 11, 26, 8, 0, tzinfo=UTC),
    )
    campaign_schedule(campaign=scheduled, by=UserFactory.create())
    page = auditor.get(reverse("admin:index")).content.decode()
    assert "26 Nov 2036 09:00 CET" in page.split('id="dashboard-upcoming"', 1)[1]
    as_of = page.split("Numbers as of", 1)[1][:30]
    assert "CET" in as_of


def test_an_upload_left_at_the_mapping_page_is_not_an_import_running(auditor: Client) -> None:
    ImportJob.objects.create(status=ImportJob.Status.PENDING, original_name="left.csv")
    ImportJob.objects.create(status=ImportJob.Status.RUNNING, original_name="busy.csv")
    assert auditor.get(reverse("admin:index")).context["running_imports"] == 1


def test_totals_come_from_the_planner_estimate_once_analysed() -> None:
    RecipientFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{Recipient._meta.db_table}"')
    assert table_estimate(Recipient) == 3


def card_link(page: str, kpi: str) -> str:
    """The href of the card that holds the number ``data-kpi=kpi``."""
    before = page.split(f'data-kpi="{kpi}"')[0]
    return before.rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def test_the_active_campaigns_card_lists_exactly_the_campaigns_it_counts(auditor: Client) -> None:
    for name, status in [("Going", "sending"), ("Held", "paused"), ("Later", "scheduled")]:
        CampaignFactory.create(name=name, status=status)
    response = auditor.get(reverse("admin:index"))
    assert response.context["active_campaigns"] == 2
    listing = auditor.get(card_link(response.content.decode(), "active")).content.decode()
    rows = listing.split('id="result_list"')[1]
    assert "Going" in rows and "Held" in rows and "Later" not in rows


def test_the_imports_card_lists_exactly_the_imports_it_counts(auditor: Client) -> None:
    ImportJob.objects.create(status=ImportJob.Status.PENDING, original_name="left.csv")
    ImportJob.objects.create(
        status=ImportJob.Status.PENDING, original_name="queued.csv", task_id="t-1"
    )
    ImportJob.objects.create(status=ImportJob.Status.RUNNING, original_name="busy.csv")
    ImportJob.objects.create(status=ImportJob.Status.COMPLETED, original_name="done.csv")
    response = auditor.get(reverse("admin:index"))
    assert response.context["running_imports"] == 2
    listing = auditor.get(card_link(response.content.decode(), "imports")).content.decode()
    rows = listing.split('id="result_list"')[1]
    assert "queued.csv" in rows and "busy.csv" in rows
    assert "left.csv" not in rows and "done.csv" not in rows


def test_the_dashboard_is_titled_dashboard(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Site administration" not in page and "Dashboard" in page
