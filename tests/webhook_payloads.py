"""Webhook payloads as the ESPs document them (their example bodies, with our addresses)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

POSTMARK_MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def postmark_hard_bounce(email: str, *, message_id: str = POSTMARK_MESSAGE_ID) -> dict[str, Any]:
    """Postmark's bounce webhook (postmarkapp.com/developer/webhooks/bounce-webhook)."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": message_id,
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 23,
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "<Full dump of bounce>",
    }


def postmark_soft_bounce(email: str, *, event_id: int, message_id: str) -> dict[str, Any]:
    body = postmark_hard_bounce(email, message_id=message_id)
    body.update({"ID": event_id, "Type": "SoftBounce", "TypeCode": 4096, "Name": "Soft bounce"})
    body.update({"Inactive": False, "Description": "Mailbox full"})
    return body


def postmark_spam_complaint(email: str, *, message_id: str) -> dict[str, Any]:
    """Postmark's spam complaint webhook (postmarkapp.com/developer/webhooks)."""
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "Test",
        "MessageID": message_id,
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Test subject",
        "Content": "<Abuse report dump>",
    }


def postmark_delivery(email: str, *, message_id: str) -> dict[str, Any]:
    """Postmark's delivery webhook (postmarkapp.com/developer/webhooks/delivery-webhook)."""
    return {
        "MessageID": message_id,
        "Recipient": email,
        "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
        "Details": "Test delivery webhook details",
        "Tag": "welcome-email",
        "ServerID": 23,
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "RecordType": "Delivery",
        "MessageStream": "outbound",
    }


def _ses_mail(email: str, message_id: str) -> dict[str, Any]:
    return {
        "timestamp": "2017-08-05T00:40:02.012Z",
        "source": "Sender Name <sender@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [email],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Sender Name <sender@example.com>"},
            {"name": "To", "value": email},
            {"name": "Subject", "value": "Message sent from Amazon SES"},
        ],
        "commonHeaders": {
            "from": ["Sender Name <sender@example.com>"],
            "to": [email],
            "messageId": message_id,
            "subject": "Message sent from Amazon SES",
        },
    }


def ses_bounce(email: str, *, message_id: str) -> dict[str, Any]:
    """An SES event-publishing Bounce (docs.aws.amazon.com/ses, "Examples of event data")."""
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": _ses_mail(email, message_id),
    }


def ses_complaint(email: str, *, message_id: str) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2017-08-05T00:41:02.669Z",
        },
        "mail": _ses_mail(email, message_id),
    }


def sns_notification(ses_event: dict[str, Any], *, sns_id: str) -> dict[str, Any]:
    """The SNS envelope: Type "Notification", the SES event as a JSON string in Message."""
    return {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2017-08-05T00:41:02.669Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def mailgun_failed(
    email: str, *, message_id: str, signing_key: str, token: str, signature: str = ""
) -> dict[str, Any]:
    """Mailgun's signed webhook for a permanent failure (documentation.mailgun.com, Webhooks),
    signed as Mailgun signs it: HMAC-SHA256 of timestamp + token with the signing key."""
    timestamp = "1529006854"
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature or expected},
        "event-data": {
            "event": "failed",
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1521233123.501324,
            "log-level": "error",
            "severity": "permanent",
            "reason": "bounce",
            "envelope": {
                "sender": "bob@sandbox.mailgun.org",
                "transport": "smtp",
                "targets": email,
            },
            "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
            "delivery-status": {
                "attempt-no": 1,
                "message": "550 5.1.1 The email account that you tried to reach does not exist",
                "code": 550,
                "description": "",
                "session-seconds": 0.4,
            },
            "message": {
                "headers": {
                    "to": email,
                    "message-id": message_id,
                    "from": "Bob <bob@sandbox.mailgun.org>",
                    "subject": "Test permanent_fail webhook",
                },
                "attachments": [],
                "size": 111,
            },
            "recipient": email,
            "recipient-domain": email.rpartition("@")[2],
            "campaigns": [],
            "tags": ["my_tag_1"],
            "user-variables": {"my_var_1": "Mailgun Variable #1"},
        },
    }


def sendgrid_batch(email: str, *, smtp_id: str) -> list[dict[str, Any]]:
    """SendGrid's Event Webhook posts an array (docs.sendgrid.com, Event Webhook reference)."""
    common = {
        "email": email,
        "timestamp": 1513299569,
        "smtp-id": smtp_id,
        "category": "cat facts",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000",
    }
    return [
        {**common, "event": "processed", "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A=="},
        {
            **common,
            "event": "deferred",
            "sg_event_id": "fGt3BKlCQy2zAY6OWjFfvw==",
            "response": "400 try again later",
            "attempt": "5",
        },
        {
            **common,
            "event": "delivered",
            "sg_event_id": "J9A2rZiXR0aoKTN2KWTahw==",
            "response": "250 OK",
        },
        {
            **common,
            "event": "bounce",
            "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "reason": "500 unknown recipient",
            "status": "5.0.0",
            "type": "bounce",
        },
    ]
