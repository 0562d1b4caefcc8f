"""ESP webhooks at /anymail/: documented payloads in, events stored once, refusals counted."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import (
    ChannelHealth,
    Delivery,
    DeliveryEvent,
    Recipient,
    Send,
    Suppression,
)
from campaigns.services.events import store
from campaigns.services.events.apply import events_apply
from campaigns.services.events.store import redis_key
from campaigns.services.redisclient import redis_client
from tests import webhook_payloads as payloads
from tests.factories import CampaignFactory, RecipientFactory
from tests.processes import CeleryProcess, wait_for

Kind = DeliveryEvent.Kind
SECRET = "hooks:s3cret"
SIGNING_KEY = "key-test-signing-0123456789"


@pytest.fixture(autouse=True)
def _anymail(settings: Settings) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


@pytest.fixture(autouse=True)
def _redis_clean(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply asks another test left in Redis, or in this process, are forgotten."""
    ChannelHealth.objects.all().delete()
    redis_client().delete(redis_key("apply-pending"))
    monkeypatch.setattr(store, "_covered_until", 0.0)


def _auth(secret: str = SECRET) -> dict[str, str]:
    token = base64.b64encode(secret.encode()).decode()
    return {"Authorization": f"Basic {token}"}


def post(
    esp: str,
    body: Any,
    *,
    auth: dict[str, str] | None = None,
    raw: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return Client().post(
        reverse(f"anymail:{esp}_tracking_webhook"),
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        headers={**(_auth() if auth is None else auth), **(headers or {})},
    )


def _delivery(email: str, esp_id: str) -> Delivery:
    recipient = RecipientFactory.create(email=email)
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="now")
    return Delivery.objects.create(
        send=send, recipient=recipient, status=Delivery.Status.SENT, esp_message_id=esp_id
    )


def _sns(body: dict[str, Any]) -> dict[str, str]:
    return {
        "X-Amz-Sns-Message-Type": body["Type"],
        "X-Amz-Sns-Message-Id": body["MessageId"],
    }


@pytest.mark.django_db
class TestStored:
    def test_a_postmark_hard_bounce_is_stored_and_suppresses(self) -> None:
        delivery = _delivery("john@example.com", payloads.POSTMARK_MESSAGE_ID)
        response = post("postmark", payloads.postmark_hard_bounce("John@Example.com"))
        assert response.status_code == 200
        event = DeliveryEvent.objects.get()
        assert (event.source, event.kind, event.email) == (
            "postmark",
            Kind.BOUNCED,
            "john@example.com",
        )
        assert (event.event_key, event.message_id) == (
            "4323372036854775807/john@example.com",
            payloads.POSTMARK_MESSAGE_ID,
        )
        assert event.payload["Type"] == "HardBounce"
        assert event.occurred_at is not None
        events_apply()
        assert Send.objects.get(pk=delivery.send_id).bounced_count == 1
        assert Suppression.objects.get().reason == Suppression.Reason.HARD_BOUNCE
        recipient = Recipient.objects.get(pk=delivery.recipient_id)
        assert recipient.status == Recipient.Status.BOUNCED

    def test_a_postmark_soft_bounce_is_soft(self) -> None:
        body = payloads.postmark_soft_bounce("a@example.com", event_id=7, message_id="m-1")
        assert post("postmark", body).status_code == 200
        assert DeliveryEvent.objects.get().kind == Kind.SOFT_BOUNCED

    def test_postmark_complaint_and_delivery(self) -> None:
        delivery = _delivery("jane@example.com", "pm-77")
        post("postmark", payloads.postmark_delivery("jane@example.com", message_id="pm-77"))
        post("postmark", payloads.postmark_spam_complaint("jane@example.com", message_id="pm-77"))
        assert set(DeliveryEvent.objects.values_list("kind", flat=True)) == {
            Kind.DELIVERED,
            Kind.COMPLAINED,
        }
        events_apply()
        send = Send.objects.get(pk=delivery.send_id)
        assert (send.delivered_count, send.complained_count) == (1, 1)
        recipient = Recipient.objects.get(pk=delivery.recipient_id)
        assert recipient.status == Recipient.Status.COMPLAINED

    def test_the_same_webhook_twice_is_one_event_counted_once(
        self, django_capture_on_commit_callbacks: Any
    ) -> None:
        delivery = _delivery("john@example.com", payloads.POSTMARK_MESSAGE_ID)
        for _ in range(2):
            with django_capture_on_commit_callbacks(execute=True) as published:
                post("postmark", payloads.postmark_hard_bounce("john@example.com"))
            assert len(published) == 1  # after the commit: the apply ask
            events_apply()
        assert DeliveryEvent.objects.count() == 1
        assert Send.objects.get(pk=delivery.send_id).bounced_count == 1
        # Counted by the applier from the events stored: the repeat is the same one event.
        assert ChannelHealth.objects.get(source="postmark").events_received == 1

    def test_an_ses_bounce_and_complaint_through_sns(self) -> None:
        _delivery("ses@example.com", "ses-msg-1")
        bounce = payloads.sns_notification(
            payloads.ses_bounce("ses@example.com", message_id="ses-msg-1"), sns_id="sns-1"
        )
        complaint = payloads.sns_notification(
            payloads.ses_complaint("other@example.com", message_id="ses-msg-2"), sns_id="sns-2"
        )
        assert post("amazon_ses", bounce, headers=_sns(bounce)).status_code == 200
        assert post("amazon_ses", complaint, headers=_sns(complaint)).status_code == 200
        kinds = dict(DeliveryEvent.objects.values_list("email", "kind"))
        assert kinds == {"ses@example.com": Kind.BOUNCED, "other@example.com": Kind.COMPLAINED}
        events_apply()
        reasons = dict(Suppression.objects.values_list("email", "reason"))
        assert reasons == {
            "ses@example.com": Suppression.Reason.HARD_BOUNCE,
            "other@example.com": Suppression.Reason.COMPLAINT,
        }

    def test_a_signed_mailgun_permanent_failure(self) -> None:
        _delivery("alice@example.com", "<20130503182626.18666.16540@sandbox.mailgun.org>")
        body = payloads.mailgun_failed(
            "alice@example.com",
            message_id="20130503182626.18666.16540@sandbox.mailgun.org",
            signing_key=SIGNING_KEY,
            token="a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
        )
        assert post("mailgun", body).status_code == 200
        event = DeliveryEvent.objects.get()
        assert (event.kind, event.mta_response[:3]) == (Kind.BOUNCED, "550")
        events_apply()
        assert event.email in set(Suppression.objects.values_list("email", flat=True))
        assert Delivery.objects.get().bounced_at is not None

    def test_a_sendgrid_batch_is_stored_in_one_request(self) -> None:
        body = payloads.sendgrid_batch("grid@example.com", smtp_id="<14c5d75ce93@ismtpd-555>")
        assert post("sendgrid", body).status_code == 200
        assert sorted(DeliveryEvent.objects.values_list("kind", flat=True)) == sorted(
            [Kind.QUEUED, Kind.DEFERRED, Kind.DELIVERED, Kind.BOUNCED]
        )
        events_apply()
        assert Suppression.objects.get().email == "grid@example.com"


@pytest.mark.django_db
class TestRefused:
    def test_wrong_basic_auth_is_401_and_counted(self) -> None:
        response = post(
            "postmark", payloads.postmark_hard_bounce("x@example.com"), auth=_auth("a:b")
        )
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Basic")
        assert not DeliveryEvent.objects.exists()
        health = ChannelHealth.objects.get(source="postmark")
        assert (health.auth_failures, health.last_auth_failure) == (1, "wrong basic auth")
        assert health.last_auth_failure_at is not None

    def test_missing_basic_auth_is_401(self) -> None:
        response = post("postmark", payloads.postmark_hard_bounce("x@example.com"), auth={})
        assert response.status_code == 401
        assert not DeliveryEvent.objects.exists()

    def test_a_bad_mailgun_signature_is_403(self) -> None:
        body = payloads.mailgun_failed(
            "alice@example.com",
            message_id="m@mailgun",
            signing_key=SIGNING_KEY,
            token="t" * 50,
            signature="0" * 64,
        )
        assert post("mailgun", body).status_code == 403
        assert not DeliveryEvent.objects.exists()
        assert ChannelHealth.objects.get(source="mailgun").auth_failures == 1

    def test_malformed_json_is_400(self) -> None:
        response = post("postmark", None, raw='{"RecordType": "Bounce", ')
        assert response.status_code == 400
        assert not DeliveryEvent.objects.exists()
        health = ChannelHealth.objects.get(source="postmark")
        assert health.rejected_payloads == 1
        assert "not JSON" in health.last_rejected

    def test_an_unknown_shape_is_400(self) -> None:
        assert post("sendgrid", [{"no": "event"}]).status_code == 400
        assert post("mailgun", {"event-data": {}}).status_code in (400, 403)
        assert not DeliveryEvent.objects.exists()

    def test_a_get_is_not_allowed(self) -> None:
        assert Client().get(reverse("anymail:postmark_tracking_webhook")).status_code == 405


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_applies_what_a_webhook_stored(worker: CeleryProcess) -> None:
    delivery = _delivery("john@example.com", payloads.POSTMARK_MESSAGE_ID)
    assert post("postmark", payloads.postmark_hard_bounce("john@example.com")).status_code == 200

    def applied() -> bool:
        return not DeliveryEvent.objects.filter(applied_at=None).exists()

    wait_for(applied, timeout=60, what="the worker to apply the event", logs=worker.log)
    assert Send.objects.get(pk=delivery.send_id).bounced_count == 1
    assert Suppression.objects.get().email == "john@example.com"
    assert Recipient.objects.get(pk=delivery.recipient_id).status == Recipient.Status.BOUNCED
    assert ChannelHealth.objects.get(source="postmark").events_received == 1
