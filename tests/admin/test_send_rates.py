"""What came back after sending: the send page and the dashboard show the counters the event
applier moves (delivered, bounced, complained, ...), with rates that warn before a provider
blocks the sender."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Send
from campaigns.selectors.dashboard import STATS_CACHE_KEY, recent_feedback
from campaigns.selectors.feedback import (
    COMPLAINT_DANGER_NOTE,
    COMPLAINT_WARN_NOTE,
    HARD_BOUNCE_NOTE,
    Feedback,
)
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_numbers() -> Iterator[None]:
    cache.delete(STATS_CACHE_KEY)  # only our key: others' runs may share this Redis
    yield
    cache.delete(STATS_CACHE_KEY)


def a_send(**counters: Any) -> Send:
    campaign = CampaignFactory.create(status=Campaign.Status.SENT)
    now = timezone.now()
    fields: dict[str, Any] = {
        "started_at": now - timedelta(hours=2),
        "finished_at": now - timedelta(hours=1),
        "status": Send.Status.COMPLETED,
    }
    return Send.objects.create(campaign=campaign, occurrence_key="once", **{**fields, **counters})


def rates(feedback: Feedback) -> dict[str, Any]:
    return {rate.key: rate for rate in feedback.rates()}


def test_complaints_are_a_share_of_the_delivered_messages() -> None:
    rate = rates(Feedback(sent=2000, delivered=1000, complained=2))["complained"]
    assert rate.base_label == "delivered"
    assert rate.percent == pytest.approx(0.2)
    assert rate.level == "warning" and rate.note == COMPLAINT_WARN_NOTE


def test_complaints_are_a_share_of_the_sent_ones_when_nothing_is_reported_delivered() -> None:
    rate = rates(Feedback(sent=1000, complained=1))["complained"]
    assert rate.base_label == "sent"
    assert rate.percent == pytest.approx(0.1)
    assert rate.level == "warning"


def test_complaints_from_three_in_a_thousand_are_the_danger_line() -> None:
    feedback = Feedback(sent=1000, delivered=1000, complained=3)
    rate = rates(feedback)["complained"]
    assert rate.level == "danger" and rate.note == COMPLAINT_DANGER_NOTE
    assert "0.3 %" in rate.note and feedback.level == "danger"


def test_few_complaints_and_bounces_raise_nothing() -> None:
    feedback = Feedback(sent=10_000, delivered=9_900, complained=9, bounced=199)
    assert {rate.level for rate in feedback.rates()} == {""}
    assert feedback.level == ""


def test_hard_bounces_from_two_percent_warn() -> None:
    rate = rates(Feedback(sent=1000, bounced=20))["bounced"]
    assert rate.percent == pytest.approx(2.0)
    assert rate.level == "warning" and rate.note == HARD_BOUNCE_NOTE


def test_nothing_sent_gives_no_rate_rather_than_a_division_by_zero() -> None:
    assert all(rate.percent is None for rate in Feedback().rates())


def test_the_send_page_shows_the_counters_and_their_rates(auditor: Client) -> None:
    send = a_send(
        sent_count=1000,
        delivered_count=980,
        soft_bounced_count=5,
        bounced_count=25,
        complained_count=4,
        unsubscribed_count=7,
        opened_count=300,
        clicked_count=40,
    )
    page = auditor.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()
    assert 'id="send-feedback"' in page
    assert "98.00 % of sent" in page  # delivered
    assert "2.50 % of sent" in page  # hard bounces: warns
    assert "0.50 % of sent" in page  # soft bounces
    assert "0.41 % of delivered" in page  # complaints: danger
    assert "0.70 % of sent" in page  # unsubscribed
    assert "<td>Opened</td><td>300</td>" in page and "<td>Clicked</td><td>40</td>" in page
    assert "Gmail and Yahoo block bulk senders above 0.3 %" in page
    assert 'data-rate-note="bounced"' in page


def test_the_list_of_sends_shows_delivered_and_only_the_rates_over_their_line(
    auditor: Client,
) -> None:
    a_send(sent_count=1000, delivered_count=990, complained_count=5, bounced_count=3)
    page = auditor.get(reverse("admin:campaigns_send_changelist")).content.decode()
    assert "99.0 % delivered" in page
    assert 'data-rate="complained">complaints 0.51 %' in page
    assert 'data-rate="bounced"' not in page  # 0.3 %: under its line


def test_a_send_with_nothing_reported_back_says_so(auditor: Client) -> None:
    send = a_send(sent_count=10)
    page = auditor.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()
    assert "data-feedback-none" in page
    assert "data-rate-note" not in page


def test_the_live_view_carries_the_counters_and_rates(auditor: Client) -> None:
    send = a_send(
        sent_count=200, delivered_count=100, complained_count=1, status=Send.Status.RUNNING
    )
    data = auditor.get(reverse("admin:campaigns_send_live", args=[send.pk])).json()
    assert data["feedback"]["delivered"] == 100
    complained = data["feedback"]["rates"]["complained"]
    assert complained["of"] == "delivered" and complained["level"] == "danger"
    assert complained["percent"] == pytest.approx(1.0)
    assert 'data-send-live="feedback"' in data["feedback_html"]


def test_the_dashboard_sums_the_last_30_days_of_sends(auditor: Client) -> None:
    a_send(sent_count=600, delivered_count=590, bounced_count=6, complained_count=1)
    a_send(sent_count=400, delivered_count=390, unsubscribed_count=4)
    old = timezone.now() - timedelta(days=40)
    a_send(
        sent_count=5000,
        bounced_count=4000,
        started_at=old,
        finished_at=old + timedelta(hours=1),
    )
    feedback = recent_feedback(now=timezone.now())
    assert (feedback.sent, feedback.delivered, feedback.bounced) == (1000, 980, 6)

    page = auditor.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-feedback"' in page
    assert '<span data-feedback="delivered">980</span>' in page
    assert "98.00 % of sent" in page
    assert "0.60 % of sent" in page  # hard bounces
    assert "0.10 % of delivered" in page  # complaints: 1 of 980, shown rounded
    assert "0.40 % of sent" in page  # unsubscribed
    suppressions = reverse("admin:campaigns_suppression_changelist")
    assert f"{suppressions}?reason__exact=complaint" in page
    assert f"{suppressions}?reason__exact=hard_bounce" in page


def test_a_dashboard_complaint_rate_over_the_line_explains_itself(auditor: Client) -> None:
    a_send(sent_count=1000, delivered_count=1000, complained_count=5)
    page = auditor.get(reverse("admin:index")).content.decode()
    assert 'data-feedback="complained" data-level="danger"' in page
    assert COMPLAINT_DANGER_NOTE in page
