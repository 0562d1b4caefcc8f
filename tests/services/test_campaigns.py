from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import time, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services import campaigns as services
from campaigns.services.delivery import send_launch
from campaigns.services.transitions import (
    CAMPAIGN_CONTROL_SOURCES,
    CAMPAIGN_CONTROL_TARGETS,
    CAMPAIGN_TRANSITIONS,
    CampaignControl,
    IllegalTransition,
    campaign_controls_for,
)
from tests.factories import AudienceFactory, CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


def unsaved(**fields: object) -> Campaign:
    values: dict[str, object] = {
        "name": "News",
        "subject": "Hi {{ recipient.first_name }}",
        "from_email": "a@example.com",
        "text_body": "Hello",
    }
    values.update(fields)
    return Campaign(**values)


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"text_body": "{% for %}"}, "text_body", "does not compile"),
        ({"body": "{{ recipient.salary }}"}, "body", "no field 'salary'"),
        ({"subject": "{{ nope }}"}, "subject", "unknown field"),
        ({"from_email": "not an address"}, "from_email", "not a valid email address"),
        ({"reply_to": "x@example.com\r\nBcc: y@example.com"}, "reply_to", "line breaks"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject", "line breaks"),
        (
            {"schedule_kind": "once", "scheduled_at": timezone.now() - timedelta(minutes=1)},
            "scheduled_at",
            "in the past",
        ),
        (
            {"schedule_kind": "crontab", "schedule_crontab": "99 * * * *"},
            "schedule_crontab",
            "not valid",
        ),
        (
            {"schedule_kind": "weekly", "schedule_time": time(9, 0)},
            "schedule_weekday",
            "day of the week",
        ),
    ],
)
def test_bad_input_is_refused_at_save_naming_the_field(
    fields: dict[str, object], field: str, needle: str
) -> None:
    campaign = unsaved(**fields)
    with pytest.raises(ValidationError) as caught:
        services.campaign_save(campaign=campaign, by=UserFactory.create())
    assert field in caught.value.message_dict
    assert any(needle in message for message in caught.value.message_dict[field])
    assert not Campaign.objects.exists()  # nothing half-saved
    assert not AuditEntry.objects.exists()


def test_saving_records_who_created_and_edited() -> None:
    user = UserFactory.create()
    campaign = services.campaign_save(campaign=unsaved(), by=user)
    campaign.subject = "Hello {{ recipient.first_name }}"
    services.campaign_save(campaign=campaign, by=user, changed=["subject"])
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "changes"))
    assert actions == [("created", {}), ("edited", {"subject": "Hello {{ recipient.first_name }}"})]
    assert campaign.owner == user and campaign.last_edited_by == user


def test_saving_an_edit_never_writes_the_status_back() -> None:
    """A form opened while the campaign was a draft is saved after it was sent: refused."""
    campaign = services.campaign_save(campaign=unsaved(), by=UserFactory.create())
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENT)
    campaign.subject = "Edited"
    with pytest.raises(ValidationError, match="read-only"):
        services.campaign_save(campaign=campaign, by=UserFactory.create(), changed=["subject"])
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.status, stored.subject) == (
        Campaign.Status.SENT,
        "Hi {{ recipient.first_name }}",
    )


def test_scheduling_needs_an_audience() -> None:
    campaign = CampaignFactory.create(
        schedule_kind=Campaign.ScheduleKind.DAILY, schedule_time=time(9, 0)
    )
    with pytest.raises(ValidationError, match="at least one audience"):
        services.campaign_schedule(campaign=campaign, by=UserFactory.create())
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not PeriodicTask.objects.exists()


CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


def test_send_now_twice_launches_once(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)])
    launches: list[tuple[int, str, str, int | None]] = []
    user = UserFactory.create()

    def launch(campaign_id: int, key: str, trigger: str, user_id: int | None) -> None:
        launches.append((campaign_id, key, trigger, user_id))

    with django_capture_on_commit_callbacks(execute=True):
        key = services.campaign_send_now(campaign=campaign, by=user, launch=launch)
    with (
        django_capture_on_commit_callbacks(execute=True) as second,
        pytest.raises(IllegalTransition, match="Being sent now"),
    ):
        services.campaign_send_now(campaign=campaign, by=user, launch=launch)
    assert key == "once"
    assert launches == [(campaign.pk, "once", Send.Trigger.MANUAL, user.pk)]
    assert second == []
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING

    for campaign_id, occurrence_key, trigger, user_id in launches:
        send_launch(
            campaign_id=campaign_id,
            occurrence_key=occurrence_key,
            trigger=trigger,
            triggered_by_id=user_id,
            publish=lambda *batch: None,
        )
    (send,) = Send.objects.filter(campaign=campaign)
    assert (send.occurrence_key, send.total, send.triggered_by_id) == ("once", 2, user.pk)


def test_the_four_eyes_rule_stops_the_last_editor(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    editor, approver = UserFactory.create(), UserFactory.create()
    campaign = services.campaign_save(
        campaign=unsaved(), by=editor, audiences=[AudienceFactory.create()]
    )
    services.campaign_approve(campaign=campaign, by=approver)
    with pytest.raises(IllegalTransition, match="Four-eyes"):
        services.campaign_send_now(campaign=campaign, by=editor, launch=lambda *a: None)
    assert services.campaign_send_now(campaign=campaign, by=approver, launch=lambda *a: None)


def test_a_campaign_with_sends_cannot_be_deleted() -> None:
    campaign = CampaignFactory.create()
    Send.objects.create(campaign=campaign, occurrence_key="once")
    with pytest.raises(IllegalTransition, match="has sends on record"):
        services.campaign_delete(campaign=campaign, by=UserFactory.create())
    assert Campaign.objects.filter(pk=campaign.pk).exists()


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        (Campaign.Status.DRAFT, [CampaignControl.SCHEDULE, CampaignControl.SEND_NOW]),
        (Campaign.Status.SCHEDULED, [CampaignControl.UNSCHEDULE, CampaignControl.SEND_NOW]),
        (Campaign.Status.SENDING, []),
        (Campaign.Status.PAUSED, []),  # resumed through its send, not sent again
        (Campaign.Status.SENT, []),
    ],
)
def test_a_campaign_offers_the_controls_its_status_allows(
    status: str, offered: list[CampaignControl]
) -> None:
    assert sorted(campaign_controls_for(Campaign(status=status))) == sorted(offered)


def test_every_campaign_control_is_a_move_the_table_allows() -> None:
    for control, sources in CAMPAIGN_CONTROL_SOURCES.items():
        for source in sources:
            assert CAMPAIGN_CONTROL_TARGETS[control] in CAMPAIGN_TRANSITIONS[source], control


def test_a_paused_campaign_cannot_be_sent_again() -> None:
    campaign = CampaignFactory.create(
        audiences=[AudienceFactory.create()], status=Campaign.Status.PAUSED
    )
    with pytest.raises(IllegalTransition, match="Paused: resume or cancel it from its send"):
        services.campaign_send_now(
            campaign=campaign, by=UserFactory.create(), launch=lambda *a: None
        )
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert not AuditEntry.objects.exists()


def test_a_scheduled_recurring_campaign_sent_now_stays_scheduled(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    campaign = services.campaign_schedule(
        campaign=CampaignFactory.create(
            audiences=[AudienceFactory.create()],
            schedule_kind=Campaign.ScheduleKind.DAILY,
            schedule_time=time(9, 0),
        ),
        by=UserFactory.create(),
    )
    launches: list[str] = []
    with django_capture_on_commit_callbacks(execute=True):
        key = services.campaign_send_now(
            campaign=campaign, by=UserFactory.create(), launch=lambda c, k, t, u: launches.append(k)
        )
    assert key.startswith("manual:") and launches == [key]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED


class PublishedTests:
    """Stands in for the broker: remembers each test message published."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(
        self, *, campaign_id: int, to_email: str, task_id: str, recipient_id: int | None = None
    ) -> str:
        message: dict[str, Any] = {"campaign_id": campaign_id, "to": to_email, "task_id": task_id}
        if recipient_id is not None:
            message["recipient_id"] = recipient_id
        self.messages.append(message)
        return task_id


def test_a_test_message_is_audited_and_published_after_commit(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    campaign, editor, published = CampaignFactory.create(), UserFactory.create(), PublishedTests()
    with django_capture_on_commit_callbacks() as callbacks:
        task_id = services.campaign_send_test(
            campaign=campaign, by=editor, to_email="Editor@Example.com", publish=published
        )
        assert published.messages == []  # nothing reaches a worker before the commit
    for callback in callbacks:
        callback()
    assert published.messages == [
        {"campaign_id": campaign.pk, "to": "Editor@Example.com", "task_id": task_id}
    ]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.campaign) == ("test_sent", editor, campaign)
    assert entry.changes == {"to": "Editor@Example.com", "task_id": task_id}


@pytest.mark.parametrize(
    ("to_email", "fields", "needle"),
    [
        ("", {}, "Your account has no email address"),
        ("not an address", {}, "not a valid email address"),
        ("a@example.com", {"text_body": "{% for %}"}, "does not compile"),
    ],
)
def test_a_test_message_that_cannot_be_sent_is_refused_at_once(
    to_email: str, fields: dict[str, str], needle: str
) -> None:
    published = PublishedTests()
    with pytest.raises(ValidationError, match=needle):
        services.campaign_send_test(
            campaign=CampaignFactory.create(**fields),
            by=UserFactory.create(),
            to_email=to_email,
            publish=published,
        )
    assert published.messages == [] and not AuditEntry.objects.exists()
