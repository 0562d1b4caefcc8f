"""Bounce mail nobody's parser understood: a person reads it, then dismisses it."""

from __future__ import annotations

from collections.abc import Iterable

from campaigns.models import BounceMessage
from campaigns.services.audit import By


def bounce_message_dismiss(*, message_ids: Iterable[int], by: By) -> int:
    """Marks the messages that still need review as dismissed; returns how many moved.

    Only NEEDS_REVIEW rows move: a parsed message stays parsed, and a second click changes
    nothing. Not audited: the audit trail has no action for it, and the message itself keeps
    its status (``by`` is taken for when one is added).
    """
    rows = BounceMessage.objects.filter(
        pk__in=list(message_ids), status=BounceMessage.Status.NEEDS_REVIEW
    )
    return rows.update(status=BounceMessage.Status.DISMISSED)
