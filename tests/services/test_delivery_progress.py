"""A running send's progress shows in the admin and refreshes itself until the send ends.

The send's page counts its rows; the list of sends reads the counters.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import Delivery, Send
from campaigns.services.delivery import send_launch
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    return client


def a_send(*, sent: int, status: str) -> Send:
    campaign = CampaignFactory.create(audiences=[audience_with(4)])
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    Send.objects.filter(pk=send.pk).update(sent_count=sent, status=status)
    first = Delivery.objects.filter(send=send).order_by("id")[:sent].values_list("id", flat=True)
    Delivery.objects.filter(pk__in=list(first)).update(status=Delivery.Status.SENT)
    return send


def test_the_send_page_shows_a_live_progress_bar_while_running(staff_client: Client) -> None:
    send = a_send(sent=1, status=Send.Status.RUNNING)

    page = staff_client.get(reverse("admin:campaigns_send_change", args=[send.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-send-progress="{send.pk}"' in html and 'aria-valuenow="25"' in html
    assert "1 of 4 handled: 1 sent, 3 not sent yet" in html
    assert 'data-poll="true"' in html and "campaigns/send_live.js" in html  # the poller


def test_a_finished_send_shows_its_bar_without_polling(staff_client: Client) -> None:
    send = a_send(sent=4, status=Send.Status.COMPLETED)

    html = staff_client.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()

    assert "4 of 4 handled: 4 sent" in html and 'data-poll="false"' in html


def test_the_send_list_shows_progress_too(staff_client: Client) -> None:
    a_send(sent=2, status=Send.Status.RUNNING)

    html = staff_client.get(reverse("admin:campaigns_send_changelist")).content.decode()

    assert "2 of 4 handled: 2 sent, 2 not sent yet" in html and "opsdashSendProgress" in html
