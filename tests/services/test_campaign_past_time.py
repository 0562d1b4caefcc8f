"""A one-off time that passed while the campaign was unscheduled: only Schedule needs it ahead."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaigns as services
from campaigns.services.controls import Control, campaign_offers
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


def passed_once() -> Campaign:
    """A draft whose one-off time went by after it was unscheduled."""
    return CampaignFactory.create(
        audiences=[audience_with(1)],
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() - timedelta(minutes=1),
    )


def test_send_now_and_approve_ignore_a_one_off_time_that_has_passed() -> None:
    campaign = passed_once()
    services.campaign_approve(campaign=campaign, by=UserFactory.create())
    key = services.campaign_send_now(campaign=campaign, by=UserFactory.create(), launch=print)
    campaign.refresh_from_db()
    assert (key, campaign.status) == ("once", Campaign.Status.SENDING)
    assert campaign.approved_at is not None


def test_schedule_still_refuses_a_time_in_the_past() -> None:
    campaign = passed_once()
    with pytest.raises(ValidationError, match="in the past"):
        services.campaign_schedule(campaign=campaign, by=UserFactory.create())


def test_a_save_refuses_a_past_time_only_when_it_sets_it() -> None:
    campaign = passed_once()
    campaign.subject = "Another subject"
    services.campaign_save(campaign=campaign, by=UserFactory.create())
    campaign.scheduled_at = timezone.now() - timedelta(minutes=2)
    with pytest.raises(ValidationError, match="in the past"):
        services.campaign_save(campaign=campaign, by=UserFactory.create())


def test_the_toolbar_greys_out_schedule_once_the_time_has_passed() -> None:
    offers = campaign_offers(campaign=passed_once(), user=UserFactory.create(is_superuser=True))
    reasons = {offer.control: offer.reason for offer in offers}
    assert (
        reasons[Control.SCHEDULE] == "The chosen time has passed: pick a later one (Schedule tab)"
    )
    assert reasons[Control.SEND_NOW] == reasons[Control.APPROVE] == ""
