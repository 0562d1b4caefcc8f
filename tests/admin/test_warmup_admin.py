"""The warm-up pages: the plan editor's checks, and where each warm-up stands today."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Warmup, WarmupPlan
from tests.admin.helpers import user_with_roles

pytestmark = pytest.mark.django_db


@pytest.fixture
def approver() -> Client:
    client = Client()
    client.force_login(user_with_roles("approver"))
    return client


def test_a_plan_is_typed_as_numbers_and_a_bad_day_is_named(approver: Client) -> None:
    url = reverse("admin:campaigns_warmupplan_add")

    bad = approver.post(url, {"name": "Quick", "daily_limits": "100, 200, 150"})
    typo = approver.post(url, {"name": "Quick", "daily_limits": "100, 2O0"})
    good = approver.post(url, {"name": "Quick", "daily_limits": "100, 200 400;800"})

    assert "Day 3: 150 is less than day 2&#x27;s 200" in bad.content.decode()
    assert "Day 2: &#x27;2O0&#x27; is not a whole number." in typo.content.decode()
    assert good.status_code == 302
    assert WarmupPlan.objects.get(name="Quick").daily_limits == [100, 200, 400, 800]


def test_the_list_shows_the_day_of_the_plan_and_today_s_limit(approver: Client) -> None:
    plan = WarmupPlan.objects.create(name="Four days", daily_limits=[10, 20, 40, 80])
    today = timezone.localdate()
    Warmup.objects.create(target="a.example.com", plan=plan, started_on=today - timedelta(days=1))
    Warmup.objects.create(target="b.example.com", plan=plan, started_on=today - timedelta(days=9))

    page = approver.get(reverse("admin:campaigns_warmup_changelist")).content.decode()

    assert "day 2 of 4" in page and "20 per provider" in page
    assert "finished (4 days)" in page


def test_a_warm_up_records_who_started_it_and_one_per_target(approver: Client) -> None:
    plan = WarmupPlan.objects.create(name="Two days", daily_limits=[10, 20])
    url = reverse("admin:campaigns_warmup_add")
    data = {
        "target_kind": "domain",
        "target": "@News.Example.com",
        "plan": plan.pk,
        "started_on": timezone.localdate().isoformat(),
        "active": "on",
    }

    assert approver.post(url, data).status_code == 302
    again = approver.post(url, data)

    warmup = Warmup.objects.get()
    assert warmup.target == "news.example.com" and warmup.created_by is not None
    assert "already on an active warm-up" in again.content.decode()


def test_an_editor_reads_but_cannot_start_a_warm_up() -> None:
    client = Client()
    client.force_login(user_with_roles("editor"))
    assert client.get(reverse("admin:campaigns_warmup_changelist")).status_code == 200
    assert client.get(reverse("admin:campaigns_warmup_add")).status_code == 403
