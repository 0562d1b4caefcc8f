"""The campaign page's Pre-flight panel: badges, Re-check, and the approver's override."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign
from tests.admin.helpers import user_with_roles
from tests.factories import AudienceFactory, CampaignFactory
from tests.services.preflight_fakes import FakeResolver, dkim_key, domain, good_dns

__all__ = ["dkim_key", "domain", "good_dns"]  # fixtures
pytestmark = pytest.mark.django_db


def client_of(*roles: str) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles))
    return client


def page(client: Client, campaign: Campaign) -> str:
    response = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def blocked(good_dns: FakeResolver, domain: str) -> Campaign:
    del good_dns.records[f"_dmarc.{domain}"]
    return CampaignFactory.create(from_email=f"news@{domain}", audiences=[AudienceFactory.create()])


def test_the_panel_shows_each_finding_with_its_badge(blocked: Campaign, domain: str) -> None:
    html = page(client_of("editor"), blocked)
    assert 'id="preflight"' in html and "Sending is blocked" in html
    assert 'data-code="spf_ok" data-severity="ok"' in html
    assert 'data-code="dmarc_missing" data-severity="block"' in html
    assert f"_dmarc.{domain}" in html
    assert 'id="preflight-override"' not in html  # editors do not override
    assert "An approver can override" in html


def test_with_dns_checks_off_the_panel_says_not_checked(settings: Settings) -> None:
    settings.OPSDASH_PREFLIGHT_DNS = False
    html = page(client_of("editor"), CampaignFactory.create())
    assert 'data-code="dns_off" data-severity="warn"' in html
    assert "DNS checks are off" in html and "Sending is blocked" not in html


def test_a_finished_campaign_has_no_panel() -> None:
    campaign = CampaignFactory.create(status=Campaign.Status.SENT)
    assert 'id="preflight"' not in page(client_of("editor"), campaign)


def test_an_approver_overrides_with_a_reason(blocked: Campaign) -> None:
    approver = client_of("approver")
    assert 'id="preflight-override"' in page(approver, blocked)
    url = reverse("admin:campaigns_campaign_preflight_override", args=[blocked.pk])
    response = approver.post(url, {"reason": "DMARC goes live at noon"})
    assert response.status_code == 302 and response["Location"].endswith("#preflight")
    blocked.refresh_from_db()
    assert blocked.preflight_override_codes == ["dmarc_missing"]
    entry = AuditEntry.objects.get(action=AuditEntry.Action.PREFLIGHT_OVERRIDDEN)
    assert entry.changes["reason"] == "DMARC goes live at noon"
    html = page(approver, blocked)
    assert 'data-code="dmarc_missing" data-severity="overridden"' in html
    assert "DMARC goes live at noon" in html and "Sending is blocked" not in html
    trail = approver.get(
        reverse("admin:campaigns_auditentry_changelist") + f"?campaign__id__exact={blocked.pk}"
    ).content.decode()
    assert "Pre-flight checks overridden" in trail and "dmarc_missing" in trail


def test_an_override_without_a_reason_is_refused(blocked: Campaign) -> None:
    url = reverse("admin:campaigns_campaign_preflight_override", args=[blocked.pk])
    response = client_of("approver").post(url, {"reason": ""}, follow=True)
    assert "Say why" in response.content.decode()
    blocked.refresh_from_db()
    assert blocked.preflight_override_at is None


def test_only_approvers_override(blocked: Campaign) -> None:
    url = reverse("admin:campaigns_campaign_preflight_override", args=[blocked.pk])
    assert client_of("editor").post(url, {"reason": "x"}).status_code == 403


def test_send_now_names_the_failing_checks(blocked: Campaign) -> None:
    url = reverse("admin:campaigns_campaign_send_now", args=[blocked.pk])
    response = client_of("approver").post(url, follow=True)
    text = response.content.decode()
    assert "Pre-flight checks stop" in text and "dmarc_missing" in text
    blocked.refresh_from_db()
    assert blocked.status == Campaign.Status.DRAFT


def test_recheck_asks_dns_again(blocked: Campaign, good_dns: FakeResolver, domain: str) -> None:
    client = client_of("auditor")
    page(client, blocked)
    good_dns.records[f"_dmarc.{domain}"] = ["v=DMARC1; p=reject"]
    assert "Sending is blocked" in page(client, blocked)  # the cached answer still stands
    url = reverse("admin:campaigns_campaign_preflight_recheck", args=[blocked.pk])
    assert client.post(url).status_code == 302
    assert "Sending is blocked" not in page(client, blocked)


def test_the_send_confirmation_says_up_front_what_blocks(blocked: Campaign) -> None:
    url = reverse("admin:campaigns_campaign_send_now", args=[blocked.pk])
    html = client_of("approver").get(url).content.decode()
    assert 'id="confirm-preflight"' in html and "(dmarc_missing)" in html


def test_a_confirmation_with_nothing_blocking_says_nothing(settings: Settings) -> None:
    settings.OPSDASH_PREFLIGHT_DNS = False
    campaign = CampaignFactory.create(audiences=[AudienceFactory.create()])
    url = reverse("admin:campaigns_campaign_schedule_campaign", args=[campaign.pk])
    assert 'id="confirm-preflight"' not in client_of("approver").get(url).content.decode()
