"""The public unsubscribe page: GET shows, POST acts (RFC 8058 one-click), tokens are signed."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from django.core import signing
from django.test import Client
from pytest_django import Settings

from campaigns.models import Audience, AuditEntry, Recipient, Send, Subscription
from campaigns.services.audiences import (
    ONE_CLICK_REASON,
    UNSUBSCRIBE_REASONS,
    UnsubscribeScope,
    unsubscribe_token_make,
    unsubscribe_url,
)
from tests.factories import AudienceFactory, CampaignFactory, RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def recipient() -> Recipient:
    recipient = RecipientFactory.create()
    SubscriptionFactory.create(recipient=recipient)
    SubscriptionFactory.create(recipient=recipient)
    return recipient


def url_for(recipient: Recipient, send_id: int = 7) -> str:
    return f"/u/{unsubscribe_token_make(recipient_id=recipient.pk, send_id=send_id)}/"


def still_subscribed(recipient: Recipient) -> bool:
    recipient.refresh_from_db()
    subscribed = recipient.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).count()
    return recipient.status == Recipient.Status.ACTIVE and subscribed == 2


def test_get_shows_a_confirmation_and_never_unsubscribes(recipient: Recipient) -> None:
    response = Client().get(url_for(recipient))

    assert response.status_code == 200
    assert b'method="post"' in response.content
    assert still_subscribed(recipient)


def test_one_click_post_unsubscribes_without_cookies_or_csrf_token(recipient: Recipient) -> None:
    client = Client(enforce_csrf_checks=True)  # as a mail provider's server would post

    response = client.post(url_for(recipient), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.UNSUBSCRIBED
    assert not recipient.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).exists()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # signature changed
        lambda token: token.replace(token.split(":")[0], "999999-7", 1),  # ids changed
        lambda token: token.split(":")[0],  # signature removed
        lambda token: "garbage",
    ],
)
def test_a_tampered_token_gets_a_4xx_and_changes_nothing(
    recipient: Recipient, tamper: Callable[[str], str]
) -> None:
    token = unsubscribe_token_make(recipient_id=recipient.pk, send_id=7)
    client = Client(enforce_csrf_checks=True)

    for response in (client.get(f"/u/{tamper(token)}/"), client.post(f"/u/{tamper(token)}/")):
        assert 400 <= response.status_code < 500

    assert still_subscribed(recipient)


def test_a_token_for_another_recipient_does_not_reach_this_one(recipient: Recipient) -> None:
    other = RecipientFactory.create()

    Client().post(url_for(other))

    assert still_subscribed(recipient)
    other.refresh_from_db()
    assert other.status == Recipient.Status.UNSUBSCRIBED


def test_a_replayed_post_is_harmless(recipient: Recipient) -> None:
    client = Client(enforce_csrf_checks=True)

    first = client.post(url_for(recipient))
    again = client.post(url_for(recipient))

    assert first.status_code == again.status_code == 200
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.UNSUBSCRIBED


def test_other_methods_are_refused(recipient: Recipient) -> None:
    assert Client().put(url_for(recipient)).status_code == 405
    assert still_subscribed(recipient)


# -- the page a person sees: their address, the message's list, two choices ----------------------


@pytest.fixture
def sent() -> tuple[Recipient, Send, Audience, Audience]:
    """Ada is on Weekly news (the list a send went to) and on Offers (another list)."""
    weekly = AudienceFactory.create(name="Weekly news")
    offers = AudienceFactory.create(name="Offers")
    ada = RecipientFactory.create(email="ada@example.com")
    SubscriptionFactory.create(recipient=ada, audience=weekly)
    SubscriptionFactory.create(recipient=ada, audience=offers)
    campaign = CampaignFactory.create(audiences=[weekly])
    send = Send.objects.create(campaign=campaign, occurrence_key="manual:1")
    return ada, send, weekly, offers


def link_of(recipient: Recipient, send: Send) -> str:
    """The link exactly as the delivery loop writes it into a message."""
    return urlparse(unsubscribe_url(recipient_id=recipient.pk, send_id=send.pk)).path


def subscribed_to(recipient: Recipient) -> set[str]:
    return set(
        recipient.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).values_list(
            "audience__name", flat=True
        )
    )


def test_the_page_names_the_address_the_list_and_the_sender(
    sent: tuple[Recipient, Send, Audience, Audience], settings: Settings
) -> None:
    ada, send, _weekly, _offers = sent
    settings.OPSDASH_SENDER_NAME = "Northwind Books"

    page = Client().get(link_of(ada, send)).content.decode()

    assert "<title>Unsubscribe · Northwind Books</title>" in page
    assert '<header class="sender"><p>Northwind Books</p></header>' in page
    assert "<strong>ada@example.com</strong>" in page
    assert "on the list <strong>Weekly news</strong>" in page
    assert 'name="scope" value="lists">Unsubscribe from Weekly news</button>' in page
    assert 'name="scope" value="everything">Unsubscribe from everything</button>' in page
    assert "you stay on Offers" in page


def test_the_page_is_self_contained_and_made_for_phones(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, _weekly, _offers = sent

    response = Client().get(link_of(ada, send))
    page = response.content.decode()

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<style>" in page
    for outside in ("<script", "<link", "/static/", "/admin/", "http://", "https://"):
        assert outside not in page
    assert "no-store" in response["Cache-Control"]


def test_unsubscribing_from_the_list_keeps_the_other_lists_and_is_audited(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, weekly, _offers = sent

    response = Client(enforce_csrf_checks=True).post(link_of(ada, send), {"scope": "lists"})

    page = response.content.decode()
    assert "You are unsubscribed from Weekly news" in page
    assert "You are still on Offers." in page
    assert 'value="everything"' in page  # the way to leave everything after all
    ada.refresh_from_db()
    assert ada.status == Recipient.Status.ACTIVE
    assert subscribed_to(ada) == {"Offers"}
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.send, entry.campaign) == (None, send, send.campaign)
    assert entry.changes == {
        "recipient": ada.pk,
        "audience": weekly.pk,
        "subscription": {"from": "subscribed", "to": "unsubscribed"},
        "reason": UNSUBSCRIBE_REASONS[UnsubscribeScope.LISTS],
    }


def test_unsubscribing_from_everything_suppresses_the_address_and_is_audited(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, _weekly, _offers = sent

    response = Client(enforce_csrf_checks=True).post(link_of(ada, send), {"scope": "everything"})

    page = response.content.decode()
    assert "You are unsubscribed from everything" in page
    assert "<strong>ada@example.com</strong> will not receive any more email" in page
    ada.refresh_from_db()
    assert ada.status == Recipient.Status.UNSUBSCRIBED
    assert subscribed_to(ada) == set()
    entry = AuditEntry.objects.get()
    assert entry.send == send
    assert entry.changes == {
        "recipient": ada.pk,
        "from": "active",
        "to": "unsubscribed",
        "reason": UNSUBSCRIBE_REASONS[UnsubscribeScope.EVERYTHING],
    }


def test_one_click_still_means_everything_and_a_replay_writes_no_second_entry(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, _weekly, _offers = sent
    client = Client(enforce_csrf_checks=True)

    for _ in range(2):
        response = client.post(link_of(ada, send), {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200

    ada.refresh_from_db()
    assert ada.status == Recipient.Status.UNSUBSCRIBED
    assert subscribed_to(ada) == set()
    assert [entry.changes["reason"] for entry in AuditEntry.objects.all()] == [ONE_CLICK_REASON]


def test_a_person_already_unsubscribed_is_told_so_and_offered_nothing(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, _weekly, _offers = sent
    Recipient.objects.filter(pk=ada.pk).update(status=Recipient.Status.UNSUBSCRIBED)

    page = Client().get(link_of(ada, send)).content.decode()

    assert "You are already unsubscribed" in page
    assert "<button" not in page


def test_a_person_who_left_the_list_is_offered_everything_only(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, send, weekly, _offers = sent
    Subscription.objects.filter(recipient=ada, audience=weekly).update(
        status=Subscription.Status.UNSUBSCRIBED
    )

    page = Client().get(link_of(ada, send)).content.decode()

    assert "You have already left <strong>Weekly news</strong>" in page
    assert 'value="lists"' not in page
    assert 'value="everything"' in page


@pytest.mark.parametrize(
    ("make_link", "words"),
    [
        (lambda ada, send: f"/u/{unsubscribe_token_make(recipient_id=0, send_id=0)}/", "test"),
        (lambda ada, send: link_of(RecipientFactory.build(pk=999_999), send), "no longer"),
    ],
)
def test_a_link_that_reaches_nobody_says_so_and_changes_nothing(
    sent: tuple[Recipient, Send, Audience, Audience],
    make_link: Callable[[Recipient, Send], str],
    words: str,
) -> None:
    ada, send, _weekly, _offers = sent

    response = Client().get(make_link(ada, send))

    assert response.status_code == 404
    assert words in response.content.decode()
    assert "Nothing was changed." in response.content.decode()
    assert subscribed_to(ada) == {"Weekly news", "Offers"}


def test_links_in_messages_already_sent_keep_working(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    """The token format never changed: "<recipient>-<send>" signed with the same salt."""
    ada, send, _weekly, _offers = sent
    token = signing.Signer(salt="opsdash.unsubscribe.v1").sign(f"{ada.pk}-{send.pk}")

    page = Client().get(f"/u/{token}/").content.decode()

    assert "Unsubscribe from Weekly news" in page


def test_a_post_for_a_test_message_link_answers_but_changes_nothing(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, _send, _weekly, _offers = sent
    token = unsubscribe_token_make(recipient_id=0, send_id=0)  # as testmail writes it

    response = Client(enforce_csrf_checks=True).post(f"/u/{token}/")

    assert response.status_code == 200  # a mail program's one-click POST is still answered
    assert "test message" in response.content.decode()
    assert not AuditEntry.objects.exists()
    assert subscribed_to(ada) == {"Weekly news", "Offers"}


def test_leaving_a_list_one_is_not_on_changes_nothing_and_says_so(
    sent: tuple[Recipient, Send, Audience, Audience],
) -> None:
    ada, _send, _weekly, _offers = sent
    other = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="manual:2")

    response = Client().post(link_of(ada, other), {"scope": "lists"})

    assert "Nothing to change" in response.content.decode()
    assert not AuditEntry.objects.exists()
    assert subscribed_to(ada) == {"Weekly news", "Offers"}


def test_list_and_sender_names_are_escaped(
    sent: tuple[Recipient, Send, Audience, Audience], settings: Settings
) -> None:
    ada, send, weekly, _offers = sent
    Audience.objects.filter(pk=weekly.pk).update(name="<b>Weekly</b>")
    settings.OPSDASH_SENDER_NAME = "A & B <Books>"

    page = Client().get(link_of(ada, send)).content.decode()

    assert "&lt;b&gt;Weekly&lt;/b&gt;" in page and "<b>Weekly" not in page
    assert "A &amp; B &lt;Books&gt;" in page
