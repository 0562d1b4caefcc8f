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


@pytest.mark.parametrize("term", ["@example.org", "example.org", " @Example.ORG "])
def test_a_domain_finds_everyone_at_it_and_nobody_else(auditor_client: Client, term: str) -> None:
    for email in ("ada@example.org", "bob@example.org", "eve@example.com", "ann@sub.example.org"):
        RecipientFactory.create(email=email)
    page = auditor_client.get("/admin/campaigns/recipient/", {"q": term}).content.decode()
    assert "ada@example.org" in page and "bob@example.org" in page
    assert "eve@example.com" not in page and "ann@sub.example.org" not in page


def test_a_word_that_is_neither_an_address_nor_a_domain_finds_nothing(
    auditor_client: Client,
) -> None:
    RecipientFactory.create(email="ada@example.org", first_name="ada")
    page = auditor_client.get("/admin/campaigns/recipient/", {"q": "ada"}).content.decode()
    assert "ada@example.org" not in page
    assert "“ada” is neither an address nor a domain" in page  # said, not a silent "0 results"


@pytest.mark.parametrize("url", ["/admin/campaigns/recipient/", "/admin/campaigns/delivery/"])
def test_the_search_help_stays_in_sight_below_the_box(auditor_client: Client, url: str) -> None:
    page = auditor_client.get(url).content.decode()
    help_line = page.split('id="search-help"')[1].split("</p>")[0]
    assert "ada@example.com" in help_line and "finds nothing" in help_line


@pytest.mark.parametrize("url", ["/admin/campaigns/subscription/", "/admin/campaigns/delivery/"])
def test_part_of_an_address_says_why_it_finds_nothing(auditor_client: Client, url: str) -> None:
    page = auditor_client.get(url, {"q": "alice"}).content.decode()
    assert "“alice” is not a whole address, so the search finds nothing" in page


def test_a_whole_address_or_domain_shows_no_hint(auditor_client: Client) -> None:
    for term in ("ada@example.org", "@example.org"):
        page = auditor_client.get("/admin/campaigns/recipient/", {"q": term}).content.decode()
        assert "neither an address nor a domain" not in page


def test_the_domain_search_reads_the_domain_index() -> None:
    """The query the admin runs is spelled as the index, so PostgreSQL can use it."""
    from django.db import connection

    from campaigns.models import Recipient
    from campaigns.selectors.recipients import recipient_search_read, recipients_matching

    if connection.vendor != "postgresql":
        pytest.skip("expression index plans are PostgreSQL's")
    queryset = recipients_matching(Recipient.objects.all(), recipient_search_read("@example.org"))
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "recipient_email_domain_idx" in plan, plan
