"""The toolbar a user sees on a campaign (what its status and their role allow, and why the
rest is out of reach), Duplicate, and a Save that changes nothing in meaning."""

from __future__ import annotations

from datetime import time

import pytest
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.selectors.audit import Detail, audit_details
from campaigns.services import campaigns as services
from campaigns.services.controls import Control, campaign_offers
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


def toolbar(campaign: Campaign, *roles: str, superuser: bool = False) -> dict[Control, str]:
    user = UserFactory.create(is_superuser=True) if superuser else user_with_roles(*roles)
    return {offer.control: offer.reason for offer in campaign_offers(campaign=campaign, user=user)}


def ready(**fields: object) -> Campaign:
    return CampaignFactory.create(
        audiences=[audience_with(1)], schedule_kind="daily", schedule_time=time(9), **fields
    )


def test_an_editor_sees_why_they_cannot_send_or_approve() -> None:
    offers = toolbar(ready(), "editor")
    assert offers[Control.SEND_NOW] == "Only approvers can send this"
    assert offers[Control.SCHEDULE] == "Only approvers can schedule this"
    assert offers[Control.APPROVE] == "Only approvers can approve this"
    assert offers[Control.SEND_TEST] == "" and offers[Control.DUPLICATE] == ""
    assert Control.UNSCHEDULE not in offers and Control.CANCEL not in offers


def test_an_approver_may_send_a_ready_draft_but_not_test_or_duplicate_it() -> None:
    offers = toolbar(ready(), "approver")
    assert offers[Control.SEND_NOW] == offers[Control.SCHEDULE] == offers[Control.APPROVE] == ""
    assert offers[Control.SEND_TEST] == "Only editors can send test messages"
    assert offers[Control.DUPLICATE] == "Only editors can duplicate campaigns"


def test_with_four_eyes_an_unapproved_campaign_needs_approval(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign = ready()
    offers = toolbar(campaign, "approver")
    assert offers[Control.SEND_NOW] == offers[Control.SCHEDULE] == "Needs approval"
    services.campaign_approve(campaign=campaign, by=UserFactory.create(first_name="Dana"))
    offers = toolbar(campaign, "approver")
    assert offers[Control.SEND_NOW] == ""
    assert offers[Control.APPROVE] == "Already approved by Dana"


def test_a_draft_without_audience_or_schedule_says_what_to_choose() -> None:
    offers = toolbar(CampaignFactory.create(), superuser=True)
    assert offers[Control.SEND_NOW] == "Choose an audience first (Audience tab)"
    assert offers[Control.SCHEDULE] == "Choose when to send first (Schedule tab)"


def test_a_scheduled_campaign_offers_unschedule_not_schedule() -> None:
    offers = toolbar(ready(status=Campaign.Status.SCHEDULED), "approver")
    assert offers[Control.UNSCHEDULE] == "" and Control.SCHEDULE not in offers


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("sent", "Already sent: duplicate it to send again"),
        ("cancelled", "Cancelled: duplicate it to send again"),
        ("failed", "Its send failed: duplicate it to send again"),
    ],
)
def test_a_finished_campaign_says_to_duplicate_it(status: str, reason: str) -> None:
    offers = toolbar(ready(status=status), superuser=True)
    assert offers[Control.SEND_NOW] == reason
    assert offers[Control.DUPLICATE] == ""
    assert {Control.SCHEDULE, Control.UNSCHEDULE, Control.APPROVE, Control.CANCEL}.isdisjoint(
        offers
    )


def test_a_campaign_being_sent_offers_cancel() -> None:
    campaign = ready(status=Campaign.Status.SENDING)
    Send.objects.create(campaign=campaign, occurrence_key="once")
    offers = toolbar(campaign, "approver")
    assert offers[Control.CANCEL] == ""
    assert Control.SEND_NOW not in offers


def test_duplicate_makes_a_draft_with_content_and_audiences_but_no_schedule_or_approval() -> None:
    audience = audience_with(2)
    original = CampaignFactory.create(
        name="November newsletter",
        audiences=[audience],
        status=Campaign.Status.SENT,
        rate_limit_per_minute=120,
        schedule_kind="daily",
        schedule_time=time(9),
        approved_by=UserFactory.create(),
    )
    editor = UserFactory.create()
    copy = services.campaign_duplicate(campaign=original, by=editor)
    assert copy.pk != original.pk and copy.name == "Copy of November newsletter"
    assert (copy.subject, copy.text_body, copy.body, copy.from_email) == (
        original.subject,
        original.text_body,
        original.body,
        original.from_email,
    )
    assert list(copy.audiences.all()) == [audience] and copy.rate_limit_per_minute == 120
    assert copy.status == Campaign.Status.DRAFT and copy.schedule_kind == "manual"
    assert copy.approved_by is None and copy.periodic_task is None and copy.owner == editor
    entry = AuditEntry.objects.get(campaign=copy)
    assert entry.action == "created" and entry.actor == editor
    assert entry.changes["duplicated_from"] == "November newsletter"
    source = reverse("admin:campaigns_campaign_change", args=[original.pk])
    assert audit_details(entry) == [Detail("Duplicated from", "“November newsletter”", source)]


def test_a_browser_save_of_an_unchanged_form_logs_no_edit_and_keeps_the_approval() -> None:
    campaign = ready(text_body="Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}\n")
    services.campaign_approve(campaign=campaign, by=UserFactory.create())
    # What a browser posts back: CRLF line ends, a stray blank at a line's end.
    campaign.text_body = "Hi {{ recipient.first_name }}  \r\n{{ unsubscribe_url }}\r\n"
    services.campaign_save(campaign=campaign, by=UserFactory.create(), changed=["text_body"])
    campaign.refresh_from_db()
    assert campaign.approved_at is not None
    assert campaign.text_body == "Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}\n"
    assert not AuditEntry.objects.filter(campaign=campaign, action="edited").exists()


def test_a_real_change_next_to_line_end_noise_logs_only_that_field() -> None:
    campaign = ready(body="<p>Hi</p>\n<p>Bye</p>")
    campaign.body = "<p>Hi</p>\r\n<p>Bye</p>"
    campaign.subject = "Another subject"
    services.campaign_save(campaign=campaign, by=UserFactory.create(), changed=["body"])
    entry = AuditEntry.objects.get(campaign=campaign, action="edited")
    assert set(entry.changes) == {"subject"}


def test_a_recurring_campaign_offers_cancel_while_an_occurrence_runs() -> None:
    campaign = ready(status=Campaign.Status.SCHEDULED)
    assert Control.CANCEL not in toolbar(campaign, "approver")
    Send.objects.create(campaign=campaign, occurrence_key="daily:2026-11-25")
    offers = toolbar(campaign, "approver")
    assert offers[Control.CANCEL] == "" and offers[Control.UNSCHEDULE] == ""


def test_a_reader_gets_no_controls_rather_than_a_row_of_greyed_out_ones() -> None:
    assert toolbar(ready(), "auditor") == {}


def test_a_test_to_me_needs_an_address_on_the_account() -> None:
    offers = toolbar(ready(), "editor")
    assert offers[Control.SEND_TEST] == ""
    user = user_with_roles("editor", email="")
    offers = {o.control: o.reason for o in campaign_offers(campaign=ready(), user=user)}
    assert offers[Control.SEND_TEST] == "Add an email address to your account first"


def test_a_finished_campaign_tells_only_those_who_may_duplicate_to_do_so() -> None:
    campaign = ready(status=Campaign.Status.SENT)
    assert toolbar(campaign, "approver")[Control.SEND_NOW] == "Already sent"
    assert toolbar(campaign, "editor", "approver")[Control.SEND_NOW] == (
        "Already sent: duplicate it to send again"
    )


def test_a_permission_no_group_grants_is_named_as_a_permission() -> None:
    from django.contrib.auth.models import Group, Permission

    user_with_roles("editor")  # the role groups exist
    Group.objects.get(name="approver").permissions.remove(
        Permission.objects.get(codename="send_campaign")
    )
    offers = toolbar(ready(), "editor")
    assert offers[Control.SEND_NOW] == "Needs the send permission"
    assert offers[Control.APPROVE] == "Only approvers can approve this"
