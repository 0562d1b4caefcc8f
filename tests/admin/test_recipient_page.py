"""A recipient's page: lists, consent and its history, deliveries latest first, attributes as a
table, and the address exactly as stored in the title."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, Recipient, Send, Subscription
from campaigns.selectors import recipients as selectors
from campaigns.services.audiences import (
    recipient_status_change,
    recipient_unsubscribe_from_send_lists,
    subscription_status_change,
)
from tests.admin.helpers import user_with_roles
from tests.factories import AudienceFactory, CampaignFactory, RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def page_of(client: Client, recipient: Recipient) -> str:
    response = client.get(reverse("admin:campaigns_recipient_change", args=[recipient.pk]))
    assert response.status_code == 200
    return response.content.decode()


def deliveries_for(recipient: Recipient, count: int) -> list[Send]:
    campaign = CampaignFactory.create(name="Spring newsletter")
    sends = []
    now = timezone.now()
    for n in range(count):
        send = Send.objects.create(campaign=campaign, occurrence_key=f"slot-{n}")
        Delivery.objects.create(
            send=send,
            recipient=recipient,
            status=Delivery.Status.SENT,
            sent_at=now - timedelta(days=count - n),
        )
        sends.append(send)
    return sends


def test_the_page_lists_subscriptions_with_status_and_since(auditor: Client) -> None:
    recipient = RecipientFactory.create(email="dana@example.com")
    SubscriptionFactory.create(recipient=recipient, audience=AudienceFactory.create(name="News"))
    SubscriptionFactory.create(
        recipient=recipient,
        audience=AudienceFactory.create(name="Offers"),
        status=Subscription.Status.UNSUBSCRIBED,
    )
    page = page_of(auditor, recipient)
    section = page.split('id="recipient-subscriptions"')[1]
    assert "News" in section and "Offers" in section
    assert "Subscribed" in section and "Unsubscribed" in section
    assert "UTC" in section  # "since" carries its zone


def test_deliveries_are_latest_first_and_link_to_their_send(auditor: Client) -> None:
    recipient = RecipientFactory.create()
    sends = deliveries_for(recipient, 3)
    page = page_of(auditor, recipient)
    section = page.split('id="recipient-deliveries"')[1]
    links = [reverse("admin:campaigns_send_change", args=[send.pk]) + '"' for send in sends]
    positions = [section.index(link) for link in links]
    assert positions == sorted(positions, reverse=True)  # the newest send comes first
    for send in sends:
        assert reverse("admin:campaigns_send_change", args=[send.pk]) in section
    assert "Spring newsletter" in section and 'id="recipient-deliveries-all"' not in section


def test_past_the_limit_the_page_links_to_all_deliveries_of_the_address(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "RECIPIENT_PAGE_DELIVERIES", 2)
    monkeypatch.setattr(
        selectors.recipient_deliveries, "__kwdefaults__", {"limit": 2}, raising=False
    )
    recipient = RecipientFactory.create(email="many@example.com")
    sends = deliveries_for(recipient, 3)
    page = page_of(auditor, recipient)
    section = page.split('id="recipient-deliveries"')[1]
    oldest = reverse("admin:campaigns_send_change", args=[sends[0].pk]) + '"'
    assert oldest not in section  # the oldest is past the limit
    assert 'id="recipient-deliveries-all"' in section
    listing = reverse("admin:campaigns_delivery_changelist") + "?q=many%40example.com"
    assert listing in section
    assert auditor.get(listing).status_code == 200


def test_a_suppressed_address_shows_why_and_the_history(client: Client) -> None:
    approver = user_with_roles("approver", first_name="Dana", last_name="Scully")
    recipient = RecipientFactory.create()
    subscription = SubscriptionFactory.create(recipient=recipient)
    recipient_status_change(
        recipient=recipient, status="unsubscribed", by=approver, reason="Asked by phone"
    )
    subscription_status_change(subscription=subscription, status="subscribed", by=None)
    client.force_login(approver)
    page = page_of(client, recipient)
    consent = page.split('id="recipient-consent"')[1].split('id="recipient-subscriptions"')[0]
    assert "No mail goes to this address: unsubscribed." in consent
    assert "Asked by phone" in consent and "by Dana Scully" in consent
    assert "Recipient status changed by Dana Scully" in consent
    assert "Put back on “" in consent and "” by the system" in consent
    assert "active → unsubscribed" in consent


def test_a_bounced_address_without_an_entry_shows_the_servers_answer(auditor: Client) -> None:
    recipient = RecipientFactory.create(status=Recipient.Status.BOUNCED)
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    Delivery.objects.create(
        send=send, recipient=recipient, status="failed", last_error="550 5.1.1 no such user"
    )
    consent = page_of(auditor, recipient).split('id="recipient-suppression"')[1][:400]
    assert "550 5.1.1 no such user" in consent


def test_attributes_read_as_a_table_not_json(auditor: Client) -> None:
    recipient = RecipientFactory.create(
        attributes={"city": "Oslo", "plan": {"tier": "gold"}, "tags": ["a", "b"]}
    )
    page = page_of(auditor, recipient)
    table = page.split('id="recipient-attributes"')[1].split("</table>")[0]
    assert "<th" in table and "city" in table and "Oslo" in table
    assert "tier: gold" in table and "a, b" in table
    assert '{"city"' not in page and "{&quot;city" not in page


def test_the_title_keeps_the_address_as_stored(auditor: Client) -> None:
    recipient = RecipientFactory.create(email="dana.o'neil@example.com")
    page = page_of(auditor, recipient)
    header = page.split("<h1")[1].split("</h1>")[0]
    assert "dana.o&#x27;neil@example.com" in header
    assert "Dana.o" not in header
    assert "Recipients" in header  # the section names are still capitalised


def test_an_editor_still_edits_attributes_as_json() -> None:
    client = Client()
    client.force_login(user_with_roles("editor"))
    recipient = RecipientFactory.create(attributes={"city": "Oslo"})
    url = reverse("admin:campaigns_recipient_change", args=[recipient.pk])
    page = client.get(url).content.decode()
    assert "Edit the attributes (advanced)" in page and "(JSON)" not in page
    form = {"first_name": "Ada", "last_name": "L", "attributes": '{"city": "Lima"}'}
    assert client.post(url, form).status_code == 302
    recipient.refresh_from_db()
    assert recipient.attributes == {"city": "Lima"} and recipient.first_name == "Ada"


def test_an_import_that_re_subscribed_the_person_is_in_their_history(auditor: Client) -> None:
    from django.db import connection

    from campaigns.models import AuditEntry, ImportJob

    if connection.vendor != "postgresql":
        pytest.skip("the ids are searched as a JSON array on PostgreSQL")
    recipient = RecipientFactory.create()
    other = RecipientFactory.create()
    job = ImportJob.objects.create(file="imports/back.csv", original_name="back.csv")
    AuditEntry.objects.create(
        action=AuditEntry.Action.RESUBSCRIBED,
        import_job=job,
        changes={"resubscribed": 1, "recipient_ids": [recipient.pk], "audience": None},
    )
    history = page_of(auditor, recipient).split('id="recipient-history"')[1]
    assert "Opted-out recipients re-subscribed by the system" in history
    assert 'id="recipient-history"' not in page_of(auditor, other)


def test_an_entry_naming_a_person_in_its_changes_links_to_them() -> None:
    """Writers that name the recipient only in the changes (an unsubscribe link, say) still
    put the entry on the person's page; a stale id links nobody and fails nothing."""
    from campaigns.models import AuditEntry
    from campaigns.services.audit import audit_record

    recipient = RecipientFactory.create()
    entry = audit_record(
        action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
        actor=None,
        changes={"recipient": recipient.pk, "from": "active", "to": "unsubscribed"},
    )
    stale = audit_record(
        action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
        actor=None,
        changes={"recipient": recipient.pk + 1000},
    )
    assert entry.recipient_id == recipient.pk and stale.recipient_id is None


def test_leaving_her_only_list_reads_as_on_no_list_with_the_day_she_left(auditor: Client) -> None:
    recipient = RecipientFactory.create(email="ada@example.com")
    readers = AudienceFactory.create(name="Newsletter readers")
    joined = timezone.now() - timedelta(days=300)
    subscription = SubscriptionFactory.create(recipient=recipient, audience=readers)
    Subscription.objects.filter(pk=subscription.pk).update(created_at=joined)
    send = Send.objects.create(
        campaign=CampaignFactory.create(audiences=[readers]), occurrence_key="once"
    )
    assert recipient_unsubscribe_from_send_lists(recipient_id=recipient.pk, send_id=send.pk) == 1
    page = page_of(auditor, recipient)
    consent = page.split('id="recipient-consent"')[1].split('id="recipient-subscriptions"')[0]
    assert "Active, but on no list now: no campaign reaches this address" in consent
    assert "Left “Newsletter readers” through the unsubscribe link" in consent
    assert "Recipient status changed" not in consent
    lists = page.split('id="recipient-subscriptions"')[1].split('id="recipient-deliveries"')[0]
    assert "Unsubscribed on " + timezone.localtime().strftime("%-d %b %Y") in lists
    assert timezone.localtime(joined).strftime("%-d %b %Y") not in lists


def test_an_active_person_on_lists_reads_how_many(auditor: Client) -> None:
    recipient = RecipientFactory.create()
    for name in ("News", "Offers"):
        SubscriptionFactory.create(recipient=recipient, audience=AudienceFactory.create(name=name))
    consent = page_of(auditor, recipient).split('id="recipient-suppression"')[1][:200]
    assert "Active: receives the campaigns of 2 lists below." in consent


def test_the_subscriptions_list_says_subscribed_since_or_unsubscribed_on(auditor: Client) -> None:
    recipient = RecipientFactory.create(email="bo@example.com")
    SubscriptionFactory.create(recipient=recipient, audience=AudienceFactory.create(name="News"))
    SubscriptionFactory.create(
        recipient=recipient,
        audience=AudienceFactory.create(name="Offers"),
        status=Subscription.Status.UNSUBSCRIBED,
    )
    listing = auditor.get(reverse("admin:campaigns_subscription_changelist"))
    text = listing.content.decode()
    assert "Subscribed since " in text and "Unsubscribed on " in text


def test_a_delivery_names_its_send_by_its_occurrence_not_its_id(auditor: Client) -> None:
    recipient = RecipientFactory.create()
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    Delivery.objects.create(send=send, recipient=recipient, status=Delivery.Status.SENT)
    section = page_of(auditor, recipient).split('id="recipient-deliveries"')[1]
    assert ">One-off send</a>" in section and "Send #" not in section
