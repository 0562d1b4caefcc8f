"""The campaign toolbar's markup: greyed-out entries carry no Alpine state a browser would miss."""

from __future__ import annotations

import re
from datetime import time

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, audience_with

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [Campaign.Status.DRAFT, Campaign.Status.SENT])
def test_greyed_out_entries_need_no_dropdown_state(status: str) -> None:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], schedule_kind="daily", schedule_time=time(9), status=status
    )
    client = Client()
    client.force_login(user_with_roles("editor"))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert 'data-unavailable="' in html
    assert "actionDropdownOpen" not in html


def test_a_read_only_schedule_lists_only_the_fields_of_its_kind() -> None:
    campaign = CampaignFactory.create(
        status=Campaign.Status.SENT, schedule_kind="weekly", schedule_time=time(9)
    )
    client = Client()
    client.force_login(user_with_roles("auditor"))
    html = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    page = html.content.decode()
    guarded = re.findall(r'x-show="typeof schedule_kind === [^"]*\|\| ([^"]*)"', page)
    # weekday, time of day and time zone; no one-off time, day of month or crontab
    assert len(guarded) == 3
    assert not [shown for shown in guarded if "once" in shown and "!=" not in shown]


def test_a_sent_campaign_shows_its_text_body_with_its_line_breaks() -> None:
    campaign = CampaignFactory.create(
        status=Campaign.Status.SENT, text_body="Line one\nLine two\n\n  <Indented>"
    )
    client = Client()
    client.force_login(user_with_roles("auditor"))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert (
        '<pre style="white-space: pre-wrap">Line one\nLine two\n\n  &lt;Indented&gt;</pre>'
        in page.content.decode()
    )


def test_an_auditor_of_a_sent_campaign_is_not_told_to_duplicate_it() -> None:
    campaign = CampaignFactory.create(status=Campaign.Status.SENT)
    client = Client()
    client.force_login(user_with_roles("auditor"))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert 'id="campaign-read-only"' in html and "uplicate it" not in html
