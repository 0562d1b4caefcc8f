"""Composing campaigns and moving them through their states.

    draft -> scheduled -> sending -> sent | paused | cancelled | failed
    scheduled -> draft (unschedule);  paused -> sending (resume) | cancelled

A recurring campaign stays ``scheduled``; each occurrence is a Send with its own status.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.models import AuditEntry, Campaign, Send
from campaigns.services.audit import audit_record
from campaigns.services.delivery import (
    BatchPublisher,
    IllegalTransition,
    LaunchPublisher,
    send_launch,
)
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

User = AbstractBaseUser | AnonymousUser | None

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
def campaign_save(*, campaign: Campaign, by: User, changed: list[str] | None = None) -> Campaign:
    """Validates and saves a composed campaign, records who changed what, syncs its schedule."""
    campaign_check(campaign=campaign)
    created = campaign.pk is None
    user = by if by is not None and by.is_authenticated else None
    if created and user is not None:
        campaign.owner = user  # type: ignore[assignment]
    campaign.last_edited_by = user  # type: ignore[assignment]
    campaign.save()
    audit_record(
        action=AuditEntry.Action.CREATED if created else AuditEntry.Action.EDITED,
        actor=by,
        campaign=campaign,
        changes=_diff(campaign, changed or []),
    )
    campaign_schedule_sync(campaign=campaign)
    return campaign


def _move(campaign: Campaign, *, allowed_from: tuple[str, ...], to: str) -> None:
    """A conditional UPDATE: of two racing requests only one moves the campaign."""
    moved = Campaign.objects.filter(pk=campaign.pk, status__in=allowed_from).update(
        status=to, updated_at=timezone.now()
    )
    if not moved:
        campaign.refresh_from_db(fields=["status"])
        raise IllegalTransition(
            f"“{campaign.name}” is {campaign.get_status_display().lower()}; it cannot be {to} now."
        )
    campaign.refresh_from_db()


def _require_audience(campaign: Campaign) -> None:
    if not campaign.audiences.exists():
        raise ValidationError({"audiences": ["Choose at least one audience to send to."]})


def _require_four_eyes(campaign: Campaign, by: User) -> None:
    if not settings.OPSDASH_FOUR_EYES:
        return
    if by is not None and campaign.last_edited_by_id == getattr(by, "pk", None):
        raise IllegalTransition(
            "Four-eyes rule: the last editor of a campaign cannot send or schedule it; "
            "ask another approver."
        )


@transaction.atomic
def campaign_schedule(*, campaign: Campaign, by: User) -> Campaign:
    if campaign.schedule_kind == Campaign.ScheduleKind.MANUAL:
        raise ValidationError({"schedule_kind": ["Choose when to send before scheduling."]})
    campaign_check(campaign=campaign)
    _require_audience(campaign)
    _require_four_eyes(campaign, by)
    _move(campaign, allowed_from=(Campaign.Status.DRAFT,), to=Campaign.Status.SCHEDULED)
    campaign_schedule_sync(campaign=campaign)
    audit_record(
        action=AuditEntry.Action.SCHEDULED,
        actor=by,
        campaign=campaign,
        changes={"schedule": campaign.schedule_kind},
    )
    return campaign


@transaction.atomic
def campaign_unschedule(*, campaign: Campaign, by: User) -> Campaign:
    _move(campaign, allowed_from=(Campaign.Status.SCHEDULED,), to=Campaign.Status.DRAFT)
    campaign_schedule_sync(campaign=campaign)
    audit_record(action=AuditEntry.Action.UNSCHEDULED, actor=by, campaign=campaign)
    return campaign


@transaction.atomic
def campaign_approve(*, campaign: Campaign, by: User) -> Campaign:
    campaign_check(campaign=campaign)
    campaign.approved_by = by if by is not None and by.is_authenticated else None  # type: ignore[assignment]
    campaign.approved_at = timezone.now()
    campaign.save(update_fields=["approved_by", "approved_at", "updated_at"])
    audit_record(action=AuditEntry.Action.APPROVED, actor=by, campaign=campaign)
    return campaign


def campaign_send_now(*, campaign: Campaign, by: User, launch: LaunchPublisher) -> str:
    """Starts a send at once; a second press for the same occurrence creates nothing.

    Returns the occurrence key. A one-off campaign has a single occurrence ("once"); a recurring
    one gets a manual occurrence per minute, so a double click still maps to one Send.
    """
    campaign_check(campaign=campaign)
    _require_audience(campaign)
    _require_four_eyes(campaign, by)
    with transaction.atomic():
        if campaign.is_recurring:
            key = f"manual:{timezone.now():%Y-%m-%dT%H:%M}"
        else:
            key = "once"
            _move(
                campaign,
                allowed_from=(Campaign.Status.DRAFT, Campaign.Status.SCHEDULED),
                to=Campaign.Status.SENDING,
            )
            campaign_schedule_sync(campaign=campaign)
        audit_record(
            action=AuditEntry.Action.SENT, actor=by, campaign=campaign, changes={"occurrence": key}
        )
        user_id = by.pk if by is not None and by.is_authenticated else None
        transaction.on_commit(lambda: launch(campaign.pk, key, Send.Trigger.MANUAL, user_id))
    return key


def campaign_fire_scheduled(*, campaign_id: int, publish: BatchPublisher) -> Send | None:
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
def campaign_delete(*, campaign: Campaign, by: User) -> None:
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
