"""The three state machines of opsdash, each as one transition table, and the only status writers.

Every status change of a Campaign, a Send or an ImportJob goes through ``campaign_move``,
``send_move`` or ``import_job_move``: a conditional UPDATE whose row count decides, so of two
racing requests only one moves the row, and a move the table does not list never happens.
Services decide *when* to move; this module decides *whether* a move is legal and which
controls a status offers. ``services.controls`` adds the person (role, four-eyes, readiness) to
build the campaign toolbar; the admin keeps no map of its own.

Campaign (a recurring campaign stays ``scheduled``; each occurrence is a Send)::

    draft      -> scheduled (schedule) | sending (send now)
    scheduled  -> draft (unschedule)   | sending (fired or sent now)
    sending    -> paused | cancelled | sent | failed      (mirrors its one Send)
    paused     -> sending | cancelled

Send (moved by services.delivery.control)::

    running -> paused | cancelled
            | completed (nothing left to send) | failed (nothing left, none sent, some failed)
    paused  -> running | cancelled

ImportJob::

    pending -> running | cancelled
    running -> running (a redelivered job is claimed again) | completed | failed | cancelled
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from django.db.models import Model
from django.utils import timezone

from campaigns.models import Campaign, ImportJob, Send


class IllegalTransition(ValueError):
    """A move the state machine does not allow; the message is shown to the staff member."""


CampaignStatus = Campaign.Status
SendStatus = Send.Status
ImportStatus = ImportJob.Status

CAMPAIGN_TRANSITIONS: Mapping[str, frozenset[str]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.SENDING}),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.DRAFT, CampaignStatus.SENDING}),
    CampaignStatus.SENDING: frozenset(
        {
            CampaignStatus.PAUSED,
            CampaignStatus.CANCELLED,
            CampaignStatus.SENT,
            CampaignStatus.FAILED,
        }
    ),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.SENDING, CampaignStatus.CANCELLED}),
    CampaignStatus.SENT: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
    CampaignStatus.FAILED: frozenset(),
}

SEND_TRANSITIONS: Mapping[str, frozenset[str]] = {
    SendStatus.RUNNING: frozenset(
        {SendStatus.PAUSED, SendStatus.CANCELLED, SendStatus.COMPLETED, SendStatus.FAILED}
    ),
    SendStatus.PAUSED: frozenset({SendStatus.RUNNING, SendStatus.CANCELLED}),
    SendStatus.COMPLETED: frozenset(),
    SendStatus.CANCELLED: frozenset(),
    SendStatus.FAILED: frozenset(),
}

IMPORT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    ImportStatus.PENDING: frozenset(
        {ImportStatus.RUNNING, ImportStatus.CANCELLED, ImportStatus.ABANDONED}
    ),
    ImportStatus.RUNNING: frozenset(
        {
            ImportStatus.RUNNING,
            ImportStatus.COMPLETED,
            ImportStatus.FAILED,
            ImportStatus.CANCELLED,
        }
    ),
    ImportStatus.COMPLETED: frozenset(),
    ImportStatus.FAILED: frozenset(),
    ImportStatus.CANCELLED: frozenset(),
    ImportStatus.ABANDONED: frozenset(),
}

# What a one-off campaign shows while its single Send is in each status.
CAMPAIGN_MIRRORS_SEND: Mapping[str, str] = {
    SendStatus.RUNNING: CampaignStatus.SENDING,
    SendStatus.PAUSED: CampaignStatus.PAUSED,
    SendStatus.COMPLETED: CampaignStatus.SENT,
    SendStatus.CANCELLED: CampaignStatus.CANCELLED,
    SendStatus.FAILED: CampaignStatus.FAILED,
}


class SendControl(StrEnum):
    """The buttons staff press on a send, each named for the status it moves the send to."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


SEND_CONTROL_TARGETS: Mapping[SendControl, str] = {
    SendControl.PAUSE: SendStatus.PAUSED,
    SendControl.RESUME: SendStatus.RUNNING,
    SendControl.CANCEL: SendStatus.CANCELLED,
}


class CampaignControl(StrEnum):
    """The status buttons staff press on a campaign."""

    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    SEND_NOW = "send_now"


CAMPAIGN_CONTROL_TARGETS: Mapping[CampaignControl, str] = {
    CampaignControl.SCHEDULE: CampaignStatus.SCHEDULED,
    CampaignControl.UNSCHEDULE: CampaignStatus.DRAFT,
    CampaignControl.SEND_NOW: CampaignStatus.SENDING,
}

# Where staff may press each control: a subset of the table's sources for its target. A paused
# campaign also reaches ``sending``, but by resuming its send, not by sending it again.
CAMPAIGN_CONTROL_SOURCES: Mapping[CampaignControl, frozenset[str]] = {
    CampaignControl.SCHEDULE: frozenset({CampaignStatus.DRAFT}),
    CampaignControl.UNSCHEDULE: frozenset({CampaignStatus.SCHEDULED}),
    CampaignControl.SEND_NOW: frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED}),
}


def sources_of(table: Mapping[str, frozenset[str]], to: str) -> list[str]:
    """Every status from which ``to`` can be reached."""
    return [source for source, targets in table.items() if to in targets]


def is_final(table: Mapping[str, frozenset[str]], status: str) -> bool:
    return not table.get(status)


def send_controls_for(status: str) -> list[SendControl]:
    """The controls a send in ``status`` offers; a finished send offers none."""
    targets = SEND_TRANSITIONS.get(status, frozenset())
    return [control for control, to in SEND_CONTROL_TARGETS.items() if to in targets]


def send_page_actions(status: str, *, guardrail: str = "") -> set[str]:
    """The send page's actions for a send in ``status``: its controls, except that a pause a
    guardrail made is resumed through the page that asks an approver why."""
    offered: set[str] = set(send_controls_for(status))
    if status == SendStatus.PAUSED and guardrail and SendControl.RESUME in offered:
        offered = (offered - {SendControl.RESUME}) | {"resume_guardrail"}
    return offered


def campaign_controls_for(campaign: Campaign) -> list[CampaignControl]:
    """The status controls a campaign offers now (a recurring one is sent now while scheduled:
    its occurrence becomes a Send and the campaign itself stays where it is)."""
    return [
        control
        for control, sources in CAMPAIGN_CONTROL_SOURCES.items()
        if campaign.status in sources
    ]


def campaign_control_check(campaign: Campaign, control: CampaignControl) -> None:
    """Raises IllegalTransition unless ``campaign`` offers ``control`` in its current status."""
    if control not in campaign_controls_for(campaign):
        raise IllegalTransition(f"“{campaign.name}”: {campaign_status_refusal(campaign, control)}.")


# Why a status control is out of reach, in the words staff read on the toolbar.
_STATUS_REFUSALS: Mapping[str, str] = {
    CampaignStatus.SENT: "Already sent: duplicate it to send again",
    CampaignStatus.CANCELLED: "Cancelled: duplicate it to send again",
    CampaignStatus.FAILED: "Its send failed: duplicate it to send again",
    CampaignStatus.SENDING: "Being sent now: pause or cancel it from its send",
    CampaignStatus.PAUSED: "Paused: resume or cancel it from its send",
}
_CONTROL_REFUSALS: Mapping[tuple[str, CampaignControl], str] = {
    (CampaignStatus.SCHEDULED, CampaignControl.SCHEDULE): "Already scheduled",
    (CampaignStatus.DRAFT, CampaignControl.UNSCHEDULE): "Not scheduled",
}


def campaign_status_refusal(campaign: Campaign, control: CampaignControl) -> str:
    """Why ``control`` is not offered in the campaign's status, as a short sentence."""
    status = campaign.status
    return _CONTROL_REFUSALS.get((status, control)) or _STATUS_REFUSALS.get(
        status, f"Not possible while it is {CampaignStatus(status).label.lower()}"
    )


def _move(
    model: type[Model],
    table: Mapping[str, frozenset[str]],
    *,
    pk: int,
    to: str,
    extra: dict[str, Any],
) -> bool:
    updated: int = model._default_manager.filter(pk=pk, status__in=sources_of(table, to)).update(
        status=to, **extra
    )
    return bool(updated)


def campaign_move(
    campaign: Campaign, *, to: str, strict: bool = True, via: CampaignControl | None = None
) -> bool:
    """Moves a campaign to ``to`` if its current status allows; refreshes ``campaign``.

    With ``strict`` an impossible move raises IllegalTransition naming the current status;
    without, it is a no-op that returns False (a send's mirror of a campaign already moved on).
    ``via`` names the control staff pressed: the move then starts only where that control is
    offered, so a campaign that changed status since the page was drawn does not move.
    """
    table = CAMPAIGN_TRANSITIONS
    if via is not None:
        table = {source: table[source] for source in CAMPAIGN_CONTROL_SOURCES[via]}
    moved = _move(Campaign, table, pk=campaign.pk, to=to, extra={"updated_at": timezone.now()})
    campaign.refresh_from_db(fields=["status", "updated_at"])
    if not moved and strict:
        raise IllegalTransition(
            f"“{campaign.name}” changed meanwhile: it is "
            f"{campaign.get_status_display().lower()} now. The page shows what you can do next."
        )
    return moved


def send_move(*, send_id: int, to: str, **extra: Any) -> tuple[Send, bool]:
    """Moves a Send to ``to``; returns it and whether this call moved it.

    A send already in ``to`` is not an error (a double click, or two workers closing it);
    any other impossible move raises IllegalTransition.
    """
    moved = _move(Send, SEND_TRANSITIONS, pk=send_id, to=to, extra=extra)
    send = Send.objects.select_related("campaign").get(pk=send_id)
    if not moved and send.status != to:
        raise IllegalTransition(
            f"A {send.get_status_display().lower()} send cannot become "
            f"{SendStatus(to).label.lower()}."
        )
    return send, moved


def campaign_mirror_send(send: Send) -> None:
    """A one-off campaign shows the state of its single send; a recurring one stays scheduled."""
    campaign = send.campaign
    if campaign.is_recurring:
        return
    target = CAMPAIGN_MIRRORS_SEND[send.status]
    if campaign.status != target:
        campaign_move(campaign, to=target, strict=False)


def import_job_move(
    *, job_id: int, to: str, only_if: dict[str, Any] | None = None, **extra: Any
) -> bool:
    """Moves an ImportJob to ``to`` if its status allows (and ``only_if`` matches)."""
    updated = ImportJob.objects.filter(
        pk=job_id, status__in=sources_of(IMPORT_TRANSITIONS, to), **(only_if or {})
    ).update(status=to, **extra)
    return bool(updated)
