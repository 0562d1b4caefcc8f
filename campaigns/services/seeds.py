"""Test messages: to the sender or to a saved seed list, as a sample or as a chosen recipient.

Each address gets its own message on the priority queue (``publishers.publish_test_message``),
published after commit under an id chosen now, so the campaign page can follow every task.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns import publishers
from campaigns.models import AuditEntry, Campaign, Recipient
from campaigns.services.audit import By, audit_record
from campaigns.services.rendering import TemplateProblem, address_check, campaign_compile_for

# A seed list is for a handful of inboxes; more than this is a send, not a test.
SEED_LIST_MAX = 50


class PublishTestMessage(Protocol):
    """Publishes one test message under the task id the caller chose."""

    def __call__(
        self, *, campaign_id: int, to_email: str, task_id: str, recipient_id: int | None = None
    ) -> str: ...


def seed_addresses_parse(text: str) -> list[str]:
    """The addresses of a seed list, one per line; refuses the list naming each bad line."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    addresses, problems = [], []
    for number, line in lines:
        if not line:
            continue
        try:
            addresses.append(address_check(line, label=f"Line {number}", allow_display_name=False))
        except TemplateProblem as exc:
            problems.append(str(exc))
    if not addresses and not problems:
        problems.append("Add at least one address, one per line.")
    if len(addresses) > SEED_LIST_MAX:
        problems.append(f"A seed list holds at most {SEED_LIST_MAX} addresses.")
    if problems:
        raise ValidationError(problems)
    return list(dict.fromkeys(addresses))


def personalisation_recipient(*, email: str) -> Recipient:
    """The recipient whose personalisation a test uses; refused in words when there is none."""
    recipient = Recipient.objects.filter(email=email.strip().lower()).first()
    if recipient is None:
        raise ValidationError(f"No recipient has the address {email.strip()}.")
    return recipient


def campaign_send_test(
    *,
    campaign: Campaign,
    by: By,
    to_email: str,
    as_recipient: Recipient | None = None,
    publish: PublishTestMessage = publishers.publish_test_message,
) -> str:
    """Sends the saved campaign to one address as a test; returns the task's id."""
    return campaign_send_tests(
        campaign=campaign, by=by, to=[to_email], as_recipient=as_recipient, publish=publish
    )[0]


def campaign_send_tests(
    *,
    campaign: Campaign,
    by: By,
    to: list[str],
    as_recipient: Recipient | None = None,
    publish: PublishTestMessage = publishers.publish_test_message,
) -> list[str]:
    """Sends the saved campaign as a test to each address; returns the tasks' ids.

    1. Refuse a missing or malformed address, and a campaign whose templates do not compile,
       here and now rather than in a task that fails later.
    2. Record who sent a test to which addresses, personalised as whom.
    3. Publish after commit under ids chosen now, so the page can follow the tasks at once.
    """
    addresses = _test_addresses(campaign, to)
    tasks = {address: str(uuid.uuid4()) for address in addresses}
    with transaction.atomic():
        for address, task_id in tasks.items():
            changes = {"to": address, "task_id": task_id}
            if as_recipient is not None:
                changes["personalised_as"] = as_recipient.email
            audit_record(
                action=AuditEntry.Action.TEST_SENT, actor=by, campaign=campaign, changes=changes
            )
        transaction.on_commit(lambda: _publish(campaign, tasks, as_recipient, publish))
    return list(tasks.values())


def _test_addresses(campaign: Campaign, to: list[str]) -> list[str]:
    if not to or not all(address.strip() for address in to):
        raise ValidationError("Your account has no email address: add one to get tests.")
    try:
        addresses = [
            address_check(address, label="Test address", allow_display_name=False) for address in to
        ]
        campaign_compile_for(campaign)
    except TemplateProblem as exc:
        raise ValidationError(str(exc)) from exc
    return list(dict.fromkeys(addresses))


def _publish(
    campaign: Campaign,
    tasks: dict[str, str],
    as_recipient: Recipient | None,
    publish: PublishTestMessage,
) -> None:
    # Named only when chosen: the worker renders the sample recipient without it.
    extra = {} if as_recipient is None else {"recipient_id": as_recipient.pk}
    for address, task_id in tasks.items():
        publish(campaign_id=campaign.pk, to_email=address, task_id=task_id, **extra)
