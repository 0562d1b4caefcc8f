"""Stored events applied in bulk: counters once per delivery, suppression, soft-bounce limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import (
    AuditEntry,
    ChannelHealth,
    Delivery,
    DeliveryEvent,
    Recipient,
    Send,
    Subscription,
    Suppression,
)
from campaigns.services.audiences import recipient_suppress
from campaigns.services.events import store
from campaigns.services.events.apply import events_apply
from campaigns.services.events.store import EventIn, apply_ask, events_store, redis_key
from campaigns.services.redisclient import redis_client
from campaigns.services.suppressions import suppression_lift
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
Kind = DeliveryEvent.Kind


@pytest.fixture(autouse=True)
def _no_run_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    """No apply run is pending, in Redis or to this process's knowledge."""
    redis_client().delete(redis_key("apply-pending"))
    monkeypatch.setattr(store, "_covered_until", 0.0)


def _delivery(email: str = "", esp_id: str = "") -> Delivery:
    recipient = RecipientFactory.create(**({"email": email} if email else {}))
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="now")
    return Delivery.objects.create(
        send=send, recipient=recipient, status=Delivery.Status.SENT, esp_message_id=esp_id
    )


def _event(kind: DeliveryEvent.Kind, key: str, **fields: object) -> EventIn:
    return EventIn(source="postmark", kind=kind, event_key=key, **fields)  # type: ignore[arg-type]


def _send(delivery: Delivery) -> Send:
    return Send.objects.get(pk=delivery.send_id)


def test_the_same_event_twice_is_one_row_counted_once() -> None:
    delivery = _delivery(esp_id="pm-1")
    events_store([_event(Kind.DELIVERED, "e1", message_id="pm-1")])
    events_store([_event(Kind.DELIVERED, "e1", message_id="pm-1")])
    events_apply()
    events_store([_event(Kind.DELIVERED, "e1", message_id="pm-1")])
    events_apply()
    assert DeliveryEvent.objects.count() == 1
    assert _send(delivery).delivered_count == 1
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None
    assert DeliveryEvent.objects.get().delivery_id == delivery.pk


def test_a_second_event_of_a_kind_for_a_delivery_does_not_count_again() -> None:
    delivery = _delivery(esp_id="pm-2")
    events_store([_event(Kind.OPENED, "o1", message_id="pm-2")])
    events_apply()
    events_store([_event(Kind.OPENED, "o2", message_id="pm-2")])
    events_apply()
    assert _send(delivery).opened_count == 1
    assert DeliveryEvent.objects.filter(applied_at=None).count() == 0


def test_delivered_after_bounced_counts_each_once() -> None:
    delivery = _delivery(email="late@example.com", esp_id="pm-3")
    events_store([_event(Kind.BOUNCED, "b1", message_id="pm-3", description="no such user")])
    events_apply()
    events_store([_event(Kind.DELIVERED, "d1", message_id="pm-3")])
    events_store([_event(Kind.BOUNCED, "b2", message_id="pm-3")])
    events_apply()
    send = _send(delivery)
    assert (send.bounced_count, send.delivered_count) == (1, 1)


def test_a_hard_bounce_suppresses_and_audits_the_address() -> None:
    delivery = _delivery(email="gone@example.com", esp_id="pm-4")
    events_store([_event(Kind.BOUNCED, "b1", message_id="pm-4", description="mailbox gone")])
    result = events_apply()
    assert result.suppressed == 1
    row = Suppression.objects.get()
    event = DeliveryEvent.objects.get()
    assert (row.email, row.reason, row.recipient_id) == (
        "gone@example.com",
        Suppression.Reason.HARD_BOUNCE,
        delivery.recipient_id,
    )
    assert (row.event_id, row.source, row.detail) == (event.pk, "postmark", "mailbox gone")
    assert Recipient.objects.get(pk=delivery.recipient_id).status == Recipient.Status.BOUNCED
    entry = AuditEntry.objects.get(action=AuditEntry.Action.SUPPRESSED)
    assert entry.recipient_id == delivery.recipient_id
    assert entry.changes["to"] == Recipient.Status.BOUNCED
    assert entry.changes["event"] == event.pk
    assert "mailbox gone" in entry.changes["reason"]


def test_a_complaint_for_an_unknown_message_still_suppresses_the_address() -> None:
    recipient = RecipientFactory.create(email="angry@example.com")
    events_store([_event(Kind.COMPLAINED, "c1", message_id="unknown", email="angry@example.com")])
    events_apply()
    assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINT
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.COMPLAINED


def test_an_unknown_address_is_still_listed() -> None:
    events_store([_event(Kind.BOUNCED, "b1", email="nobody@example.com")])
    events_apply()
    row = Suppression.objects.get()
    assert (row.email, row.recipient_id) == ("nobody@example.com", None)


def test_soft_bounces_suppress_at_the_limit_within_the_window(settings: Settings) -> None:
    settings.OPSDASH_SOFT_BOUNCE_LIMIT = 3
    settings.OPSDASH_SOFT_BOUNCE_WINDOW_DAYS = 7
    recipient = RecipientFactory.create(email="full@example.com")
    old = timezone.now() - timedelta(days=30)
    email = "full@example.com"
    events_store([_event(Kind.SOFT_BOUNCED, "s0", email=email, occurred_at=old)])
    events_store([_event(Kind.SOFT_BOUNCED, f"s{i}", email=email) for i in (1, 2)])
    events_apply()
    assert not Suppression.objects.exists()
    events_store([_event(Kind.SOFT_BOUNCED, "s3", email=email)])
    events_apply()
    assert Suppression.objects.get().reason == Suppression.Reason.SOFT_BOUNCES
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.BOUNCED


def test_an_esp_unsubscribe_unsubscribes_and_leaves_the_lists() -> None:
    subscription = SubscriptionFactory.create()
    email = subscription.recipient.email
    events_store([_event(Kind.UNSUBSCRIBED, "u1", email=email)])
    events_apply()
    assert Suppression.objects.get().reason == Suppression.Reason.ESP_UNSUBSCRIBE
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED
    assert Recipient.objects.get(email=email).status == Recipient.Status.UNSUBSCRIBED


def test_our_message_id_finds_the_delivery() -> None:
    delivery = _delivery()
    events_store([_event(Kind.BOUNCED, "b1", message_id=delivery.message_id)])
    events_apply()
    assert _send(delivery).bounced_count == 1
    event = DeliveryEvent.objects.get()
    assert (event.delivery_id, event.email) == (delivery.pk, delivery.recipient.email)
    assert Suppression.objects.get().email == delivery.recipient.email


def test_a_failing_chunk_leaves_its_events_unapplied(monkeypatch: pytest.MonkeyPatch) -> None:
    delivery = _delivery(esp_id="pm-9")
    events_store([_event(Kind.BOUNCED, "b1", message_id="pm-9")])

    def broken(**_kwargs: object) -> int:
        raise RuntimeError("crash in the middle of a chunk")

    monkeypatch.setattr("campaigns.services.events.apply.suppressions_add", broken)
    with pytest.raises(RuntimeError):
        events_apply()
    assert DeliveryEvent.objects.get().applied_at is None
    delivery.refresh_from_db()
    assert delivery.bounced_at is None
    assert _send(delivery).bounced_count == 0


def test_the_received_counts_reach_channel_health(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        events_store([_event(Kind.DELIVERED, f"d{i}") for i in range(3)])
    events_apply()
    health = ChannelHealth.objects.get(source="postmark")
    assert health.events_received == 3
    assert health.last_event_at is not None


def test_a_mailbox_refused_during_sending_is_listed() -> None:
    recipient = RecipientFactory.create()
    assert recipient_suppress(recipient_ids=[recipient.pk], status=Recipient.Status.BOUNCED) == 1
    row = Suppression.objects.get()
    assert (row.email, row.reason, row.recipient_id) == (
        recipient.email,
        Suppression.Reason.REJECTED,
        recipient.pk,
    )
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.BOUNCED


def test_lifting_needs_the_permission_and_makes_the_person_active() -> None:
    recipient = RecipientFactory.create()
    recipient_suppress(recipient_ids=[recipient.pk], status=Recipient.Status.BOUNCED)
    with pytest.raises(Exception, match="permission"):
        suppression_lift(email=recipient.email, by=user_with_roles("editor"), reason="")
    approver = user_with_roles("approver")
    assert suppression_lift(email=recipient.email, by=approver, reason="fixed") is True
    assert not Suppression.objects.exists()
    recipient.refresh_from_db()
    assert recipient.status == Recipient.Status.ACTIVE
    entry = AuditEntry.objects.get(action=AuditEntry.Action.SUPPRESSION_LIFTED)
    assert (entry.actor, entry.recipient_id) == (approver, recipient.pk)


def test_an_apply_run_is_asked_for_once_until_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[int] = []

    def ask_as_another_process() -> bool:
        monkeypatch.setattr(store, "_covered_until", 0.0)  # knows nothing of earlier asks
        return apply_ask(publish=lambda: published.append(1))

    assert apply_ask(publish=lambda: published.append(1)) is True
    assert [apply_ask(publish=lambda: published.append(1)) for _ in range(3)] == [False] * 3
    assert ask_as_another_process() is False  # it sees the pending run in Redis
    assert published == [1]
    events_apply()  # a run starts: what is stored next asks again
    assert ask_as_another_process() is True
    assert published == [1, 1]


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_replaced_and_the_events_stored() -> None:
    """The webhook path skips Django's per-request connection check: the INSERT is the check,
    run again on a fresh connection when the kept-alive one turns out to be dead."""
    events_store([_event(Kind.DELIVERED, "before")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    events_store([_event(Kind.DELIVERED, "after")])

    assert set(DeliveryEvent.objects.values_list("event_key", flat=True)) == {"before", "after"}
