"""Whether pre-flight findings stop a campaign from being sent or scheduled, and the approver's
override that lets it go anyway.

An override is for the campaign as it was when given, and for the blocking findings it saw
(their codes): an edit of the content voids it (``edited_at`` after it), and a blocking finding
it did not see is not covered. It is asked on Schedule and Send now, and again when a schedule
fires, so nothing leaves under findings nobody looked at.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.models import AuditEntry, Campaign
from campaigns.services.audit import By, acting_user, acting_user_id, audit_record
from campaigns.services.preflight.report import Finding, PreflightReport


def override_in_force(campaign: Campaign) -> bool:
    """Whether the campaign carries an override given after its last edit."""
    at = campaign.preflight_override_at
    return at is not None and (campaign.edited_at is None or at > campaign.edited_at)


def uncovered_blocking(campaign: Campaign, report: PreflightReport) -> list[Finding]:
    """The blocking findings no override in force covers."""
    covered = set(campaign.preflight_override_codes or []) if override_in_force(campaign) else set()
    return [finding for finding in report.blocking if finding.code not in covered]


def preflight_problem(campaign: Campaign, report: PreflightReport) -> str | None:
    """Why the findings forbid sending ``campaign`` now, naming each check; None if it may go."""
    blocking = uncovered_blocking(campaign, report)
    if not blocking:
        return None
    named = "; ".join(f"{f.title} ({f.code}): {f.message}" for f in blocking)
    return (
        f"Pre-flight checks stop “{campaign.name}”: {named} Fix them (the Pre-flight panel of "
        "the campaign says what to publish), or an approver can override them there."
    )


@transaction.atomic
def campaign_preflight_override(
    *, campaign: Campaign, by: By, reason: str, report: PreflightReport
) -> Campaign:
    """Records an approver's decision to send despite the blocking findings of ``report``."""
    reason = " ".join(reason.split())
    if not reason:
        raise ValidationError("Say why the campaign may go despite the failed checks.")
    codes = report.blocking_codes
    if not codes:
        raise ValidationError("No pre-flight check blocks this campaign: nothing to override.")
    Campaign.objects.select_for_update().filter(pk=campaign.pk).exists()
    campaign.refresh_from_db()
    if settings.OPSDASH_FOUR_EYES and acting_user_id(by) == campaign.last_edited_by_id:
        # As with an approval: the override is a second person's judgement.
        raise ValidationError(
            "Four-eyes rule: the last editor of a campaign cannot override its pre-flight "
            "checks; ask another approver."
        )
    _override_store(
        campaign, by=acting_user(by), at=timezone.now(), reason=reason[:500], codes=codes
    )
    audit_record(
        action=AuditEntry.Action.PREFLIGHT_OVERRIDDEN,
        actor=by,
        campaign=campaign,
        changes={"reason": reason[:500], "codes": codes},
    )
    return campaign


def preflight_override_clear(*, campaign: Campaign, by: By, reason: str) -> None:
    """Voids the campaign's override (an edit), recording whose it was and why it went."""
    if campaign.preflight_override_at is None:
        return
    changes = {
        "reason": reason,
        "overridden_by": str(campaign.preflight_override_by or ""),
        "codes": list(campaign.preflight_override_codes or []),
    }
    _override_store(campaign, by=None, at=None, reason="", codes=[])
    audit_record(
        action=AuditEntry.Action.PREFLIGHT_OVERRIDE_CLEARED,
        actor=by,
        campaign=campaign,
        changes=changes,
    )


def _override_store(
    campaign: Campaign, *, by: User | None, at: datetime | None, reason: str, codes: list[str]
) -> None:
    campaign.preflight_override_by = by
    campaign.preflight_override_at = at
    campaign.preflight_override_reason = reason
    campaign.preflight_override_codes = codes
    campaign.save(
        update_fields=[
            "preflight_override_by",
            "preflight_override_at",
            "preflight_override_reason",
            "preflight_override_codes",
            "updated_at",
        ]
    )
