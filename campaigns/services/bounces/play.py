"""Playing a bounce: send a realistic bounce for one delivery to the bounce receiver.

The demo's way to show what a hard bounce, a soft bounce or a complaint does, end to end.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.utils import format_datetime, getaddresses

from django.conf import settings

from campaigns.models import BounceMessage, Delivery
from campaigns.services.bounces.compose import PlayKind, Returned, bounce_compose
from campaigns.services.bounces.receive import bounce_message_receive
from campaigns.services.verp import verp_envelope_from

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Played:
    over_smtp: bool  # False: the receiver was not reachable and the parser was called directly
    detail: str  # what happened, in a sentence for staff
    bounce: BounceMessage | None = None  # set when stored directly


def returned_from_raw(*, raw: bytes, envelope_from: str = "") -> Returned:
    """The message as it was caught: its headers, its To address, and its envelope sender
    (the catcher's Return-Path, else the VERP address for its delivery, else its From)."""
    message = message_from_bytes(raw)
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    recipients = getaddresses([str(v) for v in message.get_all("To", [])])
    sender = envelope_from or _return_path(message) or _from(message)
    return Returned(
        recipient=recipients[0][1] if recipients else "",
        envelope_from=sender,
        headers=head.decode("utf-8", "replace").replace("\r\n", "\n"),
    )


def returned_for_delivery(delivery: Delivery) -> Returned:
    """The message of ``delivery`` as it was sent, rebuilt from its row (headers only)."""
    campaign = delivery.send.campaign
    sender = verp_envelope_from(delivery_id=delivery.pk) or campaign.from_email
    sent_at = delivery.sent_at or delivery.send.created_at
    headers = (
        f"From: {campaign.from_email}\n"
        f"To: {delivery.recipient.email}\n"
        f"Subject: {campaign.subject}\n"
        f"Date: {format_datetime(sent_at)}\n"
        f"Message-ID: {delivery.message_id}\n"
        "MIME-Version: 1.0\n"
    )
    return Returned(recipient=delivery.recipient.email, envelope_from=sender, headers=headers)


def bounce_play(*, kind: PlayKind, returned: Returned) -> Played:
    """Writes the bounce and sends it to the bounce receiver as the MTA would; when the
    receiver is not listening (or no bounce domain is set), stores it directly instead."""
    raw = bounce_compose(kind=kind, returned=returned)
    rcpt = _receiver_address(returned)
    if not rcpt:
        bounce = bounce_message_receive(raw=raw, rcpt_tos=[returned.envelope_from])
        return Played(False, "No bounce domain is set: the bounce was stored directly.", bounce)
    try:
        _deliver(raw, rcpt)
    except (OSError, smtplib.SMTPException) as exc:
        bounce = bounce_message_receive(raw=raw, rcpt_tos=[rcpt])
        where = f"{settings.OPSDASH_BOUNCE_HOST}:{settings.OPSDASH_BOUNCE_PORT}"
        detail = f"The bounce receiver ({where}) did not take it ({exc}): stored directly."
        return Played(False, detail, bounce)
    return Played(True, f"Sent to the bounce receiver for {rcpt}.")


def _receiver_address(returned: Returned) -> str:
    """The envelope recipient: the VERP address when the message had one; for a message sent
    without, the bounce domain's postmaster (the receiver finds the delivery by Message-ID)."""
    domain = settings.OPSDASH_BOUNCE_DOMAIN
    if not domain:
        return ""
    if returned.envelope_from.lower().endswith("@" + domain.lower()):
        return returned.envelope_from
    return f"postmaster@{domain}"


def _deliver(raw: bytes, rcpt: str) -> None:
    host, port = settings.OPSDASH_BOUNCE_HOST, settings.OPSDASH_BOUNCE_PORT
    client_class = smtplib.LMTP if settings.OPSDASH_BOUNCE_PROTOCOL == "lmtp" else smtplib.SMTP
    with client_class(host, port, timeout=TIMEOUT_SECONDS) as client:
        # A bounce has the null envelope sender, so it can never bounce back.
        # smtplib sends bytes as given; SMTP lines end in CRLF.
        client.sendmail("<>", [rcpt], raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def _return_path(message: Message) -> str:
    return str(message.get("Return-Path", "")).strip().strip("<>")


def _from(message: Message) -> str:
    return getaddresses([str(message.get("From", ""))])[0][1]
