"""Which controls a campaign's toolbar offers to one user, and why the others are out of reach.

The status rules are the Campaign table in ``services.transitions``; this module adds the
person: their role's permissions, the four-eyes rule and whether the campaign is ready (an
audience, a schedule). The admin draws exactly what this returns: an available control as a
button, an unavailable one as greyed text with its reason, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.contrib.auth.models import Group

from campaigns.models import Campaign, Send
from campaigns.services.approval import approval_problem
from campaigns.services.audit import By, acting_user_id
from campaigns.services.scheduling import once_time_passed
from campaigns.services.transitions import (
    CampaignControl,
    campaign_controls_for,
    campaign_status_refusal,
)

Status = Campaign.Status
FINAL = frozenset({Status.SENT, Status.CANCELLED, Status.FAILED})


class Control(StrEnum):
    """Every button of the campaign toolbar, in the order it is drawn."""

    SEND_NOW = "send_now"
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    APPROVE = "approve"
    CANCEL = "cancel"
    SEND_TEST = "send_test"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Offer:
    """One toolbar entry: available when ``reason`` is empty, else greyed out with it."""

    control: Control
    reason: str = ""

    @property
    def available(self) -> bool:
        return not self.reason


# The permission each control needs, and what it lets one do ("Only approvers can send this").
PERMISSIONS: dict[Control, tuple[str, str]] = {
    Control.SEND_NOW: ("campaigns.send_campaign", "send this"),
    Control.SCHEDULE: ("campaigns.send_campaign", "schedule this"),
    Control.UNSCHEDULE: ("campaigns.send_campaign", "unschedule this"),
    Control.CANCEL: ("campaigns.send_campaign", "cancel this send"),
    Control.APPROVE: ("campaigns.approve_campaign", "approve this"),
    Control.SEND_TEST: ("campaigns.send_test_campaign", "send test messages"),
    Control.DUPLICATE: ("campaigns.add_campaign", "duplicate campaigns"),
}
# Said when no group grants the permission (it is given to people one by one).
PERMISSION_NAMES = {
    "campaigns.send_campaign": "Needs the send permission",
    "campaigns.approve_campaign": "Needs the approve permission",
    "campaigns.send_test_campaign": "Needs the test-send permission",
    "campaigns.add_campaign": "Needs the permission to create campaigns",
}
# The roles staff know (the groups of migration 0002), by the plural the toolbar says.
ROLE_PLURALS = {"editor": "editors", "approver": "approvers", "auditor": "auditors"}

# How transitions' refusals of a finished campaign end (“Already sent: duplicate it to send
# again”); dropped for a user who may not duplicate.
DUPLICATE_HINT = ": duplicate it to send again"
_STATE_CONTROLS = {
    Control.SEND_NOW: CampaignControl.SEND_NOW,
    Control.SCHEDULE: CampaignControl.SCHEDULE,
    Control.UNSCHEDULE: CampaignControl.UNSCHEDULE,
}


def campaign_offers(*, campaign: Campaign, user: By) -> list[Offer]:
    """The toolbar for ``user`` on ``campaign`` now: each expected control, with its reason.

    A reader whose role changes no campaign (an auditor) expects no control: they get none,
    rather than a row of greyed-out buttons each saying the same thing.
    """
    if not any(_may(user, permission) for permission, _ in PERMISSIONS.values()):
        return []
    roles = _Roles()
    return [
        Offer(control, _reason(campaign, user, control, roles)) for control in _expected(campaign)
    ]


def campaign_offer(*, campaign: Campaign, user: By, control: Control) -> Offer:
    """One control's entry, or an unavailable one when the status does not show it at all."""
    if control not in _expected(campaign):
        state = _STATE_CONTROLS.get(control, CampaignControl.SEND_NOW)
        return Offer(control, campaign_status_refusal(campaign, state))
    return Offer(control, _reason(campaign, user, control, _Roles()))


class _Roles:
    """Which groups grant each toolbar permission, read once per toolbar and only if needed."""

    def __init__(self) -> None:
        self._granted: dict[str, list[str]] | None = None

    def missing(self, control: Control) -> str:
        """ "Only approvers can send this" when groups grant the permission, else its name."""
        permission, does = PERMISSIONS[control]
        groups = self._groups().get(permission, [])
        if not groups:
            return PERMISSION_NAMES[permission]
        who = " and ".join(ROLE_PLURALS.get(g, f"members of “{g}”") for g in groups)
        return f"Only {who} can {does}"

    def _groups(self) -> dict[str, list[str]]:
        if self._granted is None:
            codenames = {p.split(".", 1)[1] for p in PERMISSION_NAMES}
            rows = (
                Group.objects.filter(
                    permissions__content_type__app_label="campaigns",
                    permissions__codename__in=codenames,
                )
                .order_by("name")
                .values_list("permissions__codename", "name")
            )
            self._granted = {}
            for codename, name in rows:
                self._granted.setdefault(f"campaigns.{codename}", []).append(name)
        return self._granted


def has_live_send(campaign: Campaign) -> bool:
    return campaign.sends.filter(status__in=[Send.Status.RUNNING, Send.Status.PAUSED]).exists()


def _expected(campaign: Campaign) -> list[Control]:
    """What staff look for in this status: a finished campaign still shows Send now, greyed
    out with why, because that is the button people reach for."""
    offered = campaign_controls_for(campaign)
    state = {control for control, s in _STATE_CONTROLS.items() if s in offered}
    if campaign.status in FINAL:
        state.add(Control.SEND_NOW)
    if campaign.status in (Status.DRAFT, Status.SCHEDULED):
        state.add(Control.APPROVE)
    # A recurring campaign stays scheduled while an occurrence runs: that send is cancellable too.
    if campaign.status not in FINAL and has_live_send(campaign):
        state.add(Control.CANCEL)
    state |= {Control.SEND_TEST, Control.DUPLICATE}
    return [control for control in Control if control in state]


def _reason(campaign: Campaign, user: By, control: Control, roles: _Roles) -> str:
    if control in _STATE_CONTROLS and campaign.status in FINAL:
        refusal = campaign_status_refusal(campaign, _STATE_CONTROLS[control])
        # Only someone who may duplicate is told to: the reason must fit its reader.
        if not _may(user, PERMISSIONS[Control.DUPLICATE][0]):
            refusal = refusal.removesuffix(DUPLICATE_HINT)
        return refusal
    if not _may(user, PERMISSIONS[control][0]):
        return roles.missing(control)
    return _READINESS.get(control, _ready)(campaign, user)


def _may(user: By, permission: str) -> bool:
    # Only a real staff account holds permissions; AbstractBaseUser alone does not name has_perm.
    has_perm = getattr(user, "has_perm", None)
    return bool(has_perm and has_perm(permission))


def _ready(campaign: Campaign, user: By) -> str:
    return ""


def _ready_to_go(campaign: Campaign, user: By) -> str:
    """Send now and Schedule: an audience, and the four-eyes rule satisfied for this user."""
    if not campaign.audiences.exists():
        return "Choose an audience first (Audience tab)"
    if settings.OPSDASH_FOUR_EYES and campaign.last_edited_by_id == acting_user_id(user):
        return "You edited it last: another approver must send it"
    if approval_problem(campaign):
        return "Needs approval"
    return ""


def _ready_to_schedule(campaign: Campaign, user: By) -> str:
    if campaign.schedule_kind == Campaign.ScheduleKind.MANUAL:
        return "Choose when to send first (Schedule tab)"
    if once_time_passed(campaign):
        return "The chosen time has passed: pick a later one (Schedule tab)"
    return _ready_to_go(campaign, user)


def _ready_to_approve(campaign: Campaign, user: By) -> str:
    if settings.OPSDASH_FOUR_EYES and campaign.last_edited_by_id == acting_user_id(user):
        return "You edited it last: another approver must approve it"
    current = campaign.approved_at is not None and (
        campaign.edited_at is None or campaign.approved_at > campaign.edited_at
    )
    if current and campaign.approved_by is not None:
        name = campaign.approved_by.get_full_name() or campaign.approved_by.get_username()
        return f"Already approved by {name}"
    return ""


def _ready_to_test(campaign: Campaign, user: By) -> str:
    if not getattr(user, "email", ""):
        return "Add an email address to your account first"
    return ""


_READINESS: dict[Control, Callable[[Campaign, By], str]] = {
    Control.SEND_TEST: _ready_to_test,
    Control.SEND_NOW: _ready_to_go,
    Control.SCHEDULE: _ready_to_schedule,
    Control.APPROVE: _ready_to_approve,
}
