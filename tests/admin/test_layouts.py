"""The layout pages: the list (version, default, how many campaigns use each), the editor
with its preview, refusals named on the field, and the save warnings of the campaign page."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from campaigns.models import AuditEntry, Campaign, Layout
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory, shipped_layout

pytestmark = pytest.mark.django_db


def logged_in(*roles: str) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles))
    return client


def layout_data(layout: Layout, **overrides: str) -> dict[str, str]:
    data = {
        "name": layout.name,
        "html": layout.html,
        "logo_url": layout.logo_url,
        "brand_color": layout.brand_color,
        "legal_address": layout.legal_address,
        "footer_text": layout.footer_text,
    }
    if layout.is_default:
        data["is_default"] = "on"
    data.update(overrides)
    return data


def test_the_list_shows_version_default_and_how_many_campaigns_use_each() -> None:
    house = shipped_layout()
    CampaignFactory.create_batch(2, layout=house)

    page = logged_in("editor").get(reverse("admin:campaigns_layout_changelist"))

    html = page.content.decode()
    assert page.status_code == 200
    row = re.search(r"House \(responsive\).*?</tr>", html, re.DOTALL)
    assert row is not None
    assert "2 campaigns" in row.group() and ">1<" in row.group()
    assert "0 campaigns" in html  # Plain


def test_the_editor_previews_the_layout_around_a_sample_body() -> None:
    house = shipped_layout()
    page = logged_in("approver").get(reverse("admin:campaigns_layout_change", args=[house.pk]))

    html = page.content.decode()
    frame = re.search(r'<iframe sandbox="" [^>]*srcdoc="([^"]*)"', html)
    assert frame is not None
    assert "Hello Sample" in frame.group(1)  # the sample recipient, rendered
    assert "font-family: Arial" in frame.group(1)


def test_a_layout_without_its_slot_is_refused_on_the_html_and_nothing_is_saved() -> None:
    house = shipped_layout()
    html = house.html.replace("{{ content }}", "")

    response = logged_in("approver").post(
        reverse("admin:campaigns_layout_change", args=[house.pk]), layout_data(house, html=html)
    )

    assert response.status_code == 200
    assert "the layout has no {{ content }} slot" in response.content.decode()
    stored = Layout.objects.get(pk=house.pk)
    assert (stored.html, stored.version) == (house.html, 1)


def test_an_approver_edit_is_a_new_version_audited_and_can_move_the_default() -> None:
    house, plain = shipped_layout(), shipped_layout("Plain")
    client = logged_in("approver")

    response = client.post(
        reverse("admin:campaigns_layout_change", args=[plain.pk]),
        layout_data(plain, legal_address="New address", is_default="on"),
    )

    assert response.status_code == 302
    plain.refresh_from_db()
    house.refresh_from_db()
    assert (plain.version, plain.is_default, house.is_default) == (2, True, False)
    entry = AuditEntry.objects.get(layout=plain)
    assert entry.action == "edited" and entry.changes["legal_address"] == "New address"


def test_editors_read_layouts_but_do_not_change_them() -> None:
    house = shipped_layout()
    client = logged_in("editor")
    response = client.post(
        reverse("admin:campaigns_layout_change", args=[house.pk]),
        layout_data(house, legal_address="Nope"),
    )
    assert response.status_code == 403
    assert Layout.objects.get(pk=house.pk).legal_address != "Nope"


def test_saving_a_campaign_shows_its_content_warnings() -> None:
    campaign = CampaignFactory.create(
        body='<p>Hi</p><img src="https://x.example/a.png"><a href="/offers">x</a>'
    )
    client = logged_in("editor")
    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        campaign_form_data(campaign, subject="Edited"),
    )

    assert response.status_code == 302
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("An image has no alt text" in m for m in said), said
    assert any("Links that go nowhere in a mail client" in m for m in said), said
    assert Campaign.objects.get(pk=campaign.pk).subject == "Edited"


def test_the_send_page_names_the_layout_version_it_went_out_with() -> None:
    from campaigns.services.delivery import send_launch
    from tests.factories import audience_with

    campaign = CampaignFactory.create(audiences=[audience_with(1)], layout=shipped_layout())
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None

    page = logged_in("auditor").get(reverse("admin:campaigns_send_change", args=[send.pk]))

    assert "House (responsive), version 1" in page.content.decode()
