"""Storing one inbound bounce message: its events, and the message itself."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace

from django.conf import settings
from django.db import transaction

from campaigns.models import BounceMessage, Delivery
from campaigns.services.bounces.parse import Finding, Outcome, ParsedBounce, bounce_parse
from campaigns.services.events.store import EventIn, events_store
from campaigns.services.verp import verp_delivery_id

SOURCE = "bounce_mail"
# Bounces quote the whole original message, sometimes with its attachments: enough of it is
# kept to read by eye, not a mail store's worth.
RAW_LIMIT = 1024 * 1024


def bounce_message_receive(
    *, raw: bytes, mail_from: str = "", rcpt_tos: Sequence[str] = ()
) -> BounceMessage:
    """Records one message that reached the bounce address.

    1. Parse it (``bounce_parse``): a DSN, a feedback report, an auto-reply or an old-style bounce.
    2. Find the delivery it is about: the VERP address it was sent to (the envelope recipient,
       then its To/Delivered-To/X-Original-To headers), else the returned message's Message-ID.
    3. In one transaction, keep the message (whole, up to RAW_LIMIT) as a BounceMessage, PARSED
       or NEEDS_REVIEW, and store one event per finding, keyed so a bounce delivered twice
       stores its events once.
    """
    parsed = _parse(raw)
    delivery_id = _delivery_id(parsed, rcpt_tos)
    understood = parsed.outcome is not Outcome.UNKNOWN
    with transaction.atomic():
        bounce = BounceMessage.objects.create(
            mail_from=_text(mail_from)[:512],
            rcpt_to=_text(", ".join(rcpt_tos))[:512],
            subject=parsed.subject[:512],
            raw=raw[:RAW_LIMIT],
            status=BounceMessage.Status.PARSED if understood else BounceMessage.Status.NEEDS_REVIEW,
            problem=_problem(parsed, len(raw)),
            events_found=len(parsed.findings),
        )
        key_base = parsed.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        events_store([_event(f, parsed, key_base, delivery_id, bounce.pk) for f in parsed.findings])
    return bounce


def _parse(raw: bytes) -> ParsedBounce:
    """``bounce_parse``, made safe for text columns; a parser that trips on odd mail leaves the
    message for a person rather than refusing it (which would have the MTA retry it for days)."""
    try:
        parsed = bounce_parse(raw)
    except Exception as exc:  # any parser failure means: a person should look
        return ParsedBounce(Outcome.UNKNOWN, problem=f"The parser failed: {exc!r}")
    findings = tuple(
        replace(f, email=_text(f.email), status=_text(f.status), diagnostic=_text(f.diagnostic))
        for f in parsed.findings
    )
    return replace(
        parsed,
        findings=findings,
        subject=_text(parsed.subject),
        message_id=_text(parsed.message_id),
        original_message_id=_text(parsed.original_message_id),
    )


def _text(value: str) -> str:
    # PostgreSQL text and JSON refuse NUL, which a broken or hostile message can carry.
    return value.replace("\x00", "")


def _problem(parsed: ParsedBounce, size: int) -> str:
    notes = [parsed.problem] if parsed.problem else []
    if size > RAW_LIMIT:
        notes.append(f"Kept the first {RAW_LIMIT} of {size} bytes.")
    return " ".join(notes)


def _event(
    finding: Finding, parsed: ParsedBounce, key_base: str, delivery_id: int | None, bounce_id: int
) -> EventIn:
    content = "\n".join([key_base, finding.email, finding.kind, finding.status])
    return EventIn(
        source=SOURCE,
        kind=finding.kind,
        event_key="bounce:" + hashlib.sha256(content.encode()).hexdigest(),
        message_id=parsed.original_message_id,
        email=finding.email,
        delivery_id=delivery_id,
        occurred_at=parsed.date,
        description=finding.diagnostic or parsed.subject,
        mta_response=finding.diagnostic,
        payload={
            "status": finding.status,
            "action": finding.action,
            "subject": parsed.subject,
            "bounce_message_id": bounce_id,
        },
    )


def _delivery_id(parsed: ParsedBounce, rcpt_tos: Sequence[str]) -> int | None:
    for address in (*rcpt_tos, *parsed.addresses):
        if (found := verp_delivery_id(address)) is not None:
            return found
    return delivery_by_message_id(parsed.original_message_id)


_OUR_MESSAGE_ID = re.compile(r"<send-(\d+)\.rcpt-(\d+)@([^>]+)>")


def delivery_by_message_id(message_id: str) -> int | None:
    """The delivery a Message-ID of ours names (``Delivery.message_id``), if it still exists."""
    found = _OUR_MESSAGE_ID.fullmatch(message_id.strip())
    if found is None or found.group(3).lower() != settings.OPSDASH_MESSAGE_ID_DOMAIN.lower():
        return None
    send_id, recipient_id = int(found.group(1)), int(found.group(2))
    return (
        Delivery.objects.filter(send_id=send_id, recipient_id=recipient_id)
        .values_list("id", flat=True)
        .first()
    )
