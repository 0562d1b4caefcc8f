"""Blocking pre-flight findings stop Schedule, Send now and a scheduled fire, unless an
approver's override covers exactly them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services import campaigns as services
from campaigns.services.preflight import (
    campaign_preflight_override,
    preflight_dns_forget,
    preflight_run,
)
from campaigns.services.transitions import IllegalTransition
from tests.factories import AudienceFactory, CampaignFactory, UserFactory
from tests.services.preflight_fakes import FakeResolver, dkim_key, domain, good_dns

__all__ = ["dkim_key", "domain", "good_dns"]  # fixtures
pytestmark = pytest.mark.django_db


def no_launch(*args: object) -> None:
    return None


@pytest.fixture
def blocked(good_dns: FakeResolver, domain: str) -> Campaign:
    """A campaign whose From domain publishes no DMARC record."""
    del good_dns.records[f"_dmarc.{domain}"]
    return CampaignFactory.create(
        from_email=f"Team <news@{domain}>", audiences=[AudienceFactory.create()]
    )


def override(campaign: Campaign, reason: str = "DMARC is being published today") -> None:
    campaign_preflight_override(
        campaign=campaign,
        by=UserFactory.create(),
        reason=reason,
        report=preflight_run(campaign=campaign),
    )


def test_send_now_is_refused_naming_the_failing_check(blocked: Campaign) -> None:
    with pytest.raises(IllegalTransition) as refused:
        services.campaign_send_now(campaign=blocked, by=UserFactory.create(), launch=no_launch)
    message = str(refused.value)
    assert "Pre-flight checks stop" in message and "dmarc_missing" in message
    assert "an approver can override" in message
    blocked.refresh_from_db()
    assert blocked.status == Campaign.Status.DRAFT


def test_schedule_is_refused_too(blocked: Campaign) -> None:
    blocked.schedule_kind = Campaign.ScheduleKind.ONCE
    blocked.scheduled_at = timezone.now() + timedelta(hours=1)
    blocked.save()
    with pytest.raises(IllegalTransition, match="DMARC record"):
        services.campaign_schedule(campaign=blocked, by=UserFactory.create())
    blocked.refresh_from_db()
    assert blocked.status == Campaign.Status.DRAFT and blocked.periodic_task is None


def test_an_approvers_override_lets_it_go_and_is_audited(blocked: Campaign) -> None:
    override(blocked)
    entry = AuditEntry.objects.get(action=AuditEntry.Action.PREFLIGHT_OVERRIDDEN)
    assert entry.campaign_id == blocked.pk
    assert entry.changes == {"reason": "DMARC is being published today", "codes": ["dmarc_missing"]}
    blocked.refresh_from_db()
    assert blocked.preflight_override_codes == ["dmarc_missing"]
    assert services.campaign_send_now(campaign=blocked, by=UserFactory.create(), launch=no_launch)


def test_an_override_needs_a_reason_and_something_to_override(
    blocked: Campaign, good_dns: FakeResolver, domain: str
) -> None:
    with pytest.raises(ValidationError, match="Say why"):
        override(blocked, reason="  ")
    good_dns.records[f"_dmarc.{domain}"] = ["v=DMARC1; p=reject"]
    fine = CampaignFactory.create(from_email=f"news@{domain}")
    preflight_dns_forget(campaign=fine)
    with pytest.raises(ValidationError, match="nothing to override"):
        override(fine)


def test_an_edit_voids_the_override(blocked: Campaign) -> None:
    override(blocked)
    blocked.refresh_from_db()
    blocked.subject = "A new subject"
    services.campaign_save(campaign=blocked, by=UserFactory.create())
    blocked.refresh_from_db()
    assert blocked.preflight_override_at is None and blocked.preflight_override_codes == []
    cleared = AuditEntry.objects.get(action=AuditEntry.Action.PREFLIGHT_OVERRIDE_CLEARED)
    assert cleared.changes["codes"] == ["dmarc_missing"]
    with pytest.raises(IllegalTransition, match="dmarc_missing"):
        services.campaign_send_now(campaign=blocked, by=UserFactory.create(), launch=no_launch)


def test_an_override_older_than_the_last_edit_counts_for_nothing(blocked: Campaign) -> None:
    override(blocked)
    Campaign.objects.filter(pk=blocked.pk).update(edited_at=timezone.now() + timedelta(seconds=1))
    with pytest.raises(IllegalTransition, match="dmarc_missing"):
        services.campaign_send_now(campaign=blocked, by=UserFactory.create(), launch=no_launch)


def test_a_new_blocking_finding_is_not_covered(
    blocked: Campaign, good_dns: FakeResolver, domain: str
) -> None:
    override(blocked)
    good_dns.records[domain] = []  # the SPF record is withdrawn after the override
    preflight_dns_forget(campaign=blocked)
    with pytest.raises(IllegalTransition) as refused:
        services.campaign_send_now(campaign=blocked, by=UserFactory.create(), launch=no_launch)
    assert "spf_missing" in str(refused.value) and "dmarc_missing" not in str(refused.value)


def test_a_scheduled_fire_that_is_blocked_does_not_launch_and_says_why(
    good_dns: FakeResolver, domain: str
) -> None:
    campaign = CampaignFactory.create(
        from_email=f"news@{domain}",
        audiences=[AudienceFactory.create()],
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() + timedelta(hours=1),
    )
    services.campaign_schedule(campaign=campaign, by=UserFactory.create())
    del good_dns.records[f"_dmarc.{domain}"]  # withdrawn after it was scheduled
    preflight_dns_forget(campaign=campaign)
    assert services.campaign_fire_scheduled(campaign_id=campaign.pk, publish=no_launch) is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.periodic_task is None
    assert not Send.objects.filter(campaign=campaign).exists()
    refused = AuditEntry.objects.get(action=AuditEntry.Action.SEND_REFUSED, campaign=campaign)
    assert refused.actor is None and "dmarc_missing" in refused.changes["reason"]


def test_a_scheduled_fire_under_an_override_launches(blocked: Campaign) -> None:
    override(blocked)
    blocked.refresh_from_db()
    blocked.schedule_kind = Campaign.ScheduleKind.ONCE
    blocked.scheduled_at = timezone.now() + timedelta(hours=1)
    Campaign.objects.filter(pk=blocked.pk).update(
        schedule_kind=blocked.schedule_kind, scheduled_at=blocked.scheduled_at
    )
    services.campaign_schedule(campaign=blocked, by=UserFactory.create())
    assert services.campaign_fire_scheduled(campaign_id=blocked.pk, publish=no_launch) is not None


def test_under_four_eyes_the_last_editor_cannot_override(
    blocked: Campaign, settings: Settings
) -> None:
    settings.OPSDASH_FOUR_EYES = True
    editor = UserFactory.create()
    Campaign.objects.filter(pk=blocked.pk).update(last_edited_by=editor)
    with pytest.raises(ValidationError, match="Four-eyes"):
        campaign_preflight_override(
            campaign=blocked, by=editor, reason="mine", report=preflight_run(campaign=blocked)
        )
    override(blocked)  # another approver may
