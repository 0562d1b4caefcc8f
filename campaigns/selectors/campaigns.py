"""Lookups for the campaign page: who to preview as, how a published test message fares, and
what a confirmation page says before a send, a schedule or a cancel."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Q
from django_celery_results.models import TaskResult

from campaigns.models import Campaign, Delivery, Recipient, Send, TaskLink
from campaigns.selectors.audiences import audience_exact_counts, campaign_recipient_count
from campaigns.services.channels.config import channel_config
from campaigns.services.rendering import recipient_fields, sample_recipient_fields

SAMPLE_EMAIL = "sample@example.com"
# Celery states after which a task's result no longer changes.
_FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def preview_recipient(*, email: str) -> dict[str, Any] | None:
    """The fields of the recipient to preview as; the sample when no address is given.

    Returns None when an address is given but no recipient has it.
    """
    if not email.strip():
        return sample_recipient_fields(email=SAMPLE_EMAIL)
    recipient = (
        Recipient.objects.filter(email=email.strip().lower())
        .only("email", "first_name", "last_name", "attributes")
        .first()
    )
    return recipient_fields(recipient) if recipient is not None else None


# A test message's task state in staff words; the raw Celery state stays in "state".
_STATE_WORDS = {
    "PENDING": "Waiting for a sending machine",
    "RECEIVED": "Waiting for a sending machine",
    "STARTED": "Sending",
    "RETRY": "Trying again",
    "SUCCESS": "Sent",
    "FAILURE": "Failed",
    "REVOKED": "Cancelled",
}


def task_state(*, task_id: str) -> dict[str, Any] | None:
    """The state of a task we published (None for ids we never linked), for polling."""
    if not TaskLink.objects.filter(task_id=task_id).exists():
        return None
    result = TaskResult.objects.filter(task_id=task_id).values("status", "result").first()
    if result is None:
        return _state("PENDING", "A worker picks it up in a moment.")
    return _state(result["status"], _detail(result["status"], result["result"]))


def _state(state: str, detail: str) -> dict[str, Any]:
    label = _STATE_WORDS.get(state, state.capitalize())
    return {"state": state, "label": label, "done": state in _FINAL_STATES, "detail": detail}


def _detail(state: str, stored: str | None) -> str:
    """A sentence for what the task returned: the mail server's answer, or why it failed."""
    try:
        value = json.loads(stored or "null")
    except ValueError:
        value = stored
    if state == "SUCCESS" and isinstance(value, dict) and "to" in value:
        return f"To {value['to']}; the mail server answered “{value.get('smtp', '')}”."
    if isinstance(value, dict) and value.get("exc_message"):
        message = value["exc_message"]
        return str(message[0] if isinstance(message, list) and message else message)[:500]
    return "" if value is None else str(value)[:500]


@dataclass(frozen=True)
class Channel:
    """How a send leaves, in words: "SMTP relay mail.example.com:587", "Postmark (“marketing”
    channel, stream broadcast)"."""

    kind: str
    address: str

    def __str__(self) -> str:
        return f"{self.kind} {self.address}"


# How staff know each ESP; any other anymail backend is named after its module.
ESP_NAMES = {
    "postmark": "Postmark",
    "mailgun": "Mailgun",
    "amazon_ses": "Amazon SES",
    "sendgrid": "SendGrid",
    "brevo": "Brevo",
    "sparkpost": "SparkPost",
    "mailjet": "Mailjet",
    "resend": "Resend",
}


def channel_described(name: str) -> Channel:
    """The channel called ``name`` ("" for the default) as the confirmation pages name it."""
    try:
        config = channel_config(name)
    except ImproperlyConfigured:
        return Channel(kind="Unknown channel", address=f"“{name}” (not configured: it cannot send)")
    if config.is_smtp:
        return Channel(kind="SMTP relay", address=f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    stream = f", stream {config.stream}" if config.stream else ""
    kind = ESP_NAMES.get(config.backend, config.backend.replace("_", " ").title())
    return Channel(kind=kind, address=f"(“{config.name}” channel{stream})")


def campaign_channel(campaign: Campaign) -> Channel:
    return channel_described(campaign.channel)


@dataclass(frozen=True)
class AudienceSize:
    name: str
    subscribed: int
    left_out: int = 0  # subscribed, but unsubscribed, bounced or complained: not sent to


@dataclass(frozen=True)
class SendPlan:
    """What "Send now" and "Schedule" confirm: who gets it (counted by the launch's own rule),
    from which audiences, through which channel."""

    recipients: int
    audiences: list[AudienceSize]
    left_out: int
    channel: Channel


def campaign_audience_sizes(campaign: Campaign) -> list[AudienceSize]:
    """The campaign's audiences counted exactly now: a confirmation page states them next to
    the number of recipients, and a cached size there would contradict it."""
    audiences = list(campaign.audiences.order_by("name"))
    counts = audience_exact_counts(a.pk for a in audiences)
    return [AudienceSize(a.name, counts[a.pk].subscribed, counts[a.pk].left_out) for a in audiences]


def campaign_send_plan(*, campaign: Campaign) -> SendPlan:
    sizes = campaign_audience_sizes(campaign)
    recipients = campaign_recipient_count(campaign_id=campaign.pk)
    left_out = campaign_recipient_count(campaign_id=campaign.pk, suppressed=True)
    return SendPlan(recipients, sizes, left_out, campaign_channel(campaign))


@dataclass(frozen=True)
class CancelPlan:
    """What "Cancel" confirms: the rows not yet sent (they will be skipped), those sent, the
    campaign's audiences and the channel.

    ``not_sent`` counts the rows queued and those in a batch's hands: a message already handed
    to the mail server still leaves, so the rows skipped end up at most this many.
    """

    send: Send
    not_sent: int
    sent: int
    channel: Channel
    audiences: list[AudienceSize]


def campaign_cancel_plan(*, campaign: Campaign) -> CancelPlan | None:
    """The campaign's running or paused send and its counts; None when nothing is live."""
    live = [Send.Status.RUNNING, Send.Status.PAUSED]
    send = campaign.sends.filter(status__in=live).order_by("-id").first()
    return None if send is None else send_cancel_plan(send=send)


def send_cancel_plan(*, send: Send) -> CancelPlan:
    """One send's rows not yet sent (a cancel skips them) and those sent, in one query."""
    waiting = [Delivery.Status.QUEUED, Delivery.Status.SENDING]
    counts = Delivery.objects.filter(send=send).aggregate(
        not_sent=Count("id", filter=Q(status__in=waiting)),
        sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
    )
    campaign = send.campaign
    return CancelPlan(
        send,
        counts["not_sent"],
        counts["sent"],
        channel_described(send.channel),
        campaign_audience_sizes(campaign),
    )
