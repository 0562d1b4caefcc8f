"""Each role can do its part and nothing more; an account without staff status gets nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services.campaigns import campaign_save
from tests.admin.helpers import campaign_form_data, ensure_role_groups, user_with_roles
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db

CHANGELISTS = (
    "admin:campaigns_campaign_changelist",
    "admin:campaigns_send_changelist",
    "admin:campaigns_delivery_changelist",
    "admin:campaigns_recipient_changelist",
    "admin:campaigns_audience_changelist",
    "admin:campaigns_subscription_changelist",
    "admin:campaigns_importjob_changelist",
    "admin:campaigns_auditentry_changelist",
    "admin:django_celery_results_taskresult_changelist",
    "admin:django_celery_beat_periodictask_changelist",
)


def client_for(*roles: str, **fields: object) -> tuple[Client, User]:
    user = user_with_roles(*roles, **fields)
    client = Client()
    client.force_login(user)
    return client, user


def action_url(name: str, campaign: Campaign) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])


def test_the_migration_makes_the_three_role_groups() -> None:
    ensure_role_groups()  # after a transactional test flushed them, as the migration would
    groups = {g.name: {p.codename for p in g.permissions.all()} for g in Group.objects.all()}
    assert {"editor", "approver", "auditor"} <= set(groups)
    assert {"add_campaign", "change_campaign", "send_test_campaign", "add_importjob"} <= groups[
        "editor"
    ]
    assert not {"approve_campaign", "send_campaign"} & groups["editor"]
    assert {"approve_campaign", "send_campaign"} <= groups["approver"]
    assert not {"add_campaign", "change_campaign"} & groups["approver"]
    assert all(codename.startswith("view_") for codename in groups["auditor"])


@pytest.mark.parametrize("role", ["editor", "approver", "auditor"])
def test_every_role_reads_every_changelist(role: str) -> None:
    client, _ = client_for(role)
    for name in CHANGELISTS:
        assert client.get(reverse(name)).status_code == 200, name
    assert client.get(reverse("admin:index")).status_code == 200


def test_an_editor_composes_but_cannot_approve_schedule_or_send() -> None:
    client, editor = client_for("editor")
    response = client.post(reverse("admin:campaigns_campaign_add"), campaign_form_data())
    assert response.status_code == 302, response.content[:2000]
    campaign = Campaign.objects.get(name="Spring news")
    assert campaign.owner == editor

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    assert action_url("send_test_to_me", campaign).encode() in page
    for action in ("approve", "send_now", "schedule_campaign"):
        assert action_url(action, campaign).encode() not in page
        assert client.post(action_url(action, campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.approved_by is None and campaign.status == Campaign.Status.DRAFT
    assert not Send.objects.exists()


def test_an_approver_approves_and_sends_but_cannot_edit_content() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)])
    client, approver = client_for("approver")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    response = client.post(url, campaign_form_data(campaign, subject="Changed"))
    assert response.status_code == 403
    assert client.get(reverse("admin:campaigns_campaign_add")).status_code == 403

    client.post(action_url("approve", campaign))
    campaign.refresh_from_db()
    assert campaign.approved_by == approver
    assert campaign.subject != "Changed"

    response = client.post(action_url("send_now", campaign))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert AuditEntry.objects.filter(action="sent", actor=approver, campaign=campaign).exists()
    # The approver cannot send tests: that belongs to editors.
    assert client.post(action_url("send_test_to_me", campaign)).status_code == 403


def test_an_auditor_reads_everything_and_changes_nothing() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    client, _ = client_for("auditor")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, campaign_form_data(campaign, name="Renamed")).status_code == 403
    assert client.get(reverse("admin:campaigns_campaign_add")).status_code == 403
    delete = reverse("admin:campaigns_campaign_delete", args=[campaign.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    for action in ("approve", "send_now", "schedule_campaign", "send_test_to_me"):
        assert client.post(action_url(action, campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.name != "Renamed" and campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.filter(campaign=campaign).exists()


def test_an_account_without_staff_status_gets_nothing() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    # Even with every role's group, an account that is not staff is sent to the login page.
    client, _ = client_for("editor", "approver", "auditor", is_staff=False)
    urls = [reverse(name) for name in CHANGELISTS] + [
        reverse("admin:index"),
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        action_url("send_now", campaign),
        action_url("approve", campaign),
        reverse("admin:campaigns_campaign_preview"),
        reverse("admin-system-status"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert reverse("admin:login") in response["Location"]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_by is None


def test_four_eyes_stops_the_last_editor_from_sending(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    client, both = client_for("editor", "approver")
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    campaign_save(campaign=campaign, by=both, changed=["subject"])

    response = client.post(action_url("send_now", campaign), follow=True)
    assert "Four-eyes rule" in response.content.decode()
    response = client.post(action_url("schedule_campaign", campaign), follow=True)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.filter(action="sent").exists()

    other, _ = client_for("approver")
    other.post(action_url("approve", campaign))  # an approval by someone else, after the edit
    other.post(action_url("send_now", campaign))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_without_four_eyes_the_last_editor_may_send(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = False
    client, both = client_for("editor", "approver")
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    campaign_save(campaign=campaign, by=both, changed=["subject"])
    client.post(action_url("send_now", campaign))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_a_superuser_still_sees_every_action() -> None:
    user = UserFactory.create(is_superuser=True)
    client = Client()
    client.force_login(user)
    campaign = CampaignFactory.create()
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    for action in ("approve", "send_now", "schedule_campaign", "send_test_to_me"):
        assert action_url(action, campaign).encode() in page


def test_state_changing_actions_refuse_a_plain_link() -> None:
    """A GET (a link on another site, a prefetch) must never send or approve anything."""
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    client, _ = client_for("editor", "approver")
    for action in ("send_now", "approve", "schedule_campaign", "send_test_to_me"):
        assert client.get(action_url(action, campaign)).status_code == 405
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_by is None
    assert not AuditEntry.objects.filter(campaign=campaign).exists()


@pytest.mark.parametrize(
    ("role", "allowed"), [("editor", True), ("approver", False), ("auditor", False)]
)
def test_only_editors_may_start_an_import(role: str, allowed: bool) -> None:
    client, _ = client_for(role)
    status = client.get(reverse("admin:campaigns_importjob_add")).status_code
    assert status == (200 if allowed else 403)
