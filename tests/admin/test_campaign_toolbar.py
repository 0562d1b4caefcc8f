"""The campaign page's toolbar and confirmation pages, as each role gets them."""

from __future__ import annotations

from datetime import time

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries, Settings

from campaigns.models import Audience, AuditEntry, Campaign, Recipient, SeedList, Send
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory, RecipientFactory, audience_with

pytestmark = pytest.mark.django_db


def logged_in(*roles: str, **fields: object) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles, **fields))
    return client


def url(name: str, campaign: Campaign) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])


def ready(**fields: object) -> Campaign:
    return CampaignFactory.create(
        audiences=[audience_with(2)], schedule_kind="daily", schedule_time=time(9), **fields
    )


def test_an_editor_sees_send_and_approve_greyed_out_with_the_reason() -> None:
    campaign = ready()
    page = logged_in("editor").get(url("change", campaign)).content.decode()
    assert url("send_now", campaign) not in page and url("approve", campaign) not in page
    assert 'data-unavailable="Only approvers can send this"' in page
    assert 'data-unavailable="Only approvers can approve this"' in page
    assert url("duplicate", campaign) in page and url("send_test_to_me", campaign) in page


def test_a_sent_campaign_is_read_only_and_offers_duplicate() -> None:
    campaign = ready(status=Campaign.Status.SENT)
    client = logged_in("editor", "approver")
    page = client.get(url("change", campaign)).content.decode()
    assert "Already sent: duplicate it to send again" in page
    assert 'id="campaign-read-only"' in page and 'name="_save"' not in page
    response = client.post(url("change", campaign), campaign_form_data(campaign, name="Renamed"))
    assert response.status_code == 403
    response = client.post(url("duplicate", campaign))
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response["Location"] == url("change", copy)
    assert copy.status == Campaign.Status.DRAFT


def test_send_now_confirms_with_the_count_audiences_and_channel() -> None:
    campaign = ready()
    first = campaign.audiences.get().subscriptions.first()
    assert first is not None
    Recipient.objects.filter(pk=first.recipient_id).update(status=Recipient.Status.UNSUBSCRIBED)
    client = logged_in("approver")
    page = client.get(url("send_now", campaign)).content.decode()
    assert 'data-count="1"' in page and "Send to 1 recipient now" in page
    assert f"{campaign.audiences.get().name} — 2 subscribed" in page
    assert "SMTP relay" in page
    assert campaign.status == Campaign.Status.DRAFT and not AuditEntry.objects.exists()


def test_send_now_says_it_is_sending_and_links_to_its_send() -> None:
    campaign = CampaignFactory.create(name="<b>Spring</b>", audiences=[audience_with(1)])
    response = logged_in("approver").post(url("send_now", campaign), follow=True)
    page = response.content.decode()
    follow = reverse("admin:campaigns_campaign_send_for", args=[campaign.pk, "once"])
    assert f'href="{follow}"' in page and "&lt;b&gt;Spring&lt;/b&gt;" in page
    send = Send.objects.create(campaign=campaign, occurrence_key="once")
    response = logged_in("auditor").get(follow)
    assert response["Location"] == reverse("admin:campaigns_send_change", args=[send.pk])


def test_a_confirmation_page_refuses_what_the_user_may_not_do() -> None:
    campaign = ready(status=Campaign.Status.SENT)
    page = logged_in("approver").get(url("send_now", campaign)).content.decode()
    assert "This cannot be done now: Already sent." in page
    assert 'id="confirm-submit"' not in page


def test_cancel_confirms_with_the_rows_not_sent_and_skips_them() -> None:
    campaign = ready(status=Campaign.Status.SENDING)
    send = Send.objects.create(campaign=campaign, occurrence_key="once")
    for subscription in campaign.audiences.get().subscriptions.all():
        send.deliveries.create(recipient_id=subscription.recipient_id)
    client = logged_in("approver")
    page = client.get(url("cancel_campaign", campaign)).content.decode()
    assert 'data-count="2"' in page
    client.post(url("cancel_campaign", campaign))
    send.refresh_from_db()
    assert send.status == Send.Status.CANCELLED and send.skipped_count == 2


def test_a_test_goes_to_each_seed_address_personalised_as_a_chosen_recipient() -> None:
    campaign = ready()
    seeds = SeedList.objects.create(name="Inboxes", addresses="a@example.com\nb@example.com")
    RecipientFactory.create(email="ada@example.com")
    client = logged_in("editor")
    response = client.post(
        url("send_test", campaign),
        {"to": "seeds", "seed_list": seeds.pk, "as": "recipient", "recipient": "Ada@Example.com"},
    )
    assert "test_task=" in response["Location"]
    entries = AuditEntry.objects.filter(action="test_sent").order_by("id")
    assert [(e.changes["to"], e.changes["personalised_as"]) for e in entries] == [
        ("a@example.com", "ada@example.com"),
        ("b@example.com", "ada@example.com"),
    ]
    response = client.post(
        url("send_test", campaign), {"to": "me", "as": "recipient", "recipient": "x@y.org"}
    )
    assert response.status_code == 302 and entries.count() == 2


def test_a_seed_list_refuses_a_bad_line_by_its_number() -> None:
    client = logged_in("editor")
    response = client.post(
        reverse("admin:campaigns_seedlist_add"),
        {"name": "QA", "addresses": "qa@example.com\nnot an address\n"},
    )
    assert "Line 2" in response.content.decode() and not SeedList.objects.exists()


def test_audiences_list_their_subscribers_in_one_query_for_the_page(
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    cache.clear()
    for size in (1, 2, 3):
        audience_with(size)
    client = logged_in("editor")
    client.get(reverse("admin:campaigns_audience_changelist"))  # warm the session and cache
    cache.clear()
    with django_assert_max_num_queries(12) as context:
        page = client.get(reverse("admin:campaigns_audience_changelist")).content.decode()
    grouped = [q for q in context.captured_queries if "GROUP BY" in q["sql"]]
    assert len(grouped) == 1 and ">3<" in page.replace(" ", "")
    form = client.get(reverse("admin:campaigns_campaign_add")).content.decode()
    name = Audience.objects.order_by("id").last().name  # type: ignore[union-attr]
    assert f"{name} — 3 subscribed" in form


def test_the_form_labels_its_bodies_and_explains_occurrence_and_time_zone(
    settings: Settings,
) -> None:
    settings.TIME_ZONE = "Europe/London"
    page = logged_in("editor").get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert "Body format" in page and "Plain-text version" in page and "Occurrence" in page
    assert "Leave blank to generate it from the content" in page
    assert "never sends on its own" in page
    assert "Times are in Europe/London." in page
