"""An approval covers one version of a campaign: edits void it, and only drafts are edited."""

from __future__ import annotations

from datetime import time

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services import campaigns as services
from campaigns.services.campaigns import campaign_fire_scheduled
from campaigns.services.delivery import send_launch
from campaigns.services.transitions import IllegalTransition
from tests.factories import AudienceFactory, CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


def approved_and_scheduled(**fields: object) -> tuple[Campaign, User, User]:
    """A daily campaign saved by an editor, approved and scheduled by an approver."""
    editor, approver = UserFactory.create(), UserFactory.create()
    campaign = CampaignFactory.create(
        schedule_kind=Campaign.ScheduleKind.DAILY, schedule_time=time(9, 0), **fields
    )
    services.campaign_save(campaign=campaign, by=editor, audiences=[audience_with(1)])
    services.campaign_approve(campaign=campaign, by=approver)
    services.campaign_schedule(campaign=campaign, by=approver)
    return campaign, editor, approver


def last_edit(campaign: Campaign) -> dict[str, object]:
    entry = campaign.audit_entries.filter(action="edited").order_by("-id").first()
    assert entry is not None
    return dict(entry.changes)


def actions(campaign: Campaign) -> list[str]:
    return list(campaign.audit_entries.order_by("id").values_list("action", flat=True))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "New subject"),
        ("body", "<p>Other</p>"),
        ("schedule_crontab", "0 6 * * *"),
    ],
)
def test_editing_a_scheduled_campaign_returns_it_to_draft_and_voids_its_approval(
    settings: Settings, field: str, value: str
) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign, editor, _ = approved_and_scheduled()
    if field == "schedule_crontab":
        campaign.schedule_kind = Campaign.ScheduleKind.CRONTAB
    setattr(campaign, field, value)
    before = campaign.edited_at

    services.campaign_save(campaign=campaign, by=editor)

    stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.status == Campaign.Status.DRAFT
    assert stored.approved_at is None and stored.approved_by is None
    assert stored.edited_at is not None and before is not None and stored.edited_at > before
    assert stored.periodic_task is None and not PeriodicTask.objects.exists()
    assert actions(campaign)[-3:] == ["edited", "unscheduled", "approval_cleared"]
    assert last_edit(campaign)[field] == value


def test_changing_the_audiences_alone_counts_as_an_edit(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign, editor, _ = approved_and_scheduled()
    wider = AudienceFactory.create(name="Everyone")

    services.campaign_save(campaign=campaign, by=editor, audiences=[wider])

    stored = Campaign.objects.get(pk=campaign.pk)
    assert list(stored.audiences.all()) == [wider]
    assert (stored.status, stored.approved_at) == (Campaign.Status.DRAFT, None)
    assert last_edit(campaign) == {"audiences": ["Everyone"]}


def test_a_rate_limit_change_keeps_the_schedule_and_the_approval(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign, editor, approver = approved_and_scheduled()
    edited_at = Campaign.objects.get(pk=campaign.pk).edited_at
    campaign.rate_limit_per_minute = 100
    services.campaign_save(campaign=campaign, by=editor)
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.status, stored.approved_by, stored.edited_at) == (
        Campaign.Status.SCHEDULED,
        approver,
        edited_at,
    )


def test_without_four_eyes_an_edit_still_clears_the_approval(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = False
    campaign = CampaignFactory.create()
    services.campaign_approve(campaign=campaign, by=UserFactory.create())
    campaign.subject = "Changed"
    services.campaign_save(campaign=campaign, by=UserFactory.create())
    stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.approved_at is None and "approval_cleared" in actions(campaign)


@pytest.mark.parametrize("status", [Campaign.Status.PAUSED, Campaign.Status.SENDING])
def test_a_campaign_whose_send_started_refuses_content_edits(status: str) -> None:
    campaign = CampaignFactory.create(status=status)
    campaign.subject = "Changed"
    with pytest.raises(ValidationError, match="Cancel it, or start a new campaign"):
        services.campaign_save(campaign=campaign, by=UserFactory.create())
    assert Campaign.objects.get(pk=campaign.pk).subject != "Changed"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    "status", [Campaign.Status.SENT, Campaign.Status.CANCELLED, Campaign.Status.FAILED]
)
def test_a_finished_campaign_is_read_only(status: str) -> None:
    campaign = CampaignFactory.create(status=status)
    campaign.rate_limit_per_minute = 5
    with pytest.raises(ValidationError, match="read-only"):
        services.campaign_save(campaign=campaign, by=UserFactory.create())
    assert Campaign.objects.get(pk=campaign.pk).rate_limit_per_minute is None


def test_four_eyes_needs_an_approval_to_send_or_schedule(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    editor, approver = UserFactory.create(), UserFactory.create()
    campaign = CampaignFactory.create(
        schedule_kind=Campaign.ScheduleKind.DAILY, schedule_time=time(9, 0)
    )
    services.campaign_save(campaign=campaign, by=editor, audiences=[audience_with(1)])
    with pytest.raises(IllegalTransition, match="needs an approval"):
        services.campaign_send_now(campaign=campaign, by=approver, launch=lambda *a: None)
    with pytest.raises(IllegalTransition, match="needs an approval"):
        services.campaign_schedule(campaign=campaign, by=approver)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_four_eyes_refuses_an_approval_older_than_the_last_edit(settings: Settings) -> None:
    """An approval that an edit did not clear (a bulk update, an old row) still does not count."""
    settings.OPSDASH_FOUR_EYES = True
    campaign, _, approver = approved_and_scheduled()
    services.campaign_unschedule(campaign=campaign, by=approver)
    stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.approved_at is not None
    Campaign.objects.filter(pk=campaign.pk).update(edited_at=stored.approved_at)
    with pytest.raises(IllegalTransition, match="edited after its approval"):
        services.campaign_schedule(campaign=campaign, by=approver)


def test_a_save_that_changes_nothing_does_not_make_its_author_the_last_editor(
    settings: Settings,
) -> None:
    """Otherwise a colleague's empty Save would let the real author approve their own text."""
    settings.OPSDASH_FOUR_EYES = True
    author, colleague = UserFactory.create(), UserFactory.create()
    campaign = CampaignFactory.create()
    services.campaign_save(campaign=campaign, by=author, audiences=[audience_with(1)])

    services.campaign_save(campaign=Campaign.objects.get(pk=campaign.pk), by=colleague)

    assert Campaign.objects.get(pk=campaign.pk).last_edited_by == author
    with pytest.raises(IllegalTransition, match="cannot approve"):
        services.campaign_approve(campaign=campaign, by=author)


def test_four_eyes_stops_the_last_editor_approving_their_own_edit(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    both = UserFactory.create()
    campaign = CampaignFactory.create()
    services.campaign_save(campaign=campaign, by=both, audiences=[audience_with(1)])
    with pytest.raises(IllegalTransition, match="cannot approve"):
        services.campaign_approve(campaign=campaign, by=both)
    # Nor does an approval by the last editor count when it exists (given before an edit).
    other = UserFactory.create()
    services.campaign_approve(campaign=campaign, by=other)
    Campaign.objects.filter(pk=campaign.pk).update(last_edited_by=other)
    with pytest.raises(IllegalTransition, match="approved by its last editor"):
        services.campaign_send_now(
            campaign=campaign, by=UserFactory.create(), launch=lambda *a: None
        )


def test_a_scheduled_fire_with_a_void_approval_does_not_launch(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign, _, _ = approved_and_scheduled()
    # Voided without going through an edit (as a bulk change would): the fire checks again.
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=None, approved_by=None)

    assert campaign_fire_scheduled(campaign_id=campaign.pk, publish=lambda *a: None) is None

    stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.status == Campaign.Status.DRAFT and not PeriodicTask.objects.exists()
    assert not Send.objects.exists()
    refused = campaign.audit_entries.get(action="send_refused")
    assert refused.actor is None and "approval" in refused.changes["reason"]


def test_a_launch_after_an_edit_voided_the_approval_does_not_happen(settings: Settings) -> None:
    """Send now was pressed on a recurring campaign, then it was edited before the launch ran."""
    settings.OPSDASH_FOUR_EYES = True
    campaign, editor, approver = approved_and_scheduled()
    key = services.campaign_send_now(campaign=campaign, by=approver, launch=lambda *a: None)
    campaign.subject = "Not approved"
    services.campaign_save(campaign=campaign, by=editor)

    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key=key,
        trigger=Send.Trigger.MANUAL,
        publish=lambda *a: None,
    )

    assert send is None and not Send.objects.exists()
    assert "send_refused" in actions(campaign)


def test_a_one_off_campaign_whose_launch_is_refused_ends_failed_not_stuck_sending(
    settings: Settings,
) -> None:
    settings.OPSDASH_FOUR_EYES = True
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)

    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *a: None,
    )

    assert send is None
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.FAILED
    assert "send_refused" in actions(campaign)


def test_with_four_eyes_off_an_unapproved_campaign_sends_as_before(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = False
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    services.campaign_send_now(campaign=campaign, by=UserFactory.create(), launch=lambda *a: None)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING
