"""The bounce samples in tests/fixtures/bounces/, re-addressed to a delivery a test made."""

from __future__ import annotations

import sys
from pathlib import Path

from campaigns.models import Delivery, Send
from campaigns.services.verp import verp_envelope_from
from tests.factories import CampaignFactory, RecipientFactory
from tests.processes import CeleryProcess, child_env

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "bounces"
BOUNCE_DOMAIN = "bounces.opsdash.test"
SAMPLE_VERP = b"bounces+1234-aaaaaaaaaaaaaaaa@bounces.opsdash.test"
SAMPLE_MESSAGE_ID = b"<send-77.rcpt-4242@opsdash.localhost>"


def sample(name: str, *, delivery: Delivery | None = None, verp: bool = True) -> bytes:
    """The sample as stored, or about ``delivery``: its VERP address (unless ``verp`` is off)
    and its Message-ID in place of the sample's."""
    raw = (SAMPLES / name).read_bytes()
    if delivery is None:
        return raw
    address = verp_envelope_from(delivery_id=delivery.pk) if verp else None
    raw = raw.replace(SAMPLE_VERP, (address or "nobody@elsewhere.test").encode())
    return raw.replace(SAMPLE_MESSAGE_ID, delivery.message_id.encode())


def delivery_create(email: str = "ada@example.com") -> Delivery:
    campaign = CampaignFactory.create(subject="November newsletter")
    send = Send.objects.create(campaign=campaign, occurrence_key="once")
    recipient = RecipientFactory.create(email=email)
    return Delivery.objects.create(send=send, recipient=recipient, status=Delivery.Status.SENT)


def receiver_process(*, port: int, protocol: str = "smtp", **env: str) -> CeleryProcess:
    """The real ``manage.py bounces`` as a subprocess on the test database (start it with
    ``with``); ready once it prints its banner."""
    args = [sys.executable, "manage.py", "bounces", "--port", str(port), "--protocol", protocol]
    environment = child_env(**{"OPSDASH_BOUNCE_DOMAIN": BOUNCE_DOMAIN, **env})
    return CeleryProcess(args, environment, ready_marker="Bounce receiver")


def crlf(raw: bytes) -> bytes:
    """As it travels over SMTP: smtplib sends bytes as given, and SMTP lines end in CRLF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
