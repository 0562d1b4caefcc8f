"""A recipient's consent status changes by hand only through its service: permission, audit."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from campaigns.models import AuditEntry, Recipient, Subscription
from campaigns.services.audiences import recipient_status_change
from tests.admin.helpers import user_with_roles
from tests.factories import RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
Status = Recipient.Status


def test_an_editor_may_not_change_a_status() -> None:
    recipient = RecipientFactory.create(status=Status.BOUNCED)
    with pytest.raises(PermissionDenied):
        recipient_status_change(
            recipient=recipient, status=Status.ACTIVE, by=user_with_roles("editor")
        )
    recipient.refresh_from_db()
    assert recipient.status == Status.BOUNCED
    assert not AuditEntry.objects.exists()


def test_a_change_is_audited_with_who_from_to_and_why() -> None:
    recipient = RecipientFactory.create(status=Status.BOUNCED)
    approver = user_with_roles("approver")
    changed = recipient_status_change(
        recipient=recipient, status=Status.ACTIVE, by=approver, reason=" mailbox fixed "
    )
    assert changed is True
    recipient.refresh_from_db()
    assert recipient.status == Status.ACTIVE
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor) == (AuditEntry.Action.RECIPIENT_STATUS_CHANGED, approver)
    assert entry.changes == {
        "recipient": recipient.pk,
        "from": "bounced",
        "to": "active",
        "reason": "mailbox fixed",
    }


def test_the_same_status_again_changes_and_audits_nothing() -> None:
    recipient = RecipientFactory.create(status=Status.ACTIVE)
    assert not recipient_status_change(
        recipient=recipient, status=Status.ACTIVE, by=user_with_roles("approver")
    )
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_lifting_a_spam_complaint_needs_a_reason(reason: str) -> None:
    recipient = RecipientFactory.create(status=Status.COMPLAINED)
    approver = user_with_roles("approver")
    with pytest.raises(ValidationError, match="marked a message as spam"):
        recipient_status_change(
            recipient=recipient, status=Status.ACTIVE, by=approver, reason=reason
        )
    recipient.refresh_from_db()
    assert recipient.status == Status.COMPLAINED and not AuditEntry.objects.exists()

    recipient_status_change(
        recipient=recipient, status=Status.ACTIVE, by=approver, reason="Asked us by phone"
    )
    recipient.refresh_from_db()
    assert recipient.status == Status.ACTIVE


def test_an_unknown_status_is_refused() -> None:
    recipient = RecipientFactory.create()
    with pytest.raises(ValidationError):
        recipient_status_change(recipient=recipient, status="vip", by=user_with_roles("approver"))


def test_unsubscribing_by_hand_leaves_every_audience_like_the_link() -> None:
    subscription = SubscriptionFactory.create()
    recipient_status_change(
        recipient=subscription.recipient,
        status=Status.UNSUBSCRIBED,
        by=user_with_roles("approver"),
        reason="asked by email",
    )
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED
