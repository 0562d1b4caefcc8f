from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import AuditEntry, Campaign
from campaigns.services import campaigns as services
from campaigns.services.delivery import IllegalTransition
from tests.factories import AudienceFactory, CampaignFactory, UserFactory

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
        ({"html_body": "{{ recipient.salary }}"}, "html_body", "no field 'salary'"),
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
        services.campaign_save(campaign=campaign, by=UserFactory())
    assert field in caught.value.message_dict
    assert any(needle in message for message in caught.value.message_dict[field])
    assert not Campaign.objects.exists()  # nothing half-saved
    assert not AuditEntry.objects.exists()


def test_saving_records_who_created_and_edited() -> None:
    user = UserFactory()
    campaign = services.campaign_save(campaign=unsaved(), by=user)
    campaign.subject = "Hello {{ recipient.first_name }}"
    services.campaign_save(campaign=campaign, by=user, changed=["subject"])
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "changes"))
    assert actions == [("created", {}), ("edited", {"subject": "Hello {{ recipient.first_name }}"})]
    assert campaign.owner == user and campaign.last_edited_by == user


def test_scheduling_needs_an_audience() -> None:
    campaign = CampaignFactory(schedule_kind=Campaign.ScheduleKind.DAILY, schedule_time=time(9, 0))
    with pytest.raises(ValidationError, match="at least one audience"):
        services.campaign_schedule(campaign=campaign, by=UserFactory())
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not PeriodicTask.objects.exists()


def test_send_now_twice_launches_once() -> None:
    campaign = CampaignFactory(audiences=[AudienceFactory()])
    launches: list[tuple[int, str]] = []
    user = UserFactory()
    with pytest.MonkeyPatch.context():
        key = services.campaign_send_now(
            campaign=campaign, by=user, launch=lambda c, k, t, u: launches.append((c, k))
        )
        with pytest.raises(IllegalTransition, match="is sending"):
            services.campaign_send_now(
                campaign=campaign, by=user, launch=lambda c, k, t, u: launches.append((c, k))
            )
    assert key == "once"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_the_four_eyes_rule_stops_the_last_editor(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OPSDASH_FOUR_EYES = True
    editor, approver = UserFactory(), UserFactory()
    campaign = services.campaign_save(campaign=unsaved(), by=editor)
    campaign.audiences.set([AudienceFactory()])
    with pytest.raises(IllegalTransition, match="Four-eyes"):
        services.campaign_send_now(campaign=campaign, by=editor, launch=lambda *a: None)
    assert services.campaign_send_now(campaign=campaign, by=approver, launch=lambda *a: None)


def test_a_campaign_with_sends_cannot_be_deleted() -> None:
    from campaigns.models import Send

    campaign = CampaignFactory()
    Send.objects.create(campaign=campaign, occurrence_key="once")
    with pytest.raises(IllegalTransition, match="has sends on record"):
        services.campaign_delete(campaign=campaign, by=UserFactory())
    assert Campaign.objects.filter(pk=campaign.pk).exists()
