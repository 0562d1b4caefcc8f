"""Telling the approvers that a guardrail paused a send (services/guardrails.py pauses it)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse

from campaigns.models import Send
from campaigns.selectors.guardrails import guardrail_pause_of


def approvers_emails() -> list[str]:
    """Addresses of the active users who may resume a guardrail pause: the approve permission
    given directly or through a group, or a superuser's (who has every permission)."""
    permission = Permission.objects.filter(
        content_type__app_label="campaigns", codename="approve_campaign"
    ).first()
    users = User.objects.filter(is_active=True).exclude(email="")
    allowed = Q(is_superuser=True)
    if permission is not None:
        allowed |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    emails = users.filter(allowed).values_list("email", flat=True).distinct()
    return sorted({email.strip().lower() for email in emails if email.strip()})


def guardrail_notify(*, send_id: int) -> int:
    """Emails every approver that a guardrail paused the send (Django's mail API, one message
    each); returns how many were sent. Nothing when the send is no longer paused by one."""
    send = Send.objects.select_related("campaign").filter(pk=send_id).first()
    pause = guardrail_pause_of(send) if send is not None else None
    if send is None or pause is None:
        return 0
    url = settings.OPSDASH_PUBLIC_URL + reverse("admin:campaigns_send_change", args=[send_id])
    subject = f"Paused by a guardrail: {pause.name}"
    body = render_to_string(
        "admin/campaigns/guardrail_email.txt", {"pause": pause, "url": url, "send": send}
    )
    messages = [
        EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [email])
        for email in approvers_emails()
    ]
    if not messages:
        return 0
    with get_connection() as connection:
        return int(connection.send_messages(messages) or 0)
