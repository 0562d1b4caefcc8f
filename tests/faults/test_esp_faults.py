"""Faults on an ESP channel, with real parts: a Celery worker process, RabbitMQ, PostgreSQL,
Redis and the emulated Postmark API (its batch endpoint). Each test counts at the emulator
what it accepted against the rows the database says were sent; the counts go to the fault
report.

A worker killed while an API call is in flight cannot know whether the ESP took that call's
messages, and Postmark has no idempotency key: those messages are sent again (at most one
call's worth per batch). A worker killed between calls loses and repeats nothing, because
every accepted message is in the batch's journal before the next call goes out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from campaigns.models import Delivery, Send
from opsdash.smtp_sink import SmtpSink
from tests.esp_emulator import EspEmulator
from tests.faults.conftest import FAULT_ENV, WORKER_CONCURRENCY
from tests.faults.harness import campaign_of, start_send, statuses, wait_done, wait_for
from tests.processes import CeleryProcess

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 200
GROUP = int(FAULT_ENV["OPSDASH_DELIVERY_FLUSH_EVERY"])  # messages per API call


@pytest.fixture
def esp() -> Iterator[EspEmulator]:
    with EspEmulator() as emulator:
        yield emulator


def esp_worker(sink: SmtpSink, esp: EspEmulator, **env: str) -> CeleryProcess:
    extra = {
        **FAULT_ENV,
        **esp.anymail_env(),
        "OPSDASH_CHANNELS": "pm=postmark:broadcast",
        "OPSDASH_DEFAULT_CHANNEL": "pm",
        **env,
    }
    return CeleryProcess.worker(
        smtp_port=sink.port, concurrency=WORKER_CONCURRENCY, extra_env=extra
    )


def esp_send(count: int = RECIPIENTS) -> Send:
    return start_send(campaign_of(count, channel="pm"))


def counted(esp: EspEmulator, send: Send) -> tuple[set[str], int]:
    """Recipients the database says were sent but the ESP never accepted, and repeats."""
    sent = set(
        Delivery.objects.filter(send=send, status=Delivery.Status.SENT).values_list(
            "recipient__email", flat=True
        )
    )
    received = esp.received()
    return sent - set(received), sum(n - 1 for n in received.values() if n > 1)


def esp_ids_match(esp: EspEmulator, send: Send) -> bool:
    """Every row keeps the id the ESP answered for it (the last one, if it went twice)."""
    ids = {message.to: message.message_id for message in esp.accepted}
    rows = Delivery.objects.filter(send=send).values_list("recipient__email", "esp_message_id")
    return all(ids.get(email) == esp_id for email, esp_id in rows)


@pytest.mark.parametrize("in_flight", [False, True], ids=["between-calls", "mid-call"])
def test_sigkill_of_the_worker_then_a_new_one_sends_every_recipient_once(
    smtp_sink: SmtpSink,
    esp: EspEmulator,
    worker_factory: list[CeleryProcess],
    report: list[str],
    in_flight: bool,
) -> None:
    # Slow enough (two calls a second) that the API sits idle between calls.
    slow = {"OPSDASH_SMTP_RATE_PER_SECOND": "10"}
    first = esp_worker(smtp_sink, esp, **slow).start()
    worker_factory.append(first)
    send = esp_send(100)
    wait_for(lambda: esp.received().total() >= 30, timeout=60, what="30 accepted messages")

    esp.hold()  # the next call waits at the door
    if in_flight:
        wait_for(lambda: esp.held >= 1, timeout=30, what="a call in flight")
    else:
        # Nothing being answered, and the last answer long enough ago to be journaled.
        wait_for(lambda: esp.idle_for(0.3), timeout=30, what="the API idle between calls")
    first.kill()
    held = esp.held_messages
    esp.release(accept=in_flight)  # a call in flight at the kill reaches the ESP all the same
    worker_factory.append(esp_worker(smtp_sink, esp, **slow).start())
    wait_done(send, worker_factory)

    lost, duplicates = counted(esp, send)
    report.append(
        f"{'mid-call' if in_flight else 'between calls'}: lost {len(lost)}, duplicates "
        f"{duplicates} (messages in the call held at the kill: {held if in_flight else 0})"
    )
    assert statuses(send) == {"sent": 100}
    assert lost == set() and set(esp.received()) == set(
        Delivery.objects.filter(send=send).values_list("recipient__email", flat=True)
    )
    if in_flight:
        assert duplicates <= held  # only what the ESP took in the call the kill cut off
    else:
        assert duplicates == 0
    assert esp_ids_match(esp, send)


def test_the_api_down_for_a_while_then_back_loses_and_fails_nothing(
    smtp_sink: SmtpSink,
    esp: EspEmulator,
    worker_factory: list[CeleryProcess],
    report: list[str],
) -> None:
    worker_factory.append(esp_worker(smtp_sink, esp).start())
    send = esp_send()
    wait_for(lambda: esp.received().total() >= 40, timeout=60, what="40 accepted messages")

    esp.down()
    time.sleep(4)
    at_outage = esp.received().total()
    esp.up()
    wait_done(send, worker_factory)

    lost, duplicates = counted(esp, send)
    report.append(
        f"lost {len(lost)}, duplicates {duplicates}, accepted before the outage {at_outage}"
    )
    assert statuses(send) == {"sent": RECIPIENTS}
    assert lost == set() and esp.received().keys() == set(
        Delivery.objects.filter(send=send).values_list("recipient__email", flat=True)
    )
    # Only a call whose answer the outage cut off can go twice.
    assert duplicates <= WORKER_CONCURRENCY * GROUP


def test_a_429_storm_defers_rows_then_sends_them_all_and_fails_none(
    smtp_sink: SmtpSink,
    esp: EspEmulator,
    worker_factory: list[CeleryProcess],
    report: list[str],
) -> None:
    worker_factory.append(esp_worker(smtp_sink, esp).start())
    send = esp_send()
    wait_for(lambda: esp.received().total() >= 40, timeout=60, what="40 accepted messages")

    storm = 12
    esp.fail_next(storm, 429)
    wait_done(send, worker_factory)

    lost, duplicates = counted(esp, send)
    answered = Counter(call.status for call in esp.requests)
    report.append(f"lost {len(lost)}, duplicates {duplicates}, answers {dict(answered)}")
    assert answered[429] == storm
    assert statuses(send) == {"sent": RECIPIENTS}
    assert lost == set() and duplicates == 0
    assert esp.received().total() == RECIPIENTS
    # Throttled calls never count as attempts: every row went out on its first.
    assert set(Delivery.objects.filter(send=send).values_list("attempts", flat=True)) == {1}
    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.failed_count == 0
