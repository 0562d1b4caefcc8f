"""The live preview renders what is posted, so only those who may write a campaign may use it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

PREVIEW = "admin:campaigns_campaign_preview"
CONTENT = {"subject": "Hi {{ recipient.first_name }}", "text_body": "Hello"}


def client_for(*roles: str) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles))
    return client


@pytest.mark.parametrize("roles", [("auditor",), ("approver",), ("auditor", "approver")])
def test_a_role_that_cannot_write_campaigns_gets_403_from_the_preview(
    roles: tuple[str, ...],
) -> None:
    campaign = CampaignFactory.create()
    client = client_for(*roles)
    saved = client.post(reverse(PREVIEW), {"campaign_id": campaign.pk, **CONTENT})
    unsaved = client.post(reverse(PREVIEW), CONTENT)
    assert (saved.status_code, unsaved.status_code) == (403, 403)


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
    for user, saved_code, unsaved_code in ((change_only, 200, 403), (add_only, 403, 200)):
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
