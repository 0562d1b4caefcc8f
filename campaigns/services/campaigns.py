"""Composing campaigns, and the staff actions that move them: schedule, send now, test, delete.

The states and the moves between them are the Campaign table in services/transitions.py; this
module decides *when* to ask for a move (after validation, the audience and the four-eyes rule).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns import publishers
from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services.audit import By, acting_user, acting_user_id, audit_record
from campaigns.services.delivery import BatchPublisher, LaunchPublisher, send_launch
from campaigns.services.rendering import (
    TemplateProblem,
    address_check,
    campaign_compile_for,
    header_value_check,
)
from campaigns.services.scheduling import (
    ScheduleProblem,
    campaign_schedule_sync,
    occurrence_key_for,
    schedule_validate,
)
from campaigns.services.transitions import (
    CampaignControl,
    IllegalTransition,
    campaign_control_check,
    campaign_move,
)


class PublishTestMessage(Protocol):
    """Publishes one test message under the task id the caller chose."""

    def __call__(self, *, campaign_id: int, to_email: str, task_id: str) -> str: ...


# What staff compose on a campaign. A save writes these and never the status, which only
# transitions.campaign_move changes: a form opened before a send finished must not undo it.
CONTENT_FIELDS = ("name", "subject", "from_email", "reply_to", "text_body", "html_body")
SCHEDULE_FIELDS = (
    "schedule_kind",
    "scheduled_at",
    "schedule_time",
    "schedule_weekday",
    "schedule_day",
    "schedule_crontab",
    "schedule_timezone",
)
COMPOSED_FIELDS = (*CONTENT_FIELDS, "rate_limit_per_minute", *SCHEDULE_FIELDS)

_TEMPLATE_FIELDS = {
    "Subject": "subject",
    "Text body": "text_body",
    "HTML body": "html_body",
    "Body": "text_body",
}


def campaign_check(*, campaign: Campaign) -> None:
    """Raises ValidationError with a message per field for anything that would fail a send."""
    errors: dict[str, list[str]] = {}

    def problem(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    for field, label in (("subject", "Subject"), ("name", "Name")):
        try:
            header_value_check(getattr(campaign, field), label=label)
        except TemplateProblem as exc:
            problem(field, str(exc))
    for field, label, display in (("from_email", "From", True), ("reply_to", "Reply-to", False)):
        value = getattr(campaign, field)
        if value or field == "from_email":
            try:
                setattr(
                    campaign, field, address_check(value, label=label, allow_display_name=display)
                )
            except TemplateProblem as exc:
                problem(field, str(exc))
    try:
        campaign_compile_for(campaign)
    except TemplateProblem as exc:
        label = str(exc).split(":", 1)[0]
        problem(_TEMPLATE_FIELDS.get(label, "text_body"), str(exc))
    if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        try:
            schedule_validate(campaign)
        except ScheduleProblem as exc:
            problem(exc.field, str(exc))
    if errors:
        raise ValidationError(errors)


def _diff(campaign: Campaign, changed: list[str]) -> dict[str, Any]:
    return {name: str(getattr(campaign, name, ""))[:500] for name in changed}


@transaction.atomic
def campaign_save(*, campaign: Campaign, by: By, changed: list[str] | None = None) -> Campaign:
    """Validates and saves a composed campaign, records who changed what, syncs its schedule."""
    campaign_check(campaign=campaign)
    created = campaign.pk is None
    user = acting_user(by)
    if created and user is not None:
        campaign.owner = user
    campaign.last_edited_by = user
    if created:
        campaign.save()
    else:
        campaign.save(update_fields=[*COMPOSED_FIELDS, "last_edited_by", "updated_at"])
    audit_record(
        action=AuditEntry.Action.CREATED if created else AuditEntry.Action.EDITED,
        actor=by,
        campaign=campaign,
        changes=_diff(campaign, changed or []),
    )
    campaign_schedule_sync(campaign=campaign)
    return campaign


def _require_audience(campaign: Campaign) -> None:
    if not campaign.audiences.exists():
        raise ValidationError({"audiences": ["Choose at least one audience to send to."]})


def _require_four_eyes(campaign: Campaign, by: By) -> None:
    if not settings.OPSDASH_FOUR_EYES:
        return
    user_id = acting_user_id(by)
    if user_id is not None and campaign.last_edited_by_id == user_id:
        raise IllegalTransition(
            "Four-eyes rule: the last editor of a campaign cannot send or schedule it; "
            "ask another approver."
        )


@transaction.atomic
def campaign_schedule(*, campaign: Campaign, by: By) -> Campaign:
    if campaign.schedule_kind == Campaign.ScheduleKind.MANUAL:
        raise ValidationError({"schedule_kind": ["Choose when to send before scheduling."]})
    campaign_check(campaign=campaign)
    _require_audience(campaign)
    _require_four_eyes(campaign, by)
    campaign_move(campaign, to=Campaign.Status.SCHEDULED, via=CampaignControl.SCHEDULE)
    campaign_schedule_sync(campaign=campaign)
    audit_record(
        action=AuditEntry.Action.SCHEDULED,
        actor=by,
        campaign=campaign,
        changes={"schedule": campaign.schedule_kind},
    )
    return campaign


@transaction.atomic
def campaign_unschedule(*, campaign: Campaign, by: By) -> Campaign:
    campaign_move(campaign, to=Campaign.Status.DRAFT, via=CampaignControl.UNSCHEDULE)
    campaign_schedule_sync(campaign=campaign)
    audit_record(action=AuditEntry.Action.UNSCHEDULED, actor=by, campaign=campaign)
    return campaign


@transaction.atomic
def campaign_approve(*, campaign: Campaign, by: By) -> Campaign:
    campaign_check(campaign=campaign)
    campaign.approved_by = acting_user(by)
    campaign.approved_at = timezone.now()
    campaign.save(update_fields=["approved_by", "approved_at", "updated_at"])
    audit_record(action=AuditEntry.Action.APPROVED, actor=by, campaign=campaign)
    return campaign


def campaign_send_now(
    *, campaign: Campaign, by: By, launch: LaunchPublisher = publishers.publish_launch
) -> str:
    """Starts a send at once; a second press for the same occurrence creates nothing.

    Returns the occurrence key. A one-off campaign has a single occurrence ("once"); a recurring
    one gets a manual occurrence per minute, so a double click still maps to one Send.
    """
    campaign_control_check(campaign, CampaignControl.SEND_NOW)
    campaign_check(campaign=campaign)
    _require_audience(campaign)
    _require_four_eyes(campaign, by)
    with transaction.atomic():
        if campaign.is_recurring:
            key = f"manual:{timezone.now():%Y-%m-%dT%H:%M}"
        else:
            key = "once"
            campaign_move(campaign, to=Campaign.Status.SENDING, via=CampaignControl.SEND_NOW)
            campaign_schedule_sync(campaign=campaign)
        audit_record(
            action=AuditEntry.Action.SENT, actor=by, campaign=campaign, changes={"occurrence": key}
        )
        user_id = acting_user_id(by)
        transaction.on_commit(lambda: launch(campaign.pk, key, Send.Trigger.MANUAL, user_id))
    return key


def campaign_send_test(
    *,
    campaign: Campaign,
    by: By,
    to_email: str,
    publish: PublishTestMessage = publishers.publish_test_message,
) -> str:
    """Sends the saved campaign to one staff address as a test; returns the task's id.

    1. Refuse a missing or malformed address, and a campaign whose templates do not compile,
       here and now rather than in a task that fails later.
    2. Record who sent a test to which address.
    3. Publish after commit under an id chosen now, so the page can follow the task at once.
    """
    if not to_email.strip():
        raise ValidationError("Your account has no email address: add one to get tests.")
    try:
        address = address_check(to_email, label="Test address", allow_display_name=False)
        campaign_compile_for(campaign)
    except TemplateProblem as exc:
        raise ValidationError(str(exc)) from exc
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        audit_record(
            action=AuditEntry.Action.TEST_SENT,
            actor=by,
            campaign=campaign,
            changes={"to": address, "task_id": task_id},
        )

        def publish_now() -> None:
            publish(campaign_id=campaign.pk, to_email=address, task_id=task_id)

        transaction.on_commit(publish_now)
    return task_id


def campaign_fire_scheduled(
    *, campaign_id: int, publish: BatchPublisher = publishers.publish_batch
) -> Send | None:
    """What Beat's PeriodicTask runs: launches the occurrence due now, at most once."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Campaign.Status.SCHEDULED:
        return None
    key = occurrence_key_for(campaign)
    send = send_launch(
        campaign_id=campaign_id, occurrence_key=key, trigger=Send.Trigger.SCHEDULE, publish=publish
    )
    if send is None:
        return None
    # The schedule sent it: an entry with no actor, so the trail shows every send.
    audit_record(
        action=AuditEntry.Action.SENT,
        actor=None,
        campaign=campaign,
        send=send,
        changes={"occurrence": key, "trigger": Send.Trigger.SCHEDULE},
    )
    if not campaign.is_recurring:
        campaign.refresh_from_db()
        campaign_schedule_sync(campaign=campaign)
    return send


@transaction.atomic
def campaign_delete(*, campaign: Campaign, by: By) -> None:
    """Deletes a campaign that never sent, with its PeriodicTask."""
    if campaign.sends.exists():
        raise IllegalTransition(
            f"“{campaign.name}” has sends on record; cancel it instead of deleting it."
        )
    audit_record(
        action=AuditEntry.Action.DELETED,
        actor=by,
        changes={"campaign": campaign.name, "id": campaign.pk},
    )
    task = campaign.periodic_task
    campaign.delete()
    if task is not None:
        task.delete()
