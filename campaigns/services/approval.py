"""Whether a campaign's approval covers what would be sent now (the four-eyes rule).

An approval is for one version of a campaign: any edit of its content, audiences or schedule
stamps ``edited_at`` and clears the approval, and an approval older than the last edit, or given
by the last editor, does not count. Asked before a send or a schedule, and again at launch under
the campaign's row lock, so nothing edited after the approval leaves under it.
"""

from __future__ import annotations

from django.conf import settings

from campaigns.models import AuditEntry, Campaign
from campaigns.services.audit import By, audit_record


def approval_problem(campaign: Campaign) -> str | None:
    """Why four-eyes forbids sending ``campaign`` now; None when it may go or the rule is off."""
    if not settings.OPSDASH_FOUR_EYES:
        return None
    if campaign.approved_at is None or campaign.approved_by_id is None:
        return "it needs an approval by someone other than its last editor"
    if campaign.edited_at is not None and campaign.approved_at <= campaign.edited_at:
        return "it was edited after its approval; it needs a new one"
    if campaign.approved_by_id == campaign.last_edited_by_id:
        return "it was approved by its last editor; another approver must approve it"
    return None


def approval_clear(*, campaign: Campaign, by: By, reason: str) -> None:
    """Voids the campaign's approval, recording whose approval it was and why it went."""
    approved_by, approved_at = campaign.approved_by, campaign.approved_at
    campaign.approved_by, campaign.approved_at = None, None
    campaign.save(update_fields=["approved_by", "approved_at", "updated_at"])
    audit_record(
        action=AuditEntry.Action.APPROVAL_CLEARED,
        actor=by,
        campaign=campaign,
        changes={
            "reason": reason,
            "approved_by": str(approved_by or ""),
            "approved_at": approved_at.isoformat() if approved_at else "",
        },
    )
