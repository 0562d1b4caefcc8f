"""Writing bounces: the DSN or feedback report a receiving server would send about a message.

The demo uses these to "play" a bounce for a message it sent, so the whole path (VERP address,
bounce receiver, parser, events) can be watched without a real mailbox provider refusing mail.
The shapes follow what Postfix writes for a DSN (RFC 3464) and what Yahoo's and Microsoft's
complaint feedback loops send (RFC 5965).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from email.utils import format_datetime, make_msgid

from django.utils import timezone

REPORTING_MTA = "mx.mailbox-provider.example"
SOURCE_IP = "192.0.2.25"


class PlayKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class Returned:
    """The message a bounce is about: who it went to, from which envelope sender (the address
    the bounce goes back to), and its header block as sent."""

    recipient: str
    envelope_from: str
    headers: str


# Status, Diagnostic-Code and the human text of each kind of failure, as Postfix reports them.
_FAILURES = {
    PlayKind.HARD: (
        "5.1.1",
        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.",
    ),
    PlayKind.SOFT: (
        "4.2.2",
        "452 4.2.2 <{rcpt}>: Mailbox full, quota exceeded",
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients: the mailbox is full.",
    ),
}


def bounce_compose(*, kind: PlayKind, returned: Returned) -> bytes:
    """The whole bounce message (bytes, LF line endings) about ``returned``."""
    if kind is PlayKind.COMPLAINT:
        return _feedback_report(returned)
    return _dsn(kind, returned)


def _dsn(kind: PlayKind, returned: Returned) -> bytes:
    status, diagnostic, text = _FAILURES[kind]
    boundary = f"{secrets.token_hex(6).upper()}.{int(timezone.now().timestamp())}/{REPORTING_MTA}"
    queue_id = secrets.token_hex(5).upper()
    now = format_datetime(timezone.now())
    rcpt = returned.recipient
    body = f"""\
From: MAILER-DAEMON@{REPORTING_MTA} (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {returned.envelope_from}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: {make_msgid(domain=REPORTING_MTA)}
Date: {now}

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host {REPORTING_MTA}.

{text}
It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{rcpt}>: host {REPORTING_MTA}[{SOURCE_IP}] said:
    {diagnostic.format(rcpt=rcpt)} (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {REPORTING_MTA}
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; {returned.envelope_from}
Arrival-Date: {now}

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: {status}
Remote-MTA: dns; {REPORTING_MTA}
Diagnostic-Code: smtp; {diagnostic.format(rcpt=rcpt)}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

{returned.headers.strip()}

--{boundary}--
"""
    return body.encode()


def _feedback_report(returned: Returned) -> bytes:
    boundary = f"----=_Part_{secrets.token_hex(8)}"
    now = format_datetime(timezone.now())
    domain = returned.envelope_from.rpartition("@")[2]
    body = f"""\
From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>
To: {returned.envelope_from}
Subject: FW: complaint about message from {SOURCE_IP}
Date: {now}
Message-ID: {make_msgid(domain="arf.mail.yahoo.com")}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP {SOURCE_IP} on {now}.
For more information about this format please see http://www.mipassoc.org/arf/.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <{returned.envelope_from}>
Original-Rcpt-To: <{returned.recipient}>
Received-Date: {now}
Reported-Domain: {domain}
Authentication-Results: mta1000.mail.yahoo.com from={domain}; domainkeys=neutral; dkim=pass

--{boundary}
Content-Type: text/rfc822-headers

{returned.headers.strip()}

--{boundary}--
"""
    return body.encode()
