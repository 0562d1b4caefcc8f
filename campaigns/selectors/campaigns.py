"""Lookups for the campaign page: who to preview as, and how a published test message fares."""

from __future__ import annotations

from typing import Any

from django_celery_results.models import TaskResult

from campaigns.models import Recipient, TaskLink
from campaigns.services.rendering import recipient_fields, sample_recipient_fields

SAMPLE_EMAIL = "sample@example.com"
# Celery states after which a task's result no longer changes.
_FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def preview_recipient(*, email: str) -> dict[str, Any] | None:
    """The fields of the recipient to preview as; the sample when no address is given.

    Returns None when an address is given but no recipient has it.
    """
    if not email.strip():
        return sample_recipient_fields(email=SAMPLE_EMAIL)
    recipient = (
        Recipient.objects.filter(email=email.strip().lower())
        .only("email", "first_name", "last_name", "attributes")
        .first()
    )
    return recipient_fields(recipient) if recipient is not None else None


def task_state(*, task_id: str) -> dict[str, Any] | None:
    """The state of a task we published (None for ids we never linked), for polling."""
    if not TaskLink.objects.filter(task_id=task_id).exists():
        return None
    result = TaskResult.objects.filter(task_id=task_id).values("status", "result").first()
    if result is None:
        return {"state": "PENDING", "done": False, "detail": "Waiting for a worker to pick it up."}
    state = result["status"]
    detail = str(result["result"] or "")[:500]
    return {"state": state, "done": state in _FINAL_STATES, "detail": detail}
