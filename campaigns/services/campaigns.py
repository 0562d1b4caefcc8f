"""Composing campaigns, and the staff actions that move them: schedule, send now, test, delete.

The states and the moves between them are the Campaign table in services/transitions.py; this
module decides *when* to ask for a move (after validation, the audience and the four-eyes rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns import publishers
from campaigns.models import Audience, AuditEntry, Campaign, Send
from campaigns.services.approval import approval_clear, approval_problem
from campaigns.services.audit import By, acting_user, acting_user_id, audit_record
from campaigns.services.delivery import BatchPublisher, LaunchPublisher, send_cancel, send_launch
from campaigns.services.preflight import preflight_override_clear, preflight_problem, preflight_run
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

# Test sends live in services.seeds; callers of this module still find them here.
from campaigns.services.seeds import campaign_send_test as campaign_send_test
from campaigns.services.seeds import campaign_send_tests as campaign_send_tests
from campaigns.services.transitions import (
    CampaignControl,
    IllegalTransition,
    campaign_control_check,
    campaign_move,
    campaign_status_refusal,
)

# What staff compose on a campaign. A save writes these and never the status, which only
# transitions.campaign_move changes: a form opened before a send finished must not undo it.
# A send freezes these compiled (services/delivery/compiled.py); ``web_archive`` is here
# because publishing a campaign is part of what an approver approves.
CONTENT_FIELDS = (
    "name",
    "subject",
    "from_email",
    "reply_to",
    "preheader",
    "body_format",
    "body",
    "text_body",
    "layout",
    "web_archive",
)
SCHEDULE_FIELDS = (
    "schedule_kind",
    "scheduled_at",
    "schedule_time",
    "schedule_weekday",
    "schedule_day",
    "schedule_crontab",
    "schedule_timezone",
)
COMPOSED_FIELDS = (*CONTENT_FIELDS, "rate_limit_per_minute", "channel", *SCHEDULE_FIELDS)

_TEMPLATE_FIELDS = {
    "Subject": "subject",
    "Text body": "text_body",
    "HTML body": "body",
    "Body": "body",
    "Layout": "layout",
    "Preview text": "preheader",
    "Format": "body_format",
}


def campaign_check(*, campaign: Campaign, past_ok: bool = False) -> None:
    """Raises ValidationError with a message per field for anything that would fail a send.

    ``past_ok``: the one-off time may have passed (Send now, Approve, a save that leaves that
    time as it was); only Schedule and setting the time need it in the future.
    """
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
            schedule_validate(campaign, past_ok=past_ok)
        except ScheduleProblem as exc:
            problem(exc.field, str(exc))
    if errors:
        raise ValidationError(errors)


def _diff(campaign: Campaign, changed: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: str(getattr(campaign, name, ""))[:500] for name in changed}
    if "audiences" in values:
        values["audiences"] = sorted(campaign.audiences.values_list("name", flat=True))
    return values


# An edit of these changes what an approval was given for (audiences count too).
GUARDED_FIELDS = frozenset({*CONTENT_FIELDS, *SCHEDULE_FIELDS, "audiences"})
_FINAL = (Campaign.Status.SENT, Campaign.Status.CANCELLED, Campaign.Status.FAILED)
_SEND_FROZEN = (Campaign.Status.SENDING, Campaign.Status.PAUSED)


def campaign_edit_refusal(*, status: str, changed: Iterable[str]) -> str | None:
    """Why a campaign in ``status`` may not take an edit of ``changed``, or None if it may.

    Content, audiences and schedule change only on a draft (a scheduled campaign goes back to
    draft); a one-off campaign whose send has started keeps its frozen content; a finished
    campaign is a record.
    """
    label = Campaign.Status(status).label.lower()
    if status in _FINAL:
        return f"This campaign is {label}: a finished campaign is read-only."
    if status in _SEND_FROZEN and GUARDED_FIELDS.intersection(changed):
        return (
            f"This campaign is {label}: its send keeps the content, audiences and schedule it "
            "started with. Cancel it, or start a new campaign with the changes."
        )
    return None


_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def text_meaning(value: str) -> str:
    """A text as it reads: browsers post line ends as CRLF, and trailing blanks show nowhere."""
    return _TRAILING_SPACE.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).rstrip("\n")


def _keep_unchanged_text(stored: Campaign, campaign: Campaign) -> set[str]:
    """Puts back each text that differs from the stored one only in line ends or trailing
    blanks, so a Save of an untouched form edits nothing and voids no approval; returns them."""
    kept = set()
    for name in CONTENT_FIELDS:
        old, new = getattr(stored, name), getattr(campaign, name)
        noise = isinstance(old, str) and isinstance(new, str) and old != new
        if noise and text_meaning(old) == text_meaning(new):
            setattr(campaign, name, old)
            kept.add(name)
    return kept


def sets_one_off_time(stored: Campaign, campaign: Campaign) -> bool:
    """Whether an edit chooses the one-off time (kind or time), which must then be ahead."""
    return (stored.schedule_kind, stored.scheduled_at) != (
        campaign.schedule_kind,
        campaign.scheduled_at,
    )


def _changed_fields(
    stored: Campaign, campaign: Campaign, changed: list[str] | None, audiences: set[int] | None
) -> list[str]:
    """What differs in meaning from the stored row, plus what the caller says it changed."""
    kept = _keep_unchanged_text(stored, campaign)
    fields = {name for name in COMPOSED_FIELDS if getattr(stored, name) != getattr(campaign, name)}
    fields |= set(changed or []) & {*COMPOSED_FIELDS, "audiences"} - kept
    if audiences is not None and audiences != set(stored.audiences.values_list("pk", flat=True)):
        fields.add("audiences")
    return sorted(fields)


@transaction.atomic
def campaign_save(
    *,
    campaign: Campaign,
    by: By,
    changed: list[str] | None = None,
    audiences: Iterable[Audience] | None = None,
) -> Campaign:
    """Validates and saves a composed campaign; an edit of what was approved voids the approval.

    1. Lock the stored row, so a launch freezes either the old content or the new; validate
       (a one-off time already passed is refused only when this save sets it).
    2. Refuse an edit the status does not allow (a started send's campaign, a finished one).
    3. Save the fields and the audiences; a change of content, audiences or schedule stamps
       ``edited_at``, returns a scheduled campaign to draft and clears any approval.
    4. Audit the edit and each consequence; sync the PeriodicTask (removed off schedule).
    """
    if campaign.pk is None:
        campaign_check(campaign=campaign)
        return _campaign_create(campaign=campaign, by=by, audiences=audiences)
    stored = Campaign.objects.select_for_update().get(pk=campaign.pk)
    campaign_check(campaign=campaign, past_ok=not sets_one_off_time(stored, campaign))
    wanted = None if audiences is None else {audience.pk for audience in audiences}
    fields = _changed_fields(stored, campaign, changed, wanted)
    if refusal := campaign_edit_refusal(status=stored.status, changed=fields):
        raise ValidationError(refusal)
    guarded = bool(GUARDED_FIELDS.intersection(fields))
    # Only a change of what gets sent makes its author "the last editor": a Save that changes
    # nothing must not hand the four-eyes rule to someone else.
    stamped = ["edited_at", "last_edited_by"] if guarded else []
    campaign.edited_at = timezone.now() if guarded else stored.edited_at
    campaign.last_edited_by = acting_user(by) if guarded else stored.last_edited_by
    campaign.save(update_fields=[*COMPOSED_FIELDS, *stamped, "updated_at"])
    if wanted is not None:
        campaign.audiences.set(wanted)
    if fields:  # a Save that changes nothing in meaning leaves nothing to record
        changes = _diff(campaign, fields)
        audit_record(action=AuditEntry.Action.EDITED, actor=by, campaign=campaign, changes=changes)
    if guarded:
        _edit_consequences(campaign=campaign, stored=stored, by=by)
    campaign_schedule_sync(campaign=campaign)
    return campaign


def _campaign_create(
    *,
    campaign: Campaign,
    by: By,
    audiences: Iterable[Audience] | None,
    changes: dict[str, Any] | None = None,
) -> Campaign:
    user = acting_user(by)
    campaign.owner = campaign.last_edited_by = user
    campaign.edited_at = timezone.now()
    campaign.save()
    if audiences is not None:
        campaign.audiences.set(audiences)
    audit_record(action=AuditEntry.Action.CREATED, actor=by, campaign=campaign, changes=changes)
    campaign_schedule_sync(campaign=campaign)
    return campaign


def _edit_consequences(*, campaign: Campaign, stored: Campaign, by: By) -> None:
    """A scheduled campaign goes back to draft and any approval is cleared, each audited."""
    if stored.status == Campaign.Status.SCHEDULED:
        campaign_move(campaign, to=Campaign.Status.DRAFT)
        audit_record(
            action=AuditEntry.Action.UNSCHEDULED,
            actor=by,
            campaign=campaign,
            changes={"reason": "edited; back to draft, its schedule removed"},
        )
    if stored.approved_at is not None:
        campaign.approved_by_id, campaign.approved_at = stored.approved_by_id, stored.approved_at
        approval_clear(campaign=campaign, by=by, reason="edited after its approval")
    if stored.preflight_override_at is not None:
        for name in ("by_id", "at", "reason", "codes"):
            field = f"preflight_override_{name}"
            setattr(campaign, field, getattr(stored, field))
        preflight_override_clear(campaign=campaign, by=by, reason="edited after the override")


def _lock(campaign: Campaign) -> None:
    """Locks the row and reads it afresh: an edit saved since the page was drawn counts."""
    Campaign.objects.select_for_update().filter(pk=campaign.pk).exists()
    campaign.refresh_from_db()


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
    if problem := approval_problem(campaign):
        raise IllegalTransition(f"Four-eyes rule: “{campaign.name}” cannot go yet: {problem}.")


def _require_preflight(campaign: Campaign) -> None:
    """Blocking pre-flight findings no approver's override covers refuse the send."""
    if problem := preflight_problem(campaign, preflight_run(campaign=campaign)):
        raise IllegalTransition(problem)


@transaction.atomic
def campaign_schedule(*, campaign: Campaign, by: By) -> Campaign:
    if campaign.schedule_kind == Campaign.ScheduleKind.MANUAL:
        raise ValidationError({"schedule_kind": ["Choose when to send before scheduling."]})
    _lock(campaign)
    campaign_check(campaign=campaign)
    _require_audience(campaign)
    _require_four_eyes(campaign, by)
    _require_preflight(campaign)
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
    """Approves the campaign as stored now; any later edit of what it sends clears this."""
    _lock(campaign)
    campaign_check(campaign=campaign, past_ok=True)
    user_id = acting_user_id(by)
    if settings.OPSDASH_FOUR_EYES and user_id is not None and campaign.last_edited_by_id == user_id:
        raise IllegalTransition(
            "Four-eyes rule: the last editor of a campaign cannot approve it; ask another approver."
        )
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
    with transaction.atomic():
        _lock(campaign)
        campaign_control_check(campaign, CampaignControl.SEND_NOW)
        campaign_check(campaign=campaign, past_ok=True)
        _require_audience(campaign)
        _require_four_eyes(campaign, by)
        _require_preflight(campaign)
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


def campaign_duplicate(*, campaign: Campaign, by: By) -> Campaign:
    """A new draft with the campaign's content, audiences and rate limit; never its schedule,
    status or approval, which belong to the version that was sent."""
    copy = Campaign(
        **{name: getattr(campaign, name) for name in CONTENT_FIELDS},
        rate_limit_per_minute=campaign.rate_limit_per_minute,
    )
    copy.name = f"Copy of {campaign.name}"[: Campaign._meta.get_field("name").max_length]
    with transaction.atomic():
        _campaign_create(
            campaign=copy,
            by=by,
            audiences=campaign.audiences.all(),
            # The name is what a reader knows it by; the id links it (the audit shows both as
            # one "Duplicated from “…”" row).
            changes={"duplicated_from": campaign.name, "duplicated_from_id": campaign.pk},
        )
    return copy


def campaign_cancel(*, campaign: Campaign, by: By) -> Send:
    """Cancels the campaign's running or paused send: the rows not yet sent are skipped."""
    live = campaign.sends.filter(status__in=[Send.Status.RUNNING, Send.Status.PAUSED])
    send = live.order_by("-id").first()
    if send is None:
        reason = "Nothing is being sent, so there is nothing to cancel"
        if campaign.status in _FINAL:
            reason = campaign_status_refusal(campaign, CampaignControl.SEND_NOW)
        raise IllegalTransition(f"“{campaign.name}”: {reason}.")
    return send_cancel(send_id=send.pk, by=by)


def campaign_fire_scheduled(
    *,
    campaign_id: int,
    publish: BatchPublisher = publishers.publish_batch,
    task_id: str | None = None,
) -> Send | None:
    """What Beat's PeriodicTask runs: launches the occurrence due now, at most once.

    A campaign whose approval no longer covers it (four-eyes), or that a blocking pre-flight
    finding no override covers stops (a record withdrawn since it was scheduled, say), does not
    launch: it goes back to draft without its PeriodicTask, audited, and waits for staff.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Campaign.Status.SCHEDULED:
        return None
    problem = approval_problem(campaign) or preflight_problem(
        campaign, preflight_run(campaign=campaign)
    )
    if problem:
        _fire_refuse(campaign=campaign, problem=problem)
        return None
    key = occurrence_key_for(campaign)
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key=key,
        trigger=Send.Trigger.SCHEDULE,
        publish=publish,
        task_id=task_id,
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
def _fire_refuse(*, campaign: Campaign, problem: str) -> None:
    if not campaign_move(campaign, to=Campaign.Status.DRAFT, strict=False):
        return  # moved on meanwhile (unscheduled, or sent by hand): nothing left to refuse
    campaign_schedule_sync(campaign=campaign)
    audit_record(
        action=AuditEntry.Action.SEND_REFUSED,
        actor=None,
        campaign=campaign,
        changes={"trigger": Send.Trigger.SCHEDULE, "reason": problem, "now": "draft"},
    )


@transaction.atomic
def campaign_delete(*, campaign: Campaign, by: By) -> None:
    """Deletes a campaign that never sent, with its PeriodicTask."""
    if campaign.sends.exists():
        raise IllegalTransition(
            f"“{campaign.name}” has sends on record, so it stays: a campaign that went out "
            "cannot be deleted."
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
