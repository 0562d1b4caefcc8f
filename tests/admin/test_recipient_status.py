"""In the admin a recipient's status is read-only; "Change status" is its own permission."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import AuditEntry, Recipient, Subscription
from tests.admin.helpers import user_with_roles
from tests.factories import RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def client_for(*roles: str) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles))
    return client


def recipient_form(recipient: Recipient, **overrides: str) -> dict[str, str]:
    return {
        "email": recipient.email,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "attributes": json.dumps(recipient.attributes),
        **overrides,
    }


def status_url(recipient: Recipient) -> str:
    return reverse("admin:campaigns_recipient_change_status", args=[recipient.pk])


def test_editing_a_recipient_cannot_change_its_status() -> None:
    recipient = RecipientFactory.create(status=Recipient.Status.COMPLAINED)
    editor = client_for("editor")
    url = reverse("admin:campaigns_recipient_change", args=[recipient.pk])
    response = editor.post(url, recipient_form(recipient, first_name="Eve", status="active"))
    assert response.status_code == 302
    recipient.refresh_from_db()
    assert (recipient.first_name, recipient.status) == ("Eve", Recipient.Status.COMPLAINED)
    assert 'name="status"' not in editor.get(url).content.decode()


def test_only_the_status_permission_opens_the_change_status_form() -> None:
    recipient = RecipientFactory.create(status=Recipient.Status.BOUNCED)
    change = reverse("admin:campaigns_recipient_change", args=[recipient.pk])
    for role in ("editor", "auditor"):
        client = client_for(role)
        assert status_url(recipient) not in client.get(change).content.decode()
        assert client.get(status_url(recipient)).status_code == 403
        assert client.post(status_url(recipient), {"status": "active"}).status_code == 403
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.BOUNCED

    approver = client_for("approver")
    assert status_url(recipient) in approver.get(change).content.decode()
    assert approver.get(status_url(recipient)).status_code == 200
    response = approver.post(status_url(recipient), {"status": "active", "reason": "fixed"})
    assert response.status_code == 302
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.ACTIVE
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED)
    assert entry.changes["reason"] == "fixed"


def test_the_form_asks_for_a_reason_to_lift_a_complaint() -> None:
    recipient = RecipientFactory.create(status=Recipient.Status.COMPLAINED)
    response = client_for("approver").post(status_url(recipient), {"status": "active"})
    assert response.status_code == 200
    assert "say why they may be mailed again" in response.content.decode()
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.COMPLAINED


def test_an_editor_cannot_put_an_unsubscribed_person_back_on_a_list() -> None:
    subscription = SubscriptionFactory.create(status=Subscription.Status.UNSUBSCRIBED)
    url = reverse("admin:campaigns_subscription_change", args=[subscription.pk])
    data = {
        "recipient": subscription.recipient_id,
        "audience": subscription.audience_id,
        "status": "subscribed",
        "source_import": "",
    }
    assert client_for("editor").post(url, data).status_code == 302
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED

    client_for("editor", "approver").post(url, data)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUBSCRIBED
