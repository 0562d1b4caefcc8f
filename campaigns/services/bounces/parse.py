"""Reading one inbound bounce message: what happened, to which address, for which message.

Pure functions over bytes (no database): ``bounce_parse`` tries, in order,

1. an RFC 3464 delivery status notification (multipart/report; report-type=delivery-status),
   which is what Postfix, Exim, Exchange Online, Gmail and most modern MTAs send;
2. an RFC 5965 feedback report (report-type=feedback-report), a spam complaint;
3. an auto-reply (out of office, vacation): understood, and about nothing;
4. the older, free-text bounce shapes flufl.bounce recognises (qmail, old Exchange, Yahoo, ...).

What none of them understands comes back as ``Outcome.UNKNOWN`` with the reason, so the
receiver keeps it for a person instead of dropping it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

from campaigns.models import DeliveryEvent

Kind = DeliveryEvent.Kind


class Outcome(enum.Enum):
    EVENTS = "events"  # a report we read: zero or more findings
    AUTO_REPLY = "auto_reply"  # an out-of-office or vacation message: nothing to record
    UNKNOWN = "unknown"  # no parser understood it: a person should look


@dataclass(frozen=True)
class Finding:
    """One recipient's fate, as the report tells it."""

    kind: DeliveryEvent.Kind
    email: str
    status: str = ""  # the enhanced status code ("5.1.1"), or "abuse" for a complaint
    action: str = ""  # the DSN Action, or the feedback type
    diagnostic: str = ""  # the remote server's words (Diagnostic-Code), when given


@dataclass(frozen=True)
class ParsedBounce:
    outcome: Outcome
    findings: tuple[Finding, ...] = ()
    problem: str = ""
    subject: str = ""
    message_id: str = ""  # the bounce's own Message-ID, for deduplication
    date: datetime | None = None  # when the reporting server wrote it (its Date header)
    # What the report says about the message that bounced: its Message-ID and the VERP
    # addresses it names (the bounce's To/Delivered-To/X-Original-To headers, the original
    # envelope sender), so the receiver can find the delivery.
    original_message_id: str = ""
    addresses: tuple[str, ...] = field(default=())


def bounce_parse(raw: bytes) -> ParsedBounce:
    """What ``raw`` (one whole inbound message) reports."""
    message = message_from_bytes(raw)
    parsed = _read(message)
    return replace(
        parsed,
        subject=_decoded(message.get("Subject", "")),
        message_id=str(message.get("Message-ID", "")).strip(),
        date=_date(message.get("Date")),
    )


def _read(message: Message) -> ParsedBounce:
    report_type = str(message.get_param("report-type", "", header="content-type") or "").lower()
    if message.get_content_type() == "multipart/report" and report_type == "delivery-status":
        return _dsn(message)
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _feedback(message)
    if _is_auto_reply(message):
        return ParsedBounce(Outcome.AUTO_REPLY, addresses=_header_addresses(message))
    return _heuristic(message)


# --- RFC 3464 ---------------------------------------------------------------------------------


def _dsn(message: Message) -> ParsedBounce:
    status_part = _first_part(message, ("message/delivery-status",))
    if status_part is None:
        return ParsedBounce(Outcome.UNKNOWN, problem="A DSN without a delivery-status part.")
    blocks = _status_blocks(status_part)
    per_message, per_recipient = (blocks[0], blocks[1:]) if blocks else (Message(), [])
    findings = [f for block in per_recipient if (f := _dsn_finding(block)) is not None]
    if not per_recipient:
        return ParsedBounce(Outcome.UNKNOWN, problem="A DSN naming no recipient.")
    envelope_from = _strip_type(str(per_message.get("X-Postfix-Sender", "")))
    # Gmail names the returned message in the per-message block too.
    returned_id = str(per_message.get("X-Original-Message-ID", "")).strip()
    return ParsedBounce(
        Outcome.EVENTS,
        tuple(findings),
        original_message_id=_returned_message_id(message) or returned_id,
        addresses=(*_header_addresses(message), *([envelope_from] if envelope_from else [])),
    )


def _status_blocks(part: Message) -> list[Message]:
    """The delivery-status part's header blocks: the per-message one, then one per recipient.

    The email package parses message/delivery-status into a list of header blocks; a part
    sent with a transfer encoding arrives as one string instead, parsed here by hand.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True)
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    chunks = re.split(r"\r?\n\s*\r?\n", body.strip())
    return [message_from_string(chunk.strip() + "\n\n") for chunk in chunks if chunk.strip()]


_ACTION_KIND = {
    "delayed": Kind.DEFERRED,
    "delivered": Kind.DELIVERED,
    "expanded": Kind.DELIVERED,
}


def _dsn_finding(block: Message) -> Finding | None:
    """One recipient block; None for "relayed" (handed to a server that will not report)."""
    email = _strip_type(str(block.get("Original-Recipient") or block.get("Final-Recipient", "")))
    action = str(block.get("Action", "")).strip().lower()
    status = _status_code(str(block.get("Status", "")))
    diagnostic = _unfold(str(block.get("Diagnostic-Code", "")))
    if action == "failed":
        kind = Kind.SOFT_BOUNCED if status.startswith("4") else Kind.BOUNCED
    elif action in _ACTION_KIND:
        kind = _ACTION_KIND[action]
    else:
        return None
    return Finding(kind, email.lower(), status, action, _strip_type(diagnostic))


def _status_code(value: str) -> str:
    found = re.search(r"\b[245]\.\d{1,3}\.\d{1,3}\b", value)
    return found.group(0) if found else value.strip()


# --- RFC 5965 ---------------------------------------------------------------------------------

# A feedback type that is a complaint about the message; "not-spam" is the opposite, and an
# "auth-failure" report is about the sending domain's authentication, not about the recipient.
_COMPLAINTS = {"abuse", "fraud", "virus"}


def _feedback(message: Message) -> ParsedBounce:
    part = _first_part(message, ("message/feedback-report",))
    if part is None:
        return ParsedBounce(Outcome.UNKNOWN, problem="A feedback report without its fields.")
    blocks = _status_blocks(part)
    fields = blocks[0] if blocks else Message()
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower()
    returned = _returned_headers(message)
    rcpt = _strip_type(str(fields.get("Original-Rcpt-To", "")))
    email = rcpt or (parseaddr(str(returned.get("To", "")))[1] if returned is not None else "")
    mail_from = _strip_type(str(fields.get("Original-Mail-From", "")))
    findings: tuple[Finding, ...] = ()
    if feedback_type in _COMPLAINTS:
        findings = (Finding(Kind.COMPLAINED, email.lower(), feedback_type, feedback_type),)
    elif feedback_type != "not-spam":
        problem = f"A feedback report of type {feedback_type or '(none)'!r}, not a complaint."
        return ParsedBounce(Outcome.UNKNOWN, problem=problem)
    return ParsedBounce(
        Outcome.EVENTS,
        findings,
        original_message_id=str(returned.get("Message-ID", "")).strip() if returned else "",
        addresses=(*_header_addresses(message), *([mail_from] if mail_from else [])),
    )


# --- auto-replies and the older shapes -------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)|out of (the )?office|"
    r"abwesenheitsnotiz|r[ée]ponse automatique|vacation)\b",
    re.IGNORECASE,
)


def _is_auto_reply(message: Message) -> bool:
    """An out-of-office or vacation reply (RFC 3834 and the headers Exchange and others add).

    A bounce from Exim also says "Auto-Submitted: auto-replied", so a message naming failed
    recipients is never taken for one.
    """
    if message.get("X-Failed-Recipients"):
        return False
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        auto.startswith("auto-replied")
        or bool(message.get("X-Autoreply") or message.get("X-Autorespond"))
        or precedence == "auto_reply"
        or bool(_AUTO_SUBJECT.match(_decoded(message.get("Subject", ""))))
    )


def _heuristic(message: Message) -> ParsedBounce:
    """The free-text bounces flufl.bounce knows; "temporary" there is our soft bounce."""
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:
        return ParsedBounce(Outcome.UNKNOWN, problem=f"The bounce detectors failed: {exc!r}")
    findings = [
        Finding(kind, address.decode("ascii", "replace").lower())
        for kind, addresses in ((Kind.BOUNCED, permanent), (Kind.SOFT_BOUNCED, temporary))
        for address in sorted(addresses)
    ]
    if not findings:
        problem = "No bounce format recognised: not a DSN, a feedback report or an auto-reply."
        return ParsedBounce(Outcome.UNKNOWN, problem=problem)
    return ParsedBounce(
        Outcome.EVENTS,
        tuple(findings),
        original_message_id=_returned_message_id(message),
        addresses=_header_addresses(message),
    )


# --- helpers ----------------------------------------------------------------------------------


def _first_part(message: Message, types: Sequence[str]) -> Message | None:
    for part in message.walk():
        if part.get_content_type() in types:
            return part
    return None


def _returned_headers(message: Message) -> Message | None:
    """The headers of the message that bounced, from its text/rfc822-headers or message/rfc822
    part; for a free-text bounce, from the first attached message."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            return message_from_string(text.strip() + "\n\n")
    return None


_MESSAGE_ID_LINE = re.compile(r"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _returned_message_id(message: Message) -> str:
    returned = _returned_headers(message)
    if returned is not None and returned.get("Message-ID"):
        return str(returned["Message-ID"]).strip()
    # A free-text bounce quotes the original headers in its body, if anywhere.
    for part in message.walk():
        if part.get_content_maintype() == "text":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            if found := _MESSAGE_ID_LINE.search(text):
                return found.group(1)
    return ""


def _header_addresses(message: Message) -> tuple[str, ...]:
    """The addresses the bounce was sent to, as its own headers say (a VERP one among them)."""
    values: Iterable[str] = (
        str(value)
        for name in ("Delivered-To", "X-Original-To", "To")
        for value in message.get_all(name, [])
    )
    return tuple(address for _, address in getaddresses(list(values)) if address)


def _strip_type(value: str) -> str:
    """ "rfc822; ada@example.com" -> "ada@example.com" (and "smtp; 550 ..." -> "550 ...")."""
    text = value.strip()
    kind, sep, rest = text.partition(";")
    if sep and re.fullmatch(r"[A-Za-z0-9-]+", kind.strip()):
        text = rest.strip()
    return text.strip("<>") if "@" in text and " " not in text else text


def _unfold(value: str) -> str:
    return re.sub(r"\s*\r?\n\s+", " ", value).strip()


def _decoded(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError):
        return str(value)


def _date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" means "zone unknown" (RFC 5322), and such a date comes back naive: take it as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
