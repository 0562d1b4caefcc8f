"""Consent cannot be changed around its permission: not by renaming an address and adding it
again, not by a case variant, and not by editing a subscription."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import AuditEntry, Recipient, Subscription
from tests.admin.helpers import ensure_role_groups, user_with_roles
from tests.factories import RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor() -> Client:
    ensure_role_groups()
    client = Client()
    client.force_login(user_with_roles("editor"))
    return client


def test_an_editor_cannot_rename_an_opted_out_address_to_bring_the_person_back(
    editor: Client,
) -> None:
    bob = RecipientFactory.create(email="bob@example.com", status=Recipient.Status.UNSUBSCRIBED)
    url = reverse("admin:campaigns_recipient_change", args=[bob.pk])

    editor.post(url, {"email": "bob.gone@example.com", "first_name": "Bob", "last_name": "B"})

    assert Recipient.objects.get(pk=bob.pk).email == "bob@example.com"


def test_a_new_recipient_in_another_case_of_an_existing_address_is_refused(
    editor: Client,
) -> None:
    RecipientFactory.create(email="bob@example.com", status=Recipient.Status.UNSUBSCRIBED)

    response = editor.post(
        reverse("admin:campaigns_recipient_add"),
        {"email": "Bob@Example.COM", "first_name": "", "last_name": "", "attributes": "{}"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert "exists already" in response.content.decode()
    assert Recipient.objects.count() == 1


def test_an_editor_cannot_take_someone_off_a_list_or_move_a_subscription(
    editor: Client,
) -> None:
    subscription = SubscriptionFactory.create()
    other = SubscriptionFactory.create()
    url = reverse("admin:campaigns_subscription_change", args=[subscription.pk])

    editor.post(
        url,
        {
            "recipient": other.recipient_id,
            "audience": other.audience_id,
            "status": Subscription.Status.UNSUBSCRIBED,
        },
    )

    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUBSCRIBED
    assert subscription.recipient_id != other.recipient_id
    assert not AuditEntry.objects.exists()


def test_an_approver_changes_a_subscription_through_the_audited_service() -> None:
    ensure_role_groups()
    client = Client()
    client.force_login(user_with_roles("approver", "editor"))
    subscription = SubscriptionFactory.create()

    client.post(
        reverse("admin:campaigns_subscription_change", args=[subscription.pk]),
        {"status": Subscription.Status.UNSUBSCRIBED},
    )

    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED)
    assert entry.changes["subscription"] == {"from": "subscribed", "to": "unsubscribed"}
