"""The demo's mailbox: what the local SMTP catcher received, readable in the admin.

It holds every message of every campaign and test, so every recipient's address and
personalised content: superusers only, whatever role a staff member has.
"""

from __future__ import annotations

import mailbox
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

PAGE_SIZE = 100


def _superuser_only(request: HttpRequest) -> None:
    if not request.user.is_superuser:
        raise PermissionDenied


def _maildir() -> mailbox.Maildir:
    if not settings.OPSDASH_MAILBOX_DIR:
        raise Http404("No mail catcher is configured (OPSDASH_MAILBOX_DIR).")
    return mailbox.Maildir(Path(settings.OPSDASH_MAILBOX_DIR), factory=None, create=True)


def _summary(key: str, message: EmailMessage) -> dict[str, Any]:
    return {
        "key": key,
        "subject": message["Subject"],
        "to": message["To"],
        "from": message["From"],
        "date": message["Date"],
    }


def mailbox_view(request: HttpRequest) -> HttpResponse:
    _superuser_only(request)
    box = _maildir()
    keys = sorted(box.keys(), reverse=True)  # Maildir keys start with the arrival time
    parser = BytesParser(policy=policy.default)
    rows = []
    for key in keys[:PAGE_SIZE]:
        # Headers only, so the file and not the whole message; typeshed's parse() wants a
        # buffer that mailbox's file proxy does not claim to be, though it reads like one.
        with box.get_file(key) as handle:
            rows.append(_summary(key, parser.parse(handle, headersonly=True)))  # type: ignore[arg-type]
    context = {
        **admin.site.each_context(request),
        "title": "Mailbox",
        "rows": rows,
        "total": len(keys),
    }
    return TemplateResponse(request, "admin/campaigns/mailbox.html", context)


def mailbox_message_view(request: HttpRequest, key: str) -> HttpResponse:
    _superuser_only(request)
    box = _maildir()
    try:
        message = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
    except KeyError as exc:
        raise Http404("No such message.") from exc
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    context = {
        **admin.site.each_context(request),
        "title": message["Subject"],
        "message": _summary(key, message),
        "headers": list(message.items()),
        "html": html_part.get_content() if html_part is not None else "",
        "text": text_part.get_content() if text_part is not None else "",
    }
    return TemplateResponse(request, "admin/campaigns/mailbox_message.html", context)
