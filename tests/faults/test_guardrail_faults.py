"""A guardrail's pause with real parts: a Celery worker process (two sending at once), RabbitMQ,
PostgreSQL, Redis and a real SMTP sink that refuses missing mailboxes with 550 5.1.1.

The pause is exact: once the guardrail trips, nothing more reaches the sink beyond the messages
already handed to SMTP by the other batch at that moment, and the sink agrees with the sent
rows. An approver's resume then sends the rest, each once. The counts go to the fault report.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission, User

from campaigns.models import AuditEntry, Delivery, Guardrail, Send
from campaigns.publishers import publish_batch
from campaigns.services import delivery
from opsdash.smtp_sink import SmtpSink
from tests.factories import UserFactory
from tests.faults.conftest import FAULT_ENV, WORKER_CONCURRENCY, fault_worker
from tests.faults.harness import at_sink, campaign_of, start_send, wait_done, wait_for
from tests.processes import CeleryProcess

# Sessions per worker process: the messages a batch can have in flight when the pause lands.
CONNECTIONS = 4

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 300
MINIMUM = 60
APPROVER_EMAIL = "approver-on-duty@example.org"
# Among the first hundred recipients every fifth mailbox does not exist (20 %, far above the
# 5 % guardrail); the rest of the list is clean.
GONE_BELOW, GONE_EVERY = 100, 5


def _index(address: str) -> int:
    return int(address.partition("@")[0].rsplit("-", 1)[1])


# When the sink was asked for each address (RCPT TO, the start of its SMTP transaction).
ASKED_AT: dict[str, float] = {}


def _missing_mailbox(address: str) -> str | None:
    ASKED_AT[address] = time.time()
    if address == APPROVER_EMAIL:
        return None
    i = _index(address)
    return "550 5.1.1 No such user" if i < GONE_BELOW and i % GONE_EVERY == 0 else None


def _accepted_after(sink: SmtpSink, moment: float) -> int:
    """Campaign messages at the sink whose SMTP transaction began after ``moment``."""
    addresses = {m["To"].addresses[0].addr_spec for m in sink.messages} - {APPROVER_EMAIL}
    return sum(1 for address in addresses if ASKED_AT.get(address, 0.0) > moment)


def _campaign_messages(sink: SmtpSink) -> int:
    return sum(1 for m in sink.messages if m["To"].addresses[0].addr_spec != APPROVER_EMAIL)


def _approver() -> User:
    user = UserFactory.create(username="on-duty", email=APPROVER_EMAIL)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["approve_campaign", "send_campaign"])
    )
    return User.objects.get(pk=user.pk)


def test_a_guardrail_pause_is_exact_and_an_approved_resume_sends_the_rest_once(
    smtp_sink: SmtpSink, worker_factory: list[CeleryProcess], report: list[str]
) -> None:
    approver = _approver()
    ASKED_AT.clear()
    smtp_sink.rule = _missing_mailbox
    env = {
        **FAULT_ENV,
        "OPSDASH_GUARDRAIL_MIN_MESSAGES": str(MINIMUM),
        "OPSDASH_DELIVERY_CONNECTIONS": str(CONNECTIONS),
    }
    worker_factory.append(fault_worker(smtp_sink, env).start())
    send = start_send(campaign_of(RECIPIENTS))

    def paused() -> bool:
        send.refresh_from_db()
        return send.status != Send.Status.RUNNING

    wait_for(paused, timeout=90, what="the guardrail to pause the send")
    assert send.status == Send.Status.PAUSED and send.guardrail == Guardrail.HARD_BOUNCES
    wait_for(
        lambda: not Delivery.objects.filter(send=send, status=Delivery.Status.SENDING).exists(),
        timeout=30,
        what="the batches to hand their rows back",
    )
    time.sleep(3)  # a message sent after the pause would arrive by now
    send.refresh_from_db()
    rows = Delivery.objects.filter(send=send)
    sent_rows = rows.filter(status=Delivery.Status.SENT)
    at_pause = _campaign_messages(smtp_sink)
    # The pause's audit entry is written in its transaction after the Send's UPDATE: the
    # moment the pause takes effect, but for the commit and the status going to Redis. A
    # message whose SMTP transaction began after it was in flight then (the other batch had
    # read the status just before); guardrail_at is when the guardrail decided.
    paused_at = AuditEntry.objects.get(send=send, action=AuditEntry.Action.PAUSED).created_at
    assert send.guardrail_at is not None
    in_flight = _accepted_after(smtp_sink, paused_at.timestamp())
    since_decision = _accepted_after(smtp_sink, send.guardrail_at.timestamp())
    trip = send.guardrail_state["trip"]
    report.append(
        f"tripped at {trip['count']} of {trip['base']} messages ({trip['percent']:.1f} %); "
        f"{at_pause} at the sink, {sent_rows.count()} sent rows; {in_flight} begun after the "
        f"pause (in flight), {since_decision} after the guardrail decided "
        f"({(paused_at - send.guardrail_at).total_seconds() * 1000:.0f} ms before the pause); "
        f"{rows.filter(status=Delivery.Status.QUEUED).count()} still queued"
    )
    assert at_pause == sent_rows.count() == send.sent_count
    # At most the messages each batch had already handed to its sessions (cleared before the
    # pause); nothing is handed over after it.
    assert in_flight <= WORKER_CONCURRENCY * CONNECTIONS
    assert trip["base"] >= MINIMUM and trip["percent"] > 5.0
    time.sleep(2)
    assert _campaign_messages(smtp_sink) == at_pause  # and nothing leaves while paused

    wait_for(
        lambda: any(m["To"].addresses[0].addr_spec == APPROVER_EMAIL for m in smtp_sink.messages),
        timeout=30,
        what="the approver's email",
    )
    notice = next(m for m in smtp_sink.messages if m["To"].addresses[0].addr_spec == APPROVER_EMAIL)
    assert "Paused by a guardrail" in str(notice["Subject"])

    # The approver looked: the missing mailboxes are suppressed, the rest of the list is good.
    smtp_sink.rule = None
    delivery.send_resume(
        send_id=send.pk, by=approver, reason="bad segment suppressed", publish=publish_batch
    )
    wait_done(send, worker_factory)

    count = at_sink(smtp_sink, send)
    failed = rows.filter(status=Delivery.Status.FAILED).count()
    report.append(
        f"after the resume: {send.status}, {sent_rows.count()} sent + {failed} failed, "
        f"lost {len(count.lost)}, duplicates {count.duplicates}"
    )
    assert send.status == Send.Status.COMPLETED
    assert sent_rows.count() + failed == RECIPIENTS
    assert count.lost == set() and count.duplicates == 0
    assert _campaign_messages(smtp_sink) == sent_rows.count()
    assert (
        sum(1 for m in smtp_sink.messages if m["To"].addresses[0].addr_spec == APPROVER_EMAIL) == 1
    )
