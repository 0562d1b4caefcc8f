"""Campaigns on each kind of channel, delivered by a real Celery worker end to end:
RabbitMQ -> worker -> PostgreSQL -> the emulated ESP API (Postmark, Mailgun) or the SMTP sink."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.models import Campaign, Delivery, Send
from campaigns.publishers import publish_launch
from campaigns.services.verp import verp_delivery_id
from opsdash.smtp_sink import SinkHandler, SmtpSink
from tests.esp_emulator import POSTMARK_TOKEN, EspEmulator
from tests.factories import CampaignFactory, audience_with
from tests.processes import CeleryProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

CHANNELS = "relay=smtp,pm=postmark:broadcast,mg=mailgun"
BOUNCE_DOMAIN = "bounces.example.com"


class EnvelopeHandler(SinkHandler):
    """The sink, also keeping each message's envelope sender."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.senders.append(envelope.mail_from)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def esp() -> Iterator[EspEmulator]:
    with EspEmulator() as emulator:
        yield emulator


@pytest.fixture
def sink() -> Iterator[tuple[SmtpSink, EnvelopeHandler]]:
    handler = EnvelopeHandler()
    server = SmtpSink()
    server.handler = handler
    with server:
        yield server, handler


@pytest.fixture
def esp_worker(
    transactional_db: None, esp: EspEmulator, sink: tuple[SmtpSink, EnvelopeHandler]
) -> Iterator[CeleryProcess]:
    env = {
        **esp.anymail_env(),
        "OPSDASH_CHANNELS": CHANNELS,
        "OPSDASH_DEFAULT_CHANNEL": "relay",
        "OPSDASH_BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        "OPSDASH_DELIVERY_BATCH_SIZE": "20",
        "OPSDASH_DELIVERY_FLUSH_EVERY": "8",
    }
    with CeleryProcess.worker(smtp_port=sink[0].port, extra_env=env) as process:
        yield process


def send_done(campaign: Campaign, worker: CeleryProcess) -> Send:
    publish_launch(campaign.pk, "once", Send.Trigger.MANUAL, None)
    wait_for(
        lambda: Send.objects.filter(campaign=campaign, status=Send.Status.COMPLETED).exists(),
        timeout=90,
        what="the send to complete",
        logs=lambda: worker.log()[-4000:],
    )
    time.sleep(1)  # anything sent twice would arrive now
    return Send.objects.get(campaign=campaign)


@pytest.mark.parametrize("channel_name", ["pm", "mg"])
def test_an_esp_campaign_reaches_every_recipient_once_and_keeps_the_esp_ids(
    esp: EspEmulator, esp_worker: CeleryProcess, channel_name: str
) -> None:
    audience = audience_with(45)
    campaign = CampaignFactory.create(audiences=[audience], channel=channel_name)

    send = send_done(campaign, esp_worker)

    assert send.channel == channel_name and send.sent_count == 45
    rows = Delivery.objects.filter(send=send).select_related("recipient")
    assert esp.received() == Counter({row.recipient.email: 1 for row in rows})
    ids = {message.to: message.message_id for message in esp.accepted}
    assert {row.recipient.email: row.esp_message_id for row in rows} == ids
    assert {row.status for row in rows} == {Delivery.Status.SENT}
    if channel_name == "pm":  # through the batch endpoint, with the token and the stream
        assert {call.path for call in esp.requests} == {"/email/batch"}
        assert {call.headers["x-postmark-server-token"] for call in esp.requests} == {
            POSTMARK_TOKEN
        }
        assert {m.fields["MessageStream"] for m in esp.accepted} == {"broadcast"}
    else:
        assert len(esp.requests) == 45


def test_an_smtp_campaign_goes_out_from_a_verp_address_per_delivery(
    sink: tuple[SmtpSink, EnvelopeHandler], esp: EspEmulator, esp_worker: CeleryProcess
) -> None:
    server, handler = sink
    campaign = CampaignFactory.create(audiences=[audience_with(12)])

    send = send_done(campaign, esp_worker)

    assert send.channel == "relay" and send.sent_count == 12
    rows = Delivery.objects.filter(send=send)
    assert sorted(verp_delivery_id(sender) or 0 for sender in handler.senders) == sorted(
        rows.values_list("id", flat=True)
    )
    assert all(sender.endswith(f"@{BOUNCE_DOMAIN}") for sender in handler.senders)
    assert len(server.messages) == 12 and esp.requests == []
    assert set(rows.values_list("esp_message_id", flat=True)) == {""}
