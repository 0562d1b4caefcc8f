"""Guardrails through their services: the rates, the thresholds, the pause, the approvers'
email and the resume, with the real database, Redis and SMTP sink."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core import mail
from django.core.exceptions import ValidationError
from django.db.models import F
from django.db.models.expressions import CombinedExpression
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import (
    AuditEntry,
    Delivery,
    DeliveryEvent,
    Guardrail,
    Recipient,
    Send,
    Subscription,
)
from campaigns.selectors.guardrails import guardrail_pause_of, guardrail_paused_sends
from campaigns.services.channels import ChannelResult
from campaigns.services.delivery import batch_deliver, send_launch, send_pause, send_resume
from campaigns.services.delivery.batch import TROUBLE_FLUSH_EVERY
from campaigns.services.delivery.control import send_guardrail_pause
from campaigns.services.events.apply import events_apply
from campaigns.services.guardrail_notices import approvers_emails, guardrail_notify
from campaigns.services.guardrails import above, guard_note, guard_window_clear, send_guard
from campaigns.services.smtp import Outcome
from opsdash.smtp_sink import SmtpSink
from tests.factories import AudienceFactory, CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

Published = list[tuple[int, int, int, str]]


@pytest.fixture(autouse=True)
def _no_notice(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The approvers' notice is published to the broker after a pause: recorded here instead
    (the fault test runs the real task on a real worker)."""
    published: list[int] = []
    monkeypatch.setattr(
        "campaigns.services.delivery.control.publish_guardrail_notice", published.append
    )
    return published


def running_send(
    count: int, *, gone: Callable[[int], bool] = lambda i: False
) -> tuple[Send, Published]:
    """A launched send of ``count`` recipients; ``gone(i)`` names the addresses whose mailbox
    does not exist (the sink refuses them when told to)."""
    tag = uuid.uuid4().hex[:6]
    audience = AudienceFactory.create()
    recipients = Recipient.objects.bulk_create(
        Recipient(email=f"{'gone' if gone(i) else 'ok'}-{tag}-{i}@example.com")
        for i in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(recipient=r, audience=audience) for r in recipients
    )
    campaign = CampaignFactory.create(audiences=[audience])
    published: Published = []
    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    guard_window_clear(send_id=send.pk)
    return send, published


def counters(send: Send, **values: int | F | CombinedExpression) -> None:
    Send.objects.filter(pk=send.pk).update(**values)


def approver(**fields: object) -> User:
    user = UserFactory.create(**fields)
    user.user_permissions.add(Permission.objects.get(codename="approve_campaign"))
    return User.objects.get(pk=user.pk)  # a fresh object: no cached permissions


def sender() -> User:
    user = UserFactory.create()
    user.user_permissions.add(Permission.objects.get(codename="send_campaign"))
    return User.objects.get(pk=user.pk)


# --- Thresholds ------------------------------------------------------------------------------


def test_above_is_exact_at_the_edge() -> None:
    assert not above(10, 200, 5.0)
    assert above(11, 200, 5.0)
    assert not above(1, 1000, 0.1)
    assert above(2, 1000, 0.1)
    assert not above(5, 0, 5.0)


def test_below_the_minimum_a_send_never_pauses() -> None:
    send, _ = running_send(3)
    counters(send, sent_count=199, bounced_count=150, complained_count=40)

    assert send_guard(send_id=send.pk) is None
    assert Send.objects.get(pk=send.pk).status == Send.Status.RUNNING


def test_a_hard_bounce_rate_at_the_threshold_does_not_pause() -> None:
    send, _ = running_send(3)
    counters(send, sent_count=200, bounced_count=10)

    assert send_guard(send_id=send.pk) is None
    assert Send.objects.get(pk=send.pk).status == Send.Status.RUNNING


def test_a_hard_bounce_rate_above_the_threshold_pauses_with_its_reason(
    _no_notice: list[int],
) -> None:
    send, _ = running_send(3)
    counters(send, sent_count=200, bounced_count=11)

    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES

    send.refresh_from_db()
    assert send.status == Send.Status.PAUSED
    assert send.guardrail == Guardrail.HARD_BOUNCES and send.guardrail_at is not None
    assert "5.50 % (11 of 200 messages)" in send.paused_reason
    assert "above the 5 % guardrail" in send.paused_reason
    trip = send.guardrail_state["trip"]
    assert (trip["count"], trip["base"], trip["threshold"]) == (11, 200, 5.0)
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.PAUSED)
    assert entry.actor is None and entry.changes["guardrail"] == Guardrail.HARD_BOUNCES
    assert _no_notice == [send.pk]


def test_complaints_pause_above_their_threshold_only() -> None:
    send, _ = running_send(3)
    counters(send, sent_count=1000, complained_count=1)
    assert send_guard(send_id=send.pk) is None

    counters(send, complained_count=2)
    assert send_guard(send_id=send.pk) == Guardrail.COMPLAINTS
    assert Send.objects.get(pk=send.pk).paused_reason.startswith("Complaint rate 0.20 %")


def test_thresholds_come_from_the_settings(settings: Settings) -> None:
    settings.OPSDASH_GUARDRAIL_MIN_MESSAGES = 50
    settings.OPSDASH_GUARDRAIL_HARD_BOUNCE_PERCENT = 20.0
    send, _ = running_send(3)
    counters(send, sent_count=50, bounced_count=10)
    assert send_guard(send_id=send.pk) is None

    counters(send, bounced_count=11)
    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES


def test_guardrails_can_be_turned_off(settings: Settings) -> None:
    settings.OPSDASH_GUARDRAIL_ENABLED = False
    send, _ = running_send(3)
    counters(send, sent_count=1000, bounced_count=900)

    assert send_guard(send_id=send.pk) is None


def test_a_paused_or_finished_send_is_left_alone() -> None:
    send, _ = running_send(3)
    counters(send, sent_count=1000, bounced_count=900)
    send_pause(send_id=send.pk, by=None)

    assert send_guard(send_id=send.pk) is None
    assert Send.objects.get(pk=send.pk).guardrail == ""


# --- Hard failures at send time, through the batch loop --------------------------------------


def test_refusals_for_missing_mailboxes_pause_the_send_and_nothing_leaves_after(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_GUARDRAIL_MIN_MESSAGES = 20
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 5
    smtp_sink.rule = lambda address: (
        "550 5.1.1 No such user" if address.startswith("gone") else None
    )
    send, published = running_send(80, gone=lambda i: i % 4 == 0)

    for s, first, last, task_id in published:
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)

    send.refresh_from_db()
    assert send.status == Send.Status.PAUSED and send.guardrail == Guardrail.HARD_BOUNCES
    sent = Delivery.objects.filter(send=send, status=Delivery.Status.SENT).count()
    assert len(smtp_sink.messages) == sent == send.sent_count
    assert Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).exists()
    trip = send.guardrail_state["trip"]
    assert trip["base"] >= 20 and trip["count"] * 4 >= trip["base"] - 5


def test_refusals_are_written_early_so_large_outcome_writes_do_not_delay_the_pause(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    """Clean outcomes are written every OPSDASH_DELIVERY_FLUSH_EVERY (500) messages, but a
    refusal among them gets them written within TROUBLE_FLUSH_EVERY: the guardrail reads
    what is written, so it stops a bad send about as soon as the minimum is reached."""
    settings.OPSDASH_GUARDRAIL_MIN_MESSAGES = 100
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 500
    settings.OPSDASH_DELIVERY_BATCH_SIZE = 2000
    smtp_sink.rule = lambda address: (
        "550 5.1.1 No such user" if address.startswith("gone") else None
    )
    send, published = running_send(600, gone=lambda i: i % 4 == 0)
    assert len(published) == 1  # one batch: nothing but the loop's own writes to go by

    for s, first, last, task_id in published:
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)

    send.refresh_from_db()
    assert send.status == Send.Status.PAUSED and send.guardrail == Guardrail.HARD_BOUNCES
    handled = send.sent_count + send.failed_count
    assert 100 <= handled <= 100 + TROUBLE_FLUSH_EVERY + 16, handled  # + a round in flight
    assert Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).count() >= 400


def test_permanent_rejections_that_are_not_missing_mailboxes_do_not_count(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_GUARDRAIL_MIN_MESSAGES = 20
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 5
    smtp_sink.rule = lambda address: "554 5.7.1 Policy" if address.startswith("gone") else None
    send, published = running_send(40, gone=lambda i: i % 4 == 0)

    for s, first, last, task_id in published:
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)

    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.guardrail == ""
    assert send.failed_count == 10


# --- Bounces and complaints reported afterwards ----------------------------------------------


def test_applied_bounce_events_pause_the_send(smtp_sink: SmtpSink, settings: Settings) -> None:
    settings.OPSDASH_GUARDRAIL_MIN_MESSAGES = 20
    settings.OPSDASH_DELIVERY_BATCH_SIZE = 10
    send, published = running_send(40)
    s, first, last, task_id = published[0]
    batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)
    rows = list(Delivery.objects.filter(send=send, status=Delivery.Status.SENT)[:2])
    # Only part of the send has gone: 2 of 10 would pass 5 %, but 10 is below the minimum.
    counters(send, sent_count=F("sent_count") + 20)  # as if two more batches went out
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            source="test",
            event_key=f"bounce-{row.pk}",
            kind=DeliveryEvent.Kind.BOUNCED,
            delivery_id=row.pk,
            email="",
        )
        for row in rows
    )

    events_apply()

    send.refresh_from_db()
    assert send.bounced_count == 2
    assert send.status == Send.Status.PAUSED and send.guardrail == Guardrail.HARD_BOUNCES


# --- Deferrals per provider ------------------------------------------------------------------

THROTTLED = ChannelResult(Outcome.TRANSIENT, 421, "4.7.0 slow down", throttled=True)
ACCEPTED = ChannelResult(Outcome.SENT, 250, "OK")
NO_CONNECTION = ChannelResult(Outcome.TRANSIENT, 0, "cannot connect", attempted=False)
ESP_429 = ChannelResult(Outcome.TRANSIENT, 429, "rate limit", attempted=False, throttled=True)


def note(send: Send, provider: str, deferred: int, accepted: int) -> None:
    for _ in range(deferred):
        guard_note(send_id=send.pk, provider=provider, result=THROTTLED)
    for _ in range(accepted):
        guard_note(send_id=send.pk, provider=provider, result=ACCEPTED)


def test_deferrals_from_one_provider_pause_above_the_threshold() -> None:
    send, _ = running_send(3)
    note(send, "google", deferred=30, accepted=70)
    note(send, "microsoft", deferred=0, accepted=100)
    assert send_guard(send_id=send.pk) is None  # exactly 30 %

    note(send, "google", deferred=2, accepted=0)
    assert send_guard(send_id=send.pk) == Guardrail.DEFERRALS

    send.refresh_from_db()
    assert send.paused_reason.startswith("Google deferred 31.4 % of 102 attempts")
    assert send.guardrail_state["trip"]["provider"] == "google"


def test_deferrals_below_the_minimum_attempts_never_pause() -> None:
    send, _ = running_send(3)
    note(send, "yahoo", deferred=60, accepted=39)

    assert send_guard(send_id=send.pk) is None


def test_messages_the_server_or_the_esp_never_took_are_not_attempts() -> None:
    send, _ = running_send(3)
    note(send, "google", deferred=40, accepted=59)
    for _ in range(50):
        guard_note(send_id=send.pk, provider="google", result=NO_CONNECTION)
        guard_note(send_id=send.pk, provider="google", result=ESP_429)

    assert send_guard(send_id=send.pk) is None  # 99 attempts: below the minimum


# --- Resume ----------------------------------------------------------------------------------


def tripped(sent: int = 200, bounced: int = 11) -> Send:
    send, _ = running_send(3)
    counters(send, sent_count=sent, bounced_count=bounced)
    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES
    return send


def test_only_an_approver_with_a_reason_resumes_a_guardrail_pause() -> None:
    send = tripped()

    for by, reason in ((None, "checked"), (sender(), "checked"), (approver(), "  ")):
        with pytest.raises(ValidationError):
            send_resume(send_id=send.pk, by=by, reason=reason, publish=lambda *batch: None)
        assert Send.objects.get(pk=send.pk).status == Send.Status.PAUSED

    boss = approver()
    send_resume(send_id=send.pk, by=boss, reason="list cleaned", publish=lambda *batch: None)

    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING
    assert (send.guardrail, send.paused_reason, send.guardrail_at) == ("", "", None)
    accepted = send.guardrail_state["accepted"]
    assert (accepted["sent"], accepted["bounced"], accepted["by"]) == (200, 11, boss.username)
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.RESUMED)
    assert entry.actor == boss
    assert entry.changes["reason"] == "list cleaned"
    assert entry.changes["guardrail"] == Guardrail.HARD_BOUNCES


def test_an_approver_by_group_may_resume() -> None:
    send = tripped()
    group = Group.objects.create(name=f"approvers-{uuid.uuid4().hex[:6]}")
    group.permissions.add(Permission.objects.get(codename="approve_campaign"))
    user = UserFactory.create()
    user.groups.add(group)

    send_resume(
        send_id=send.pk, by=User.objects.get(pk=user.pk), reason="ok", publish=lambda *b: None
    )
    assert Send.objects.get(pk=send.pk).status == Send.Status.RUNNING


def test_a_pause_by_a_person_is_resumed_by_any_sender_without_a_reason() -> None:
    send, _ = running_send(3)
    send_pause(send_id=send.pk, by=None)

    send_resume(send_id=send.pk, by=sender(), publish=lambda *batch: None)
    assert Send.objects.get(pk=send.pk).status == Send.Status.RUNNING


def test_after_an_approved_resume_the_same_rates_do_not_pause_again_at_once() -> None:
    send = tripped(sent=200, bounced=11)
    send_resume(send_id=send.pk, by=approver(), reason="accepted", publish=lambda *b: None)

    assert send_guard(send_id=send.pk) is None
    # 200 more messages with 10 more bounces: at the threshold, measured after the resume.
    counters(send, sent_count=400, bounced_count=21)
    assert send_guard(send_id=send.pk) is None
    # One more bounce among them passes it.
    counters(send, bounced_count=22)
    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES
    send.refresh_from_db()
    assert send.guardrail_state["trip"]["since_resume"] is True
    assert "since the last resume" in send.paused_reason
    assert len(send.guardrail_state["trips"]) == 2


def test_after_a_resume_fewer_new_messages_than_the_minimum_never_pause() -> None:
    send = tripped(sent=200, bounced=11)
    send_resume(send_id=send.pk, by=approver(), reason="accepted", publish=lambda *b: None)

    counters(send, sent_count=399, bounced_count=100)
    assert send_guard(send_id=send.pk) is None


def test_the_deferral_window_starts_again_after_a_resume() -> None:
    send, _ = running_send(3)
    note(send, "google", deferred=50, accepted=50)
    assert send_guard(send_id=send.pk) == Guardrail.DEFERRALS
    send_resume(send_id=send.pk, by=approver(), reason="throttling over", publish=lambda *b: None)

    note(send, "google", deferred=1, accepted=98)
    assert send_guard(send_id=send.pk) is None


# --- Telling the approvers -------------------------------------------------------------------


def test_the_approvers_are_emailed_directly_or_by_group_if_active_with_an_address() -> None:
    direct = approver(email="direct@example.com")
    group = Group.objects.create(name=f"approvers-{uuid.uuid4().hex[:6]}")
    group.permissions.add(Permission.objects.get(codename="approve_campaign"))
    grouped = UserFactory.create(email="grouped@example.com")
    grouped.groups.add(group)
    approver(email="asleep@example.com", is_active=False)
    approver(email="")
    sender()
    send = tripped()
    mail.outbox.clear()

    assert sorted(approvers_emails()) == sorted([direct.email, grouped.email])
    assert guardrail_notify(send_id=send.pk) == 2

    assert sorted(m.to[0] for m in mail.outbox) == ["direct@example.com", "grouped@example.com"]
    message = mail.outbox[0]
    assert "Paused by a guardrail" in message.subject
    assert "11 of 200 messages" in message.body
    assert f"/admin/campaigns/send/{send.pk}/change/" in message.body


def test_no_email_once_the_send_is_resumed() -> None:
    approver(email="late@example.com")
    send = tripped()
    send_resume(send_id=send.pk, by=approver(), reason="fine", publish=lambda *b: None)
    mail.outbox.clear()

    assert guardrail_notify(send_id=send.pk) == 0 and mail.outbox == []


def test_a_notice_that_cannot_be_published_never_undoes_the_pause() -> None:
    send, _ = running_send(3)

    def broken(send_id: int) -> None:
        raise ConnectionError("broker away")

    moved = send_guardrail_pause(
        send_id=send.pk, guardrail=Guardrail.COMPLAINTS, reason="test", state={}, notify=broken
    )

    assert moved and Send.objects.get(pk=send.pk).status == Send.Status.PAUSED


# --- Read side -------------------------------------------------------------------------------


def test_the_dashboard_lists_sends_paused_by_a_guardrail_only() -> None:
    send = tripped()
    by_hand, _ = running_send(3)
    send_pause(send_id=by_hand.pk, by=None)

    pauses = guardrail_paused_sends()

    assert [p.send_id for p in pauses] == [send.pk]
    pause = pauses[0]
    assert pause.figures_line == "11 of 200 messages (5.50 %); the guardrail is 5 %"
    assert guardrail_pause_of(Send.objects.get(pk=by_hand.pk)) is None
    assert pause.at != "—" and timezone.now()


# --- Cost ------------------------------------------------------------------------------------


def test_a_check_after_a_flush_costs_one_query_when_the_counters_rule_it_out(
    django_assert_num_queries: Callable[..., Any],
) -> None:
    send, _ = running_send(3)
    counters(send, sent_count=5000, failed_count=40, bounced_count=10, complained_count=2)

    with django_assert_num_queries(1):
        assert send_guard(send_id=send.pk) is None


def test_notes_of_a_batch_that_writes_no_outcome_are_checked_by_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An ESP answering 429 to every call: rows go back without an outcome write.
    send, _ = running_send(3)
    note(send, "google", deferred=99, accepted=0)
    monkeypatch.setattr("campaigns.services.guardrails.NOTE_FLUSH_SECONDS", 0.0)

    guard_note(send_id=send.pk, provider="google", result=THROTTLED)

    assert Send.objects.get(pk=send.pk).guardrail == Guardrail.DEFERRALS
