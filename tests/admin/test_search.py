"""Changelists over big tables search by one exact address, whatever case staff type it in."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.admin.helpers import user_with_roles
from tests.factories import RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor_client(client: Client) -> Client:
    client.force_login(user_with_roles("auditor"))
    return client


@pytest.mark.parametrize(
    "url",
    ["/admin/campaigns/recipient/", "/admin/campaigns/subscription/", "/admin/campaigns/delivery/"],
)
def test_an_address_typed_in_any_case_finds_exactly_its_rows(
    auditor_client: Client, url: str
) -> None:
    from campaigns.models import Delivery, Send
    from tests.factories import CampaignFactory

    wanted = SubscriptionFactory.create(
        recipient=RecipientFactory.create(email="ada@example.com")
    ).recipient
    other = SubscriptionFactory.create(
        recipient=RecipientFactory.create(email="adam@example.com")
    ).recipient
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    for recipient in (wanted, other):
        Delivery.objects.create(send=send, recipient=recipient)

    page = auditor_client.get(url, {"q": "  Ada@Example.COM "}).content.decode()
    assert "ada@example.com" in page
    assert "adam@example.com" not in page
