"""The campaign toolbar as drawn: Unfold's buttons for what services.controls offers, and a
greyed-out entry with its reason for each control that is expected but unavailable."""

from __future__ import annotations

from typing import Any

from unfold.enums import ActionVariant

from campaigns.services.controls import Control, Offer

# The detail action behind each toolbar control; services.controls decides which are offered.
CONTROL_ACTIONS: dict[Control, str] = {
    Control.SEND_NOW: "send_now",
    Control.SCHEDULE: "schedule_campaign",
    Control.UNSCHEDULE: "unschedule_campaign",
    Control.APPROVE: "approve",
    Control.CANCEL: "cancel_campaign",
    Control.SEND_TEST: "send_test_to_me",
    Control.DUPLICATE: "duplicate",
}

# The toolbar's words and icons, also for the greyed-out entries Unfold does not draw itself.
LABELS: dict[Control, str] = {
    Control.SEND_NOW: "Send now",
    Control.SCHEDULE: "Schedule",
    Control.UNSCHEDULE: "Unschedule",
    Control.APPROVE: "Approve",
    Control.CANCEL: "Cancel the send",
    Control.SEND_TEST: "Send a test to me",
    Control.DUPLICATE: "Duplicate",
}
_ICONS: dict[Control, str] = {
    Control.SEND_NOW: "send",
    Control.SCHEDULE: "schedule",
    Control.UNSCHEDULE: "event_busy",
    Control.APPROVE: "verified",
    Control.CANCEL: "cancel",
    Control.SEND_TEST: "outgoing_mail",
    Control.DUPLICATE: "content_copy",
}


def toolbar(drawn: list[Any], offers: list[Offer]) -> list[Any]:
    """Unfold's buttons for the available controls, and a greyed, linkless entry with its
    reason as the tooltip for each unavailable one, in the order the service gives."""
    # Unfold's entries carry the action's URL, which ends in the method's name.
    by_path = {
        item["path"].rstrip("/").rsplit("/", 1)[-1]: item
        for item in drawn
        if isinstance(item, dict) and item.get("path")
    }
    entries = []
    for offer in offers:
        name = CONTROL_ACTIONS[offer.control]
        if offer.available and name in by_path:
            entries.append(by_path[name])
        elif not offer.available:
            entries.append(_unavailable(offer))
    return entries


def _unavailable(offer: Offer) -> dict[str, Any]:
    """Drawn by templates/admin/campaigns/campaign/toolbar_unavailable.html, not by Unfold."""
    return {
        "title": LABELS[offer.control],
        "icon": _ICONS[offer.control],
        "variant": ActionVariant.DEFAULT,
        "reason": offer.reason,
    }
