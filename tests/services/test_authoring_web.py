"""A message in a browser: the recipient's web version (the unsubscribe link's token under
/m/) and the public archive, which is off unless a campaign is published to it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign, Delivery, Send
from campaigns.services.audiences import message_links, unsubscribe_token_make
from campaigns.services.delivery import send_launch
from tests.factories import CampaignFactory, audience_with, shipped_layout

pytestmark = pytest.mark.django_db


def sent(**fields: object) -> Send:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1, first_name="Ada", email="ada@example.com")],
        subject="News for {{ recipient.first_name }}",
        body_format=Campaign.BodyFormat.MARKDOWN,
        body="Hello **{{ recipient.first_name }}** at {{ recipient.email }}",
        layout=shipped_layout(),
        **fields,
    )
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    return send


def token_of(send: Send) -> str:
    delivery = Delivery.objects.get(send=send)
    return unsubscribe_token_make(recipient_id=delivery.recipient_id, send_id=send.pk)


def test_the_web_version_link_is_the_unsubscribe_token_under_another_path() -> None:
    links = message_links(recipient_id=7, send_id=9)
    token = unsubscribe_token_make(recipient_id=7, send_id=9)

    assert links.unsubscribe_url.endswith(f"/u/{token}/")
    assert links.web_version_url.endswith(f"/m/{token}/")


def test_the_web_version_shows_the_recipients_message_from_the_frozen_content() -> None:
    send = sent()
    Campaign.objects.filter(pk=send.campaign_id).update(body="Edited after the launch")

    response = Client().get(reverse("web-version", args=[token_of(send)]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Hello <strong>Ada</strong> at ada@example.com" in page
    assert "Edited after the launch" not in page
    # The page's own links work: the unsubscribe link is the recipient's.
    assert f'/u/{token_of(send)}/" ' in page
    # The message's HTML is the campaign's: sandboxed, never able to run script here.
    assert response["Content-Security-Policy"].startswith("sandbox ")
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_a_tampered_token_gets_a_clear_page_not_a_message() -> None:
    send = sent()
    token = token_of(send)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")

    response = Client().get(reverse("web-version", args=[forged]))

    assert response.status_code == 400
    assert "This web version link is not valid." in response.content.decode()
    assert "Ada" not in response.content.decode()


def test_a_test_messages_link_has_no_web_version() -> None:
    token = unsubscribe_token_make(recipient_id=0, send_id=0)
    response = Client().get(reverse("web-version", args=[token]))
    assert response.status_code == 404
    assert "test message" in response.content.decode()


def test_the_archive_is_off_by_default() -> None:
    send = sent()

    listing = Client().get(reverse("archive"))
    page = Client().get(reverse("archive-message", args=[send.campaign_id]))

    assert listing.status_code == 200
    assert "Nothing has been published yet." in listing.content.decode()
    assert page.status_code == 404


def test_a_published_campaign_is_listed_and_shown_without_personal_data() -> None:
    send = sent(web_archive=True)

    listing = Client().get(reverse("archive")).content.decode()
    response = Client().get(reverse("archive-message", args=[send.campaign_id]))
    page = response.content.decode()

    assert f'href="/archive/{send.campaign_id}/"' in listing
    assert "News for" in listing and "Ada" not in listing
    assert response.status_code == 200
    assert "Hello <strong></strong> at " in page
    assert "Ada" not in page and "ada@example.com" not in page
    assert "/u/" not in page  # no working unsubscribe link for anyone
