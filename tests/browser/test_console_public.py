"""What a recipient and an editor see at the edges: a broken tag refused, the unsubscribe page.

A live Django server and Chromium only (no worker, no SMTP): the campaign form refuses a tag
left open and a field written with one brace, on the field, with its position; a real
unsubscribe link, made as the delivery loop makes it, opens on a phone-sized screen, names the
address, the list and the sender, and unsubscribes from everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Recipient, Send, Subscription
from campaigns.services.audiences import UNSUBSCRIBE_REASONS, UnsubscribeScope, unsubscribe_url
from tests.browser.support import login, tab
from tests.factories import (
    AudienceFactory,
    CampaignFactory,
    RecipientFactory,
    SubscriptionFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

# The text's colour as sRGB (Unfold's theme writes colours in oklch), drawn on a canvas.
RGB_OF_TEXT = """node => {
  const canvas = document.createElement("canvas").getContext("2d");
  canvas.fillStyle = getComputedStyle(node).color;
  canvas.fillRect(0, 0, 1, 1);
  return Array.from(canvas.getImageData(0, 0, 1, 1).data.slice(0, 3));
}"""
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def test_a_broken_tag_is_refused_on_its_field_with_its_position(
    live_server: Any, page: Any, shots: Callable[[Any, str], None]
) -> None:
    UserFactory.create(username="dana", is_superuser=True, is_staff=True)
    campaign = CampaignFactory.create(name="Spring newsletter", text_body="Hi there")
    login(page, live_server.url, "dana")
    change = f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/"

    for typed, told in (
        (
            "Hi {{ recipient.first_name ",
            "Text body: line 1, column 4: “{{ recipient.first_name” is not closed — add “}}”",
        ),
        (
            "Hi {recipient.first_name}",
            "Text body: line 1, column 4: “{recipient.first_name}” is not a field — "
            "write “{{ recipient.first_name }}”",
        ),
    ):
        page.goto(change)
        tab(page, "Text & web version")
        page.fill("textarea[name=text_body]", typed)
        page.locator("input[name=_continue], button[name=_continue]").first.click()
        error = page.locator("#id_text_body_error")
        error.wait_for()
        assert told in error.inner_text()
        red, green, blue = error.evaluate(RGB_OF_TEXT)
        assert red > 150 and green < 100 and blue < 100  # shown in red
        assert Campaign.objects.get(pk=campaign.pk).text_body == "Hi there"  # nothing saved
        if typed.startswith("Hi {{"):
            shots(page, "campaign-broken-tag")


def test_the_unsubscribe_page_on_a_phone(
    live_server: Any,
    new_page: Callable[..., Any],
    shots: Callable[[Any, str], None],
    settings: Settings,
) -> None:
    settings.OPSDASH_SENDER_NAME = "Northwind Books"
    weekly = AudienceFactory.create(name="Weekly news")
    offers = AudienceFactory.create(name="Offers and events")
    ada = RecipientFactory.create(email="ada.lovelace.reader@example.com")
    SubscriptionFactory.create(recipient=ada, audience=weekly)
    SubscriptionFactory.create(recipient=ada, audience=offers)
    send = Send.objects.create(
        campaign=CampaignFactory.create(audiences=[weekly]), occurrence_key="manual:1"
    )
    # The link as the delivery loop writes it into the message, on the live server.
    link = urlparse(unsubscribe_url(recipient_id=ada.pk, send_id=send.pk)).path
    phone = new_page(**PHONE)

    phone.goto(f"{live_server.url}{link}")

    text = phone.locator("body").inner_text()
    assert "Northwind Books" in text
    assert "ada.lovelace.reader@example.com" in text
    assert "Weekly news" in text
    assert phone.title() == "Unsubscribe · Northwind Books"
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    for choice in ("Unsubscribe from Weekly news", "Unsubscribe from everything"):
        box = phone.get_by_role("button", name=choice).bounding_box()
        assert box["height"] >= 44 and box["width"] >= 300  # a thumb's tap target
    shots(phone, "unsubscribe-phone")

    phone.get_by_role("button", name="Unsubscribe from everything").tap()

    phone.get_by_role("heading", name="You are unsubscribed from everything").wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shots(phone, "unsubscribe-done-phone")
    ada.refresh_from_db()
    assert ada.status == Recipient.Status.UNSUBSCRIBED
    assert not ada.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).exists()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED)
    assert entry.send == send
    assert entry.changes["reason"] == UNSUBSCRIBE_REASONS[UnsubscribeScope.EVERYTHING]
