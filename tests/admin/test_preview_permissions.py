"""The live preview renders what is posted only for those who may write a campaign; a reader
previews a saved campaign as it is stored."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, RecipientFactory

pytestmark = pytest.mark.django_db

PREVIEW = "admin:campaigns_campaign_preview"
CONTENT = {"subject": "Hi {{ recipient.first_name }}", "text_body": "Hello"}


def client_for(*roles: str) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles))
    return client


@pytest.mark.parametrize("roles", [("auditor",), ("approver",), ("auditor", "approver")])
def test_a_reader_previews_a_saved_campaign_as_stored_whatever_is_posted(
    roles: tuple[str, ...],
) -> None:
    campaign = CampaignFactory.create(subject="Saved for {{ recipient.first_name }}")
    response = client_for(*roles).post(reverse(PREVIEW), {"campaign_id": campaign.pk, **CONTENT})
    assert response.status_code == 200
    assert response.json()["subject"] == "Saved for Sample"


@pytest.mark.parametrize("roles", [("auditor",), ("approver",), ("auditor", "approver")])
def test_a_reader_gets_403_for_content_not_saved(roles: tuple[str, ...]) -> None:
    unsaved = client_for(*roles).post(reverse(PREVIEW), CONTENT)
    assert unsaved.status_code == 403


def test_a_reader_previews_a_saved_campaign_as_a_chosen_recipient() -> None:
    campaign = CampaignFactory.create(subject="Hi {{ recipient.first_name }}")
    RecipientFactory.create(email="ann@example.com", first_name="Ann")
    response = client_for("auditor").post(
        reverse(PREVIEW), {"campaign_id": campaign.pk, "recipient": "ann@example.com"}
    )
    assert response.json()["subject"] == "Hi Ann"


def test_an_editor_previews_saved_and_unsaved_campaigns() -> None:
    campaign = CampaignFactory.create()
    client = client_for("editor")
    saved = client.post(reverse(PREVIEW), {"campaign_id": campaign.pk, **CONTENT})
    unsaved = client.post(reverse(PREVIEW), CONTENT)
    assert saved.json()["subject"] == unsaved.json()["subject"] == "Hi Sample"


def test_a_saved_campaign_needs_change_and_a_new_one_needs_add_permission() -> None:
    from django.contrib.auth.models import Permission

    campaign = CampaignFactory.create()
    change_only = user_with_roles("auditor")
    change_only.user_permissions.add(Permission.objects.get(codename="change_campaign"))
    add_only = user_with_roles("auditor")
    add_only.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    # Without change, a saved campaign still previews as stored (auditors read it).
    for user, saved_code, unsaved_code in ((change_only, 200, 403), (add_only, 200, 200)):
        client = Client()
        client.force_login(user)
        saved = client.post(reverse(PREVIEW), {"campaign_id": campaign.pk, **CONTENT})
        unsaved = client.post(reverse(PREVIEW), CONTENT)
        assert (saved.status_code, unsaved.status_code) == (saved_code, unsaved_code)


def test_a_costly_template_comes_back_as_the_reason_not_a_render() -> None:
    response = client_for("editor").post(
        reverse(PREVIEW), {"subject": '{{ "x"|ljust:"20000000" }}', "text_body": "t"}
    )
    assert response.json() == {"error": "Subject: the filter 'ljust' is not allowed."}
