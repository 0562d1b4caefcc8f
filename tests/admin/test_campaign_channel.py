"""The campaign form's sending channel: the configured channels to choose from, saved as chosen."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import Campaign
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor(settings: Settings) -> Client:
    settings.OPSDASH_CHANNELS = ["relay=smtp", "pm=postmark:broadcast"]
    settings.OPSDASH_DEFAULT_CHANNEL = "relay"
    client = Client()
    client.force_login(user_with_roles("editor"))
    return client


def test_the_form_offers_the_default_and_each_configured_channel(editor: Client) -> None:
    page = editor.get(reverse("admin:campaigns_campaign_add")).content.decode()

    assert "Sending channel" in page
    assert '<option value="" selected>Default (relay)</option>' in page
    assert '<option value="pm">pm</option>' in page


def test_a_chosen_channel_is_saved_with_the_campaign(editor: Client) -> None:
    campaign = CampaignFactory.create()
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    response = editor.post(url, campaign_form_data(campaign, channel="pm"))

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.channel == "pm"


def test_a_channel_not_configured_is_refused(editor: Client) -> None:
    campaign = CampaignFactory.create()
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    response = editor.post(url, campaign_form_data(campaign, channel="gone"))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).channel == ""
