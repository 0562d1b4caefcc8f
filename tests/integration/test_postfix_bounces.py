"""A real Postfix bounces a message sent from a VERP address; its DSN reaches the receiver.

Needs the local Postfix of .ci/postfix-setup (127.0.0.1:25, opsdash-mta.test as a local
domain, mail for the bounce domain handed to the receiver's port). Skipped without it, except
in CI, where the setup script always runs and a missing Postfix is a failure.
"""

from __future__ import annotations

import os
import smtplib
import socket
from email.message import EmailMessage
from pathlib import Path

import pytest
from pytest_django import Settings

from campaigns.models import BounceMessage, DeliveryEvent
from campaigns.services.verp import verp_envelope_from
from tests.bounce_samples import BOUNCE_DOMAIN, delivery_create, receiver_process
from tests.processes import wait_for

TRANSPORT_MAP = Path("/etc/postfix/opsdash_transport")


def _postfix_problem() -> str:
    if not TRANSPORT_MAP.exists():
        return f"no {TRANSPORT_MAP}: run .ci/postfix-setup (as root) for a local Postfix"
    try:
        socket.create_connection(("127.0.0.1", 25), timeout=5).close()
    except OSError:
        return "nothing listens on 127.0.0.1:25: run .ci/postfix-setup to start Postfix"
    return ""


PROBLEM = _postfix_problem()
pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        bool(PROBLEM) and os.environ.get("CI", "").lower() != "true", reason=PROBLEM
    ),
]


# The bounce domain the setup script routes to a receiver over each protocol.
DOMAINS = {"smtp": BOUNCE_DOMAIN, "lmtp": "bounces-lmtp.opsdash.test"}


def receiver_port(domain: str, protocol: str) -> int:
    """The port the setup script told Postfix to hand ``domain``'s mail to."""
    for line in TRANSPORT_MAP.read_text().splitlines():
        name, _, target = line.partition("\t")
        if name.strip() == domain and target.startswith(protocol + ":"):
            return int(target.rsplit(":", 1)[1])
    raise AssertionError(f"{TRANSPORT_MAP} does not route {domain} over {protocol}")


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_postfix_bounces_an_unknown_mailbox_to_the_delivery_it_came_from(
    settings: Settings, protocol: str
) -> None:
    assert not PROBLEM, PROBLEM
    domain = DOMAINS[protocol]
    settings.OPSDASH_BOUNCE_DOMAIN = domain
    delivery = delivery_create("nosuchuser@opsdash-mta.test")
    envelope_from = verp_envelope_from(delivery_id=delivery.pk)
    assert envelope_from is not None
    message = EmailMessage()
    message["From"], message["To"] = "news@opsdash.test", "nosuchuser@opsdash-mta.test"
    message["Subject"], message["Message-ID"] = "November newsletter", delivery.message_id
    message.set_content("Hello, here is the November newsletter.")

    port = receiver_port(domain, protocol)
    receiver = receiver_process(port=port, protocol=protocol, OPSDASH_BOUNCE_DOMAIN=domain)
    with receiver, smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
        smtp.send_message(message, from_addr=envelope_from, to_addrs=[message["To"]])
        wait_for(
            lambda: DeliveryEvent.objects.exists(),
            timeout=120,
            what="Postfix's DSN at the bounce receiver",
            logs=receiver.log,
        )

    # A bounce left in Postfix's queue by an earlier, interrupted run may arrive too: it is
    # about the same delivery id and just as valid, so the assertions take the first one.
    event = DeliveryEvent.objects.filter(delivery_id=delivery.pk).first()
    assert event is not None
    assert event.kind == DeliveryEvent.Kind.BOUNCED
    assert (event.email, event.source) == ("nosuchuser@opsdash-mta.test", "bounce_mail")
    assert event.payload["status"] == "5.1.1"
    assert event.message_id == delivery.message_id
    bounce = BounceMessage.objects.filter(rcpt_to=envelope_from).first()
    assert bounce is not None
    assert (bounce.status, bounce.rcpt_to) == (BounceMessage.Status.PARSED, envelope_from)
    assert b"Undelivered Mail Returned to Sender" in bytes(bounce.raw)
