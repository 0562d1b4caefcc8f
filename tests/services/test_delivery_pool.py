"""Many SMTP sessions per worker: kept across batches, several messages in flight at once,
never more than the configured connections, and providers that wait never block the others."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django import Settings

from campaigns.models import Delivery, Send
from campaigns.publishers import publish_batch
from campaigns.services import delivery
from campaigns.services.channels.smtp import smtp_pool, smtp_pool_close
from campaigns.services.delivery import NextStep, send_launch
from campaigns.services.delivery import batch as batch_module
from campaigns.services.delivery.outcomes import THROTTLE_RETRY_SECONDS
from campaigns.services.pacing import Grant, Pacer, Provider, WaitReason
from opsdash.smtp_sink import SinkHandler, SmtpSink
from tests.factories import AudienceFactory, CampaignFactory, SubscriptionFactory, audience_with
from tests.processes import CeleryProcess, on_own_thread, wait_for
from tests.services.test_delivery import received, run, statuses

pytestmark = pytest.mark.django_db(transaction=True)

Published = list[tuple[int, int, int, str]]


class SlowHandler(SinkHandler):
    """Answers each DATA ``latency`` seconds late, as a distant relay does, and counts how
    many messages it holds at once (every session waits on one event loop)."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.holding = 0
        self.most_at_once = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.holding += 1
        self.most_at_once = max(self.most_at_once, self.holding)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.holding -= 1
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(autouse=True)
def _fresh_pool() -> Iterator[None]:
    smtp_pool_close()
    yield
    smtp_pool_close()


@pytest.fixture
def slow_sink(settings: Settings) -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.handler = SlowHandler(latency=0.2)
    with sink:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        yield sink


def launch(campaign_id: int) -> tuple[Send, Published]:
    published: Published = []
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    return send, published


def slowness(sink: SmtpSink) -> SlowHandler:
    assert isinstance(sink.handler, SlowHandler)
    return sink.handler


def test_several_messages_are_in_flight_at_once_and_never_more_than_the_connections(
    slow_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 4
    settings.OPSDASH_DELIVERY_INLINE_BELOW_MS = 0  # the session threads alone
    send, published = launch(CampaignFactory.create(audiences=[audience_with(16)]).pk)

    (result,) = run(published)

    assert result.sent == 16 and set(received(slow_sink).values()) == {1}
    assert slowness(slow_sink).most_at_once == 4
    assert slow_sink.handler.sessions == 4
    assert statuses(send) == {Delivery.Status.SENT: 16}


def test_a_fast_relay_is_sent_to_from_the_batchs_own_thread_on_one_session(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 4
    settings.OPSDASH_DELIVERY_INLINE_BELOW_MS = 10_000  # every answer counts as fast here
    send, published = launch(CampaignFactory.create(audiences=[audience_with(12)]).pk)

    (result,) = run(published)

    assert result.sent == 12 and set(received(smtp_sink).values()) == {1}
    assert smtp_sink.handler.sessions == 1
    assert smtp_pool().threads == []  # no message was handed to another thread
    assert statuses(send) == {Delivery.Status.SENT: 12}


def test_a_slow_relay_gets_the_session_threads_and_the_connections_still_bound_them(
    slow_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 4
    settings.OPSDASH_DELIVERY_INLINE_BELOW_MS = 50  # the sink answers after 200 ms
    send, published = launch(CampaignFactory.create(audiences=[audience_with(16)]).pk)

    (result,) = run(published)

    assert result.sent == 16 and set(received(slow_sink).values()) == {1}
    pool = smtp_pool()
    # Timed on the batch's own session (two messages: the first one opens it), then the
    # threads: that session stays one of the four connections, for the next timing.
    assert len(pool.threads) == 3 and slow_sink.handler.sessions == 4
    assert slowness(slow_sink).most_at_once == 3
    assert statuses(send) == {Delivery.Status.SENT: 16}


def test_the_sessions_are_kept_for_the_next_batches(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 2
    settings.OPSDASH_DELIVERY_BATCH_SIZE = 4
    _, published = launch(CampaignFactory.create(audiences=[audience_with(12)]).pk)
    assert len(published) == 3

    results = run(published)

    assert [r.sent for r in results] == [4, 4, 4]
    assert set(received(smtp_sink).values()) == {1} and len(smtp_sink.messages) == 12
    assert smtp_sink.handler.sessions <= 2  # opened by the first batch, reused by the others
    assert smtp_pool().connections_opened == smtp_sink.handler.sessions


def test_a_session_the_server_dropped_between_batches_is_reopened_without_an_attempt(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    settings.OPSDASH_DELIVERY_BATCH_SIZE = 3
    send, published = launch(CampaignFactory.create(audiences=[audience_with(6)]).pk)

    run(published[:1])
    smtp_sink.stop()  # the relay restarts: the kept session is closed under us
    smtp_sink.start()
    (second,) = run(published[1:])

    assert second.sent == 3 and second.requeued == 0
    assert set(received(smtp_sink).values()) == {1} and len(smtp_sink.messages) == 6
    assert smtp_sink.handler.sessions == 2
    attempts = Counter(Delivery.objects.filter(send=send).values_list("attempts", flat=True))
    assert attempts == {1: 6}


def test_idle_sessions_are_closed_and_opened_again_when_needed(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 2
    settings.OPSDASH_DELIVERY_IDLE_SECONDS = 0.2
    settings.OPSDASH_DELIVERY_BATCH_SIZE = 4
    send, published = launch(CampaignFactory.create(audiences=[audience_with(8)]).pk)

    run(published[:1])
    pool = smtp_pool()
    wait_for(
        lambda: not any(session.connected for session in pool.sessions),
        timeout=5,
        what="idle sessions to close",
    )
    run(published[1:])

    assert statuses(send) == {Delivery.Status.SENT: 8}
    assert set(received(smtp_sink).values()) == {1}


def test_a_pause_stops_handing_over_at_once_and_the_messages_in_flight_are_recorded(
    slow_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 3
    send, published = launch(CampaignFactory.create(audiences=[audience_with(12)]).pk)
    seen: list[str] = []

    def pause_at_second(address: str) -> None:
        seen.append(address)
        if len(seen) == 2:
            on_own_thread(lambda: delivery.send_pause(send_id=send.pk, by=None))

    slow_sink.rule = pause_at_second
    (result,) = run(published)

    assert result.stopped == Send.Status.PAUSED
    sent = len(slow_sink.messages)
    assert 2 <= sent <= 3  # the first hand-over (3 sessions) went; nothing after the pause
    assert statuses(send) == {Delivery.Status.SENT: sent, Delivery.Status.QUEUED: 12 - sent}

    slow_sink.rule = None
    resumed: Published = []
    delivery.send_resume(send_id=send.pk, by=None, publish=lambda *batch: resumed.append(batch))
    run(resumed)
    assert set(received(slow_sink).values()) == {1} and len(slow_sink.messages) == 12


class _GoogleWaits(Pacer):
    """Google's bucket is empty (for a minute, or for today's warm-up quota)."""

    reason = WaitReason.RATE

    def take(self, provider: Provider, n: int = 1) -> Grant:
        if provider is Provider.GOOGLE:
            return Grant(False, 60.0, self.reason)
        return super().take(provider, n)


class _GoogleWarmingUp(_GoogleWaits):
    reason = WaitReason.WARMUP


def _mixed_campaign(google: int, other: int) -> int:
    """A campaign to ``google`` Gmail and ``other`` example.org recipients, interleaved."""
    audience = AudienceFactory.create()
    domains = [
        domain
        for index in range(max(google, other))
        for domain, count in (("gmail.com", google), ("example.org", other))
        if index < count
    ]
    for index, domain in enumerate(domains):
        recipient = SubscriptionFactory.create(audience=audience).recipient
        recipient.email = f"person{index}@{domain}"
        recipient.save(update_fields=["email"])
    return int(CampaignFactory.create(audiences=[audience]).pk)


@pytest.mark.parametrize(
    ("pacer", "step"),
    [(_GoogleWaits, NextStep.RATE_LIMITED), (_GoogleWarmingUp, NextStep.QUOTA_WAIT)],
)
def test_a_provider_with_an_empty_bucket_does_not_hold_back_the_others(
    smtp_sink: SmtpSink,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    pacer: type[Pacer],
    step: NextStep,
) -> None:
    settings.OPSDASH_RATE_MAX_WAIT_SECONDS = 5.0
    monkeypatch.setattr(batch_module, "Pacer", pacer)
    send, published = launch(_mixed_campaign(google=4, other=6))

    (result,) = run(published)

    assert result.sent == 6 and result.requeued == 4
    assert result.next_step == step and 30.0 < result.retry_in <= 60.0  # what is left of it
    assert {address.rpartition("@")[2] for address in received(smtp_sink)} == {"example.org"}
    waiting = Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED)
    assert {row.recipient.email.rpartition("@")[2] for row in waiting} == {"gmail.com"}
    assert set(waiting.values_list("attempts", flat=True)) == {0}


def test_a_throttled_provider_gets_nothing_more_from_the_batch_while_the_others_go_on(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1
    asked: list[str] = []

    def throttle_google(address: str) -> str | None:
        asked.append(address)
        return "421 4.7.28 Too many messages, slow down" if "gmail" in address else None

    smtp_sink.rule = throttle_google
    send, published = launch(_mixed_campaign(google=4, other=6))

    (result,) = run(published)

    assert result.sent == 6 and result.requeued == 4
    assert sum("gmail" in address for address in asked) == 1  # then the provider was left
    queued = Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED)
    assert set(queued.values_list("attempts", flat=True)) == {0}  # a throttle never counts
    # Back soon at the rate the deferral cut, not after a backoff that grows with each run.
    assert result.next_step is NextStep.RATE_LIMITED
    assert 0.8 * THROTTLE_RETRY_SECONDS <= result.retry_in <= 1.2 * THROTTLE_RETRY_SECONDS


def test_a_temporary_failure_beside_a_throttle_still_backs_off(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 1

    def answer(address: str) -> str | None:
        if "gmail" in address:
            return "421 4.7.28 Too many messages, slow down"
        return "451 4.3.0 Local problem" if address == "person1@example.org" else None

    smtp_sink.rule = answer
    send, published = launch(_mixed_campaign(google=4, other=6))

    (result,) = run(published)

    assert result.sent == 5 and result.requeued == 5
    assert result.next_step is NextStep.BACKOFF  # the failing server sets the pace
    failed_once = Delivery.objects.get(send=send, recipient__email="person1@example.org")
    assert (failed_once.status, failed_once.attempts) == (Delivery.Status.QUEUED, 1)


def test_a_worker_keeps_several_sessions_busy_against_a_slow_relay(
    transactional_db: None, settings: Settings
) -> None:
    """A real worker process (prefork): its batches keep several sessions in flight."""
    sink = SmtpSink()
    sink.handler = SlowHandler(latency=0.2)
    with sink:
        settings.EMAIL_PORT = sink.port
        env = {"OPSDASH_DELIVERY_CONNECTIONS": "4", "OPSDASH_DELIVERY_BATCH_SIZE": "20"}
        worker = CeleryProcess.worker(smtp_port=sink.port, concurrency=1, extra_env=env)
        try:
            worker.start(timeout=180)  # a busy machine boots a worker slowly
            campaign = CampaignFactory.create(audiences=[audience_with(40)])
            send = send_launch(
                campaign_id=campaign.pk,
                occurrence_key="once",
                trigger=Send.Trigger.MANUAL,
                publish=publish_batch,
            )
            assert send is not None
            wait_for(
                lambda: Send.objects.get(pk=send.pk).status == Send.Status.COMPLETED,
                timeout=60,
                what="the send to complete",
            )
        finally:
            worker.stop()
        assert set(received(sink).values()) == {1} and len(sink.messages) == 40
        assert 1 < slowness(sink).most_at_once <= 4
        assert sink.handler.sessions <= 4  # kept from one batch to the next


def test_the_pool_is_rebuilt_for_another_relay(smtp_sink: SmtpSink, settings: Settings) -> None:
    first = smtp_pool()
    assert smtp_pool() is first
    settings.EMAIL_PORT = smtp_sink.port + 1
    assert smtp_pool() is not first


def test_a_named_provider_never_has_more_in_flight_than_its_share(
    slow_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_CONNECTIONS = 6
    settings.OPSDASH_DELIVERY_CONNECTIONS_PER_PROVIDER = 2
    send, published = launch(_mixed_campaign(google=6, other=0))

    (result,) = run(published)

    assert result.sent == 6 and set(received(slow_sink).values()) == {1}
    assert slowness(slow_sink).most_at_once == 2
    assert statuses(send) == {Delivery.Status.SENT: 6}
