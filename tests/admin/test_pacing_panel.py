"""The dashboard's pacing panel: the queue per provider comes from one grouped query."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from campaigns.models import Delivery, Recipient, Send
from campaigns.selectors.pacing import PACING_CACHE_KEY, queued_by_provider
from campaigns.services.pacing import Provider
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def send_with(status: str, emails: list[str]) -> Send:
    send = Send.objects.create(
        campaign=CampaignFactory.create(), occurrence_key=f"k{len(emails)}{status}", status=status
    )
    recipients = Recipient.objects.bulk_create(Recipient(email=e) for e in emails)
    Delivery.objects.bulk_create(Delivery(send=send, recipient=r) for r in recipients)
    return send


def test_queued_deliveries_of_running_sends_are_counted_per_provider(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    send_with(
        Send.Status.RUNNING,
        ["a@gmail.com", "b@googlemail.com", "c@hotmail.co.uk", "d@ymail.com", "e@acme.org"],
    )
    send_with(Send.Status.PAUSED, ["f@gmail.com"])  # not running: not waiting for a provider

    with django_assert_num_queries(1):
        queued = queued_by_provider()

    assert queued[Provider.GOOGLE] == 2
    assert queued[Provider.MICROSOFT] == 1
    assert queued[Provider.YAHOO] == 1
    assert queued[Provider.OTHER] == 1
    assert queued[Provider.APPLE] == 0


def test_the_dashboard_shows_the_panel(auditor: Client) -> None:
    cache.delete(PACING_CACHE_KEY)
    send_with(Send.Status.RUNNING, ["a@icloud.com", "b@me.com"])

    page = auditor.get(reverse("admin:index")).content.decode()

    assert 'id="dashboard-pacing"' in page
    assert '<td data-pacing-queued="apple">2</td>' in page
