"""The public unsubscribe endpoint: GET asks, POST acts (RFC 8058 one-click), tokens are signed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from campaigns.models import Recipient, Subscription
from campaigns.services.audiences import unsubscribe_token_make
from tests.factories import RecipientFactory, SubscriptionFactory

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
